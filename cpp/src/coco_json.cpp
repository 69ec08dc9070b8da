// COCO results entries, field for field as instseg_deploy.coco_format.instances_to_coco (+ file_name,
// and the region of a cropped mask).
#include "instseg/coco_json.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "instseg/rle.h"

namespace instseg {
namespace {

double round_to(double value, int decimals) {
  const double factor = std::pow(10.0, decimals);
  return std::round(value * factor) / factor;
}

}  // namespace

std::string coco_results_json(const std::vector<ImageResult>& results) {
  nlohmann::json entries = nlohmann::json::array();
  for (const ImageResult& result : results) {
    const Instances& instances = result.instances;
    for (const Instance& inst : instances.items) {
      const double x0 = inst.box[0], y0 = inst.box[1], x1 = inst.box[2], y1 = inst.box[3];
      nlohmann::json entry = {
          {"image_id", result.image_id},
          {"category_id", inst.class_id + 1},
          {"bbox", {round_to(x0, 3), round_to(y0, 3), round_to(x1 - x0, 3), round_to(y1 - y0, 3)}},
          {"score", round_to(inst.score, 6)},
      };
      std::string counts;
      if (!inst.mask.empty()) {
        counts = rle_counts_string(rle_counts(inst.mask.data(), instances.height, instances.width));
      } else if (!inst.rle.empty()) {
        counts = inst.rle;
      } else if (!inst.region_mask.empty()) {
        counts = rle_counts_string(
            rle_counts_region(inst.region_mask.data(), inst.region, instances.height, instances.width));
        entry["mask_offset"] = {inst.region.top, inst.region.left};
        entry["mask_size"] = {inst.region.height, inst.region.width};
      }
      if (!counts.empty()) entry["segmentation"] = {{"size", {instances.height, instances.width}}, {"counts", counts}};
      entry["file_name"] = result.file_name;
      entries.push_back(std::move(entry));
    }
  }
  return entries.dump();
}

}  // namespace instseg
