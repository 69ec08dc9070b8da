// Instances -> COCO results JSON (the format of `instseg predict`'s results.json and of
// instseg_deploy.coco_format.instances_to_coco): image_id, category_id (class index + 1),
// bbox [x, y, w, h] (3 decimals), score (6 decimals), segmentation {size: [h, w], counts: RLE string}.
// Each instance's segmentation comes from the mask it holds (see MaskFormat): the dense mask, the
// RLE string as is, or the cropped region (its full-image RLE computed from the region alone, plus
// "mask_offset": [top, left] and "mask_size": [height, width] of the region, outside which the mask
// is 0); instances without a mask (MaskFormat::none) have no segmentation. The strings are the same
// for every format.
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

// A JSON array with one entry per instance of every image.
std::string coco_results_json(const std::vector<ImageResult>& results);

}  // namespace instseg
