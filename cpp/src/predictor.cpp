// prepare -> batch -> backend -> postprocess for one image.
#include "instseg/predictor.h"

#include <chrono>

#include "instseg/postprocess.h"
#include "instseg/preprocess.h"

namespace instseg {
namespace {

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

Predictor::Predictor(std::unique_ptr<Backend> backend, float score_thresh)
    : backend_(std::move(backend)), score_thresh_(score_thresh) {}

Instances Predictor::predict(const Image& bgr, bool paste_masks) {
  const ModelMetadata& meta = backend_->metadata();
  auto start = std::chrono::steady_clock::now();
  const std::vector<Image> prepared{prepare_image(bgr, meta.preprocess)};
  const Batch batch = make_batch(prepared, {{bgr.height, bgr.width}}, meta.preprocess, meta.fixed_batch,
                                 meta.fixed_height, meta.fixed_width);
  times_.preprocess = elapsed_ms(start);

  start = std::chrono::steady_clock::now();
  const RawDetections raw = backend_->run(batch);
  times_.inference = elapsed_ms(start);

  start = std::chrono::steady_clock::now();
  Instances instances = postprocess(raw, 0, {prepared[0].height, prepared[0].width}, {bgr.height, bgr.width},
                                    score_thresh_, meta.mask_threshold, paste_masks);
  times_.postprocess = elapsed_ms(start);
  return instances;
}

}  // namespace instseg
