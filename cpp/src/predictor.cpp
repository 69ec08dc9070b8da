// prepare -> batch -> backend -> postprocess for one image.
#include "instseg/predictor.h"

#include <chrono>

#include "instseg/error.h"

#include "instseg/postprocess.h"
#include "instseg/preprocess.h"

namespace instseg {
namespace {

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

MaskFormat parse_mask_format(const std::string& text) {
  for (const MaskFormat format : {MaskFormat::dense, MaskFormat::rle, MaskFormat::cropped, MaskFormat::none}) {
    if (text == mask_format_name(format)) return format;
  }
  throw Error("unknown mask format '" + text + "': choose dense, rle, cropped or none");
}

const char* mask_format_name(MaskFormat format) {
  switch (format) {
    case MaskFormat::dense: return "dense";
    case MaskFormat::rle: return "rle";
    case MaskFormat::cropped: return "cropped";
    case MaskFormat::none: return "none";
  }
  return "?";
}

Predictor::Predictor(std::unique_ptr<Backend> backend, float score_thresh)
    : backend_(std::move(backend)), score_thresh_(score_thresh) {}

Instances Predictor::predict(const Image& bgr, MaskFormat masks) {
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
                                    score_thresh_, meta.mask_threshold, masks);
  times_.postprocess = elapsed_ms(start);
  return instances;
}

}  // namespace instseg
