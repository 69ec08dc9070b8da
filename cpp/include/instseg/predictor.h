// One image in, Instances out: prepare -> batch -> backend -> postprocess. The same steps, in the
// same order and arithmetic, as instseg_deploy.runtime.predictor.Predictor with channel_order="BGR".
#pragma once

#include <memory>
#include <string>

#include "instseg/backend.h"
#include "instseg/types.h"

namespace instseg {

// "dense" | "rle" | "cropped" | "none" -> MaskFormat; anything else throws Error naming the choices.
MaskFormat parse_mask_format(const std::string& text);
const char* mask_format_name(MaskFormat format);

struct StageTimes {  // milliseconds of the last predict() call
  double preprocess = 0;
  double inference = 0;
  double postprocess = 0;
};

class Predictor {
 public:
  // score_thresh: keep detections scoring at least this (on top of the model's own threshold).
  Predictor(std::unique_ptr<Backend> backend, float score_thresh);

  // bgr: an 8-bit BGR image (as read_image returns). Masks in `masks` format (see MaskFormat in
  // types.h): dense full-resolution masks, RLE strings or cropped regions made from the region
  // alone, or none.
  Instances predict(const Image& bgr, MaskFormat masks = MaskFormat::dense);

  const ModelMetadata& metadata() const { return backend_->metadata(); }
  const Backend& backend() const { return *backend_; }
  const StageTimes& last_times() const { return times_; }

 private:
  std::unique_ptr<Backend> backend_;
  float score_thresh_;
  StageTimes times_;
};

}  // namespace instseg
