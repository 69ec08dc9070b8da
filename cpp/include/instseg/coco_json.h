// Instances -> COCO results JSON (the format of `instseg predict`'s results.json and of
// instseg_deploy.coco_format.instances_to_coco): image_id, category_id (class index + 1),
// bbox [x, y, w, h] (3 decimals), score (6 decimals), segmentation {size: [h, w], counts: RLE string}.
#pragma once

#include <string>
#include <vector>

#include "instseg/types.h"

namespace instseg {

struct ImageResult {
  int image_id = 0;
  std::string file_name;
  Instances instances;
};

// A JSON array with one entry per instance of every image (masks as compressed RLE when present).
std::string coco_results_json(const std::vector<ImageResult>& results);

}  // namespace instseg
