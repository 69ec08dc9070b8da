// Resize rule, channel order and padding of instseg_deploy/processing/preprocess.py.
#include "instseg/preprocess.h"

#include <algorithm>
#include <stdexcept>

#include "instseg/error.h"
#include "instseg/resize.h"

namespace instseg {

std::pair<int, int> resized_shape(int height, int width, int short_edge, int max_size) {
  double scale = short_edge * 1.0 / std::min(height, width);
  double new_h, new_w;
  if (height < width) {
    new_h = short_edge * 1.0;
    new_w = scale * width;
  } else {
    new_h = scale * height;
    new_w = short_edge * 1.0;
  }
  if (std::max(new_h, new_w) > max_size) {
    scale = max_size * 1.0 / std::max(new_h, new_w);
    new_h = new_h * scale;
    new_w = new_w * scale;
  }
  return {static_cast<int>(new_h + 0.5), static_cast<int>(new_w + 0.5)};
}

Image prepare_image(const Image& bgr, const PreprocessParams& params) {
  Image ordered = bgr;
  if (params.input_format == "RGB") {
    for (size_t i = 0; i < ordered.pixels.size(); i += 3) std::swap(ordered.pixels[i], ordered.pixels[i + 2]);
  }
  const auto [h, w] = resized_shape(bgr.height, bgr.width, params.min_size, params.max_size);
  if (h == ordered.height && w == ordered.width) return ordered;
  return resize_bilinear(ordered, h, w);
}

Batch make_batch(const std::vector<Image>& prepared, const std::vector<std::pair<int, int>>& original_sizes,
                 const PreprocessParams& params, int slots, int fixed_height, int fixed_width) {
  if (prepared.empty() || prepared.size() != original_sizes.size()) {
    throw std::invalid_argument("make_batch needs one original size per prepared image, and at least one image");
  }
  constexpr int kFillerSize = 32;  // blank images in the unused slots of a fixed-batch model, as the Python runner
  Batch batch;
  batch.real = static_cast<int>(prepared.size());
  batch.n = std::max(slots, batch.real);
  int h = 0, w = 0;  // the fillers do not count, as in the Python runner
  for (const Image& image : prepared) {
    h = std::max(h, image.height);
    w = std::max(w, image.width);
  }
  const int d = params.size_divisibility;
  if (d > 1) {
    h = (h + d - 1) / d * d;
    w = (w + d - 1) / d * d;
  }
  if (fixed_height > 0) {
    if (fixed_height < h || fixed_width < w) {
      throw Error("images need a " + std::to_string(h) + "x" + std::to_string(w) +
                  " input but the model's fixed input size is " + std::to_string(fixed_height) + "x" +
                  std::to_string(fixed_width) + "; export with --size dynamic or a larger --size");
    }
    h = fixed_height;
    w = fixed_width;
  }
  batch.height = h;
  batch.width = w;
  const size_t plane = static_cast<size_t>(h) * w;
  batch.images.resize(static_cast<size_t>(batch.n) * 3 * plane);
  for (int i = 0; i < batch.n; ++i) {
    for (int c = 0; c < 3; ++c) {
      float* dst = batch.images.data() + (static_cast<size_t>(i) * 3 + c) * plane;
      std::fill(dst, dst + plane, params.pixel_mean[static_cast<size_t>(c)]);
    }
  }
  for (int i = 0; i < batch.real; ++i) {
    const Image& image = prepared[static_cast<size_t>(i)];
    for (int c = 0; c < 3; ++c) {
      float* dst = batch.images.data() + (static_cast<size_t>(i) * 3 + c) * plane;
      for (int y = 0; y < image.height; ++y) {
        const uint8_t* src = image.row(y) + c;
        float* out = dst + static_cast<size_t>(y) * w;
        for (int x = 0; x < image.width; ++x) out[x] = static_cast<float>(src[3 * x]);
      }
    }
    batch.image_sizes.push_back(image.height);
    batch.image_sizes.push_back(image.width);
    batch.original_sizes.push_back(original_sizes[static_cast<size_t>(i)].first);
    batch.original_sizes.push_back(original_sizes[static_cast<size_t>(i)].second);
  }
  for (int i = batch.real; i < batch.n; ++i) {
    for (int k = 0; k < 2; ++k) {
      batch.image_sizes.push_back(kFillerSize);
      batch.original_sizes.push_back(kFillerSize);
    }
  }
  return batch;
}

}  // namespace instseg
