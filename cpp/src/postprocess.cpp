// detector_postprocess in float32, as instseg_deploy/processing/postprocess.py computes it.
#include "instseg/postprocess.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace instseg {
namespace {

// Bilinear sampling of a `size`-long signal spanning [lo, hi] at one pixel centre: grid_sample
// with align_corners=False and zero padding. At most two taps; an index of -1 is a tap outside.
struct Taps {
  int index[2] = {-1, -1};
  float weight[2] = {0.0f, 0.0f};
};

Taps sample_taps(float coord, float lo, float hi, int size) {
  // The same float32 operation sequence as _interpolation_matrix.
  const float g = (coord - lo) / (hi - lo) * 2.0f - 1.0f;
  const float src = ((g + 1.0f) * static_cast<float>(size) - 1.0f) / 2.0f;
  const float left = std::floor(src);
  const float w_right = src - left;
  const float w_left = 1.0f - w_right;
  Taps taps;
  const int i0 = static_cast<int>(left);
  if (i0 >= 0 && i0 < size) {
    taps.index[0] = i0;
    taps.weight[0] = w_left;
  }
  if (i0 + 1 >= 0 && i0 + 1 < size) {
    taps.index[1] = i0 + 1;
    taps.weight[1] = w_right;
  }
  return taps;
}

}  // namespace

void paste_mask(const float* probs, int mask_size, const std::array<float, 4>& box, int height, int width,
                float threshold, uint8_t* mask) {
  const float x0 = box[0], y0 = box[1], x1 = box[2], y1 = box[3];
  const int left = std::max(static_cast<int>(std::floor(x0)) - 1, 0);
  const int top = std::max(static_cast<int>(std::floor(y0)) - 1, 0);
  const int right = std::min(static_cast<int>(std::ceil(x1)) + 1, width);
  const int bottom = std::min(static_cast<int>(std::ceil(y1)) + 1, height);
  if (right <= left || bottom <= top) return;

  std::vector<Taps> column_taps(static_cast<size_t>(right - left));
  for (int x = left; x < right; ++x) {
    column_taps[static_cast<size_t>(x - left)] = sample_taps(static_cast<float>(x) + 0.5f, x0, x1, mask_size);
  }
  std::vector<float> row_samples(static_cast<size_t>(mask_size));  // (wy @ probs) for one output row
  for (int y = top; y < bottom; ++y) {
    const Taps ty = sample_taps(static_cast<float>(y) + 0.5f, y0, y1, mask_size);
    if (ty.index[0] < 0 && ty.index[1] < 0) continue;  // every sample of this row is 0
    for (int j = 0; j < mask_size; ++j) {
      float v = 0.0f;
      for (int t = 0; t < 2; ++t) {
        if (ty.index[t] >= 0) v += ty.weight[t] * probs[static_cast<size_t>(ty.index[t]) * mask_size + j];
      }
      row_samples[static_cast<size_t>(j)] = v;
    }
    uint8_t* out = mask + static_cast<size_t>(y) * width;
    for (int x = left; x < right; ++x) {
      const Taps& tx = column_taps[static_cast<size_t>(x - left)];
      float v = 0.0f;
      for (int t = 0; t < 2; ++t) {
        if (tx.index[t] >= 0) v += row_samples[static_cast<size_t>(tx.index[t])] * tx.weight[t];
      }
      out[x] = v >= threshold ? 1 : 0;
    }
  }
}

Instances postprocess(const RawDetections& raw, int image, std::pair<int, int> input_size,
                      std::pair<int, int> original_size, float score_thresh, float mask_threshold, bool paste) {
  const auto [in_h, in_w] = input_size;
  const auto [out_h, out_w] = original_size;
  // Ratios in double, then float32: np.array([out_w / in_w, ...], dtype=np.float32).
  const float scale_x = static_cast<float>(static_cast<double>(out_w) / in_w);
  const float scale_y = static_cast<float>(static_cast<double>(out_h) / in_h);
  Instances result;
  result.height = out_h;
  result.width = out_w;
  const size_t m2 = static_cast<size_t>(raw.mask_size) * raw.mask_size;
  const size_t canvas = static_cast<size_t>(raw.canvas_height) * raw.canvas_width;
  for (int d = 0; d < raw.count; ++d) {
    if (raw.batch_idx[static_cast<size_t>(d)] != image) continue;
    const float* b = &raw.boxes[static_cast<size_t>(d) * 4];
    Instance inst;
    inst.box = {std::clamp(b[0] * scale_x, 0.0f, static_cast<float>(out_w)),
                std::clamp(b[1] * scale_y, 0.0f, static_cast<float>(out_h)),
                std::clamp(b[2] * scale_x, 0.0f, static_cast<float>(out_w)),
                std::clamp(b[3] * scale_y, 0.0f, static_cast<float>(out_h))};
    inst.score = raw.scores[static_cast<size_t>(d)];
    inst.class_id = raw.classes[static_cast<size_t>(d)];
    const bool non_empty = (inst.box[2] - inst.box[0]) > 0.0f && (inst.box[3] - inst.box[1]) > 0.0f;
    if (!non_empty || !(inst.score >= score_thresh)) continue;
    if (raw.has_pasted_masks) {
      inst.mask.resize(static_cast<size_t>(out_h) * out_w);
      const uint8_t* src = raw.pasted_masks.data() + static_cast<size_t>(d) * canvas;
      for (int y = 0; y < out_h; ++y) {
        std::memcpy(inst.mask.data() + static_cast<size_t>(y) * out_w, src + static_cast<size_t>(y) * raw.canvas_width,
                    static_cast<size_t>(out_w));
      }
    } else if (paste) {
      inst.mask.assign(static_cast<size_t>(out_h) * out_w, 0);
      paste_mask(raw.mask_probs.data() + static_cast<size_t>(d) * m2, raw.mask_size, inst.box, out_h, out_w,
                 mask_threshold, inst.mask.data());
    }
    result.items.push_back(std::move(inst));
  }
  return result;
}

}  // namespace instseg
