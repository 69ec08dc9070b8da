// One image in, Instances out: prepare -> batch -> backend -> postprocess. The same steps, in the
// same order and arithmetic, as instseg_deploy.runtime.predictor.Predictor with channel_order="BGR".
#pragma once

#include <memory>

#include "instseg/backend.h"
#include "instseg/types.h"

namespace instseg {

struct StageTimes {  // milliseconds of the last predict() call
  double preprocess = 0;
  double inference = 0;
  double postprocess = 0;
};

class Predictor {
 public:
  // score_thresh: keep detections scoring at least this (on top of the model's own threshold).
  Predictor(std::unique_ptr<Backend> backend, float score_thresh);

  // bgr: an 8-bit BGR image (as read_image returns). Masks are full resolution, or empty when
  // paste_masks is false and the model returns raw mask probabilities.
  Instances predict(const Image& bgr, bool paste_masks = true);

  const ModelMetadata& metadata() const { return backend_->metadata(); }
  const Backend& backend() const { return *backend_; }
  const StageTimes& last_times() const { return times_; }

 private:
  std::unique_ptr<Backend> backend_;
  float score_thresh_;
  StageTimes times_;
};

}  // namespace instseg
