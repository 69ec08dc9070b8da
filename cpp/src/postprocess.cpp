// detector_postprocess in float32, as instseg_deploy/processing/postprocess.py computes it; masks
// pasted into their region only, then kept in the asked MaskFormat.
#include "instseg/postprocess.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "instseg/rle.h"

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

// The smallest rectangle holding `region` and every on pixel of a (height, width) mask with row
// stride `stride`: masks pasted in the graph are expected inside the region, but kept whole if not.
Region cover_on_pixels(const uint8_t* mask, int height, int width, size_t stride, Region region) {
  int top = region.top, left = region.left;
  int bottom = region.top + region.height, right = region.left + region.width;
  for (int y = 0; y < height; ++y) {
    const uint8_t* row = mask + static_cast<size_t>(y) * stride;
    const bool inside_rows = y >= top && y < bottom;
    for (int x = 0; x < width; ++x) {
      if (!row[x]) continue;
      if (inside_rows && x >= left && x < right) {
        x = right - 1;  // the region's own pixels are kept anyway
        continue;
      }
      top = std::min(top, y);
      bottom = std::max(bottom, y + 1);
      left = std::min(left, x);
      right = std::max(right, x + 1);
    }
  }
  return {top, left, bottom - top, right - left};
}

void copy_rows(const uint8_t* src, size_t src_stride, const Region& region, uint8_t* dst, size_t dst_stride) {
  for (int y = 0; y < region.height; ++y) {
    std::memcpy(dst + static_cast<size_t>(y) * dst_stride,
                src + static_cast<size_t>(region.top + y) * src_stride + region.left,
                static_cast<size_t>(region.width));
  }
}

}  // namespace

Region paste_region(const std::array<float, 4>& box, int height, int width) {
  const int left = std::max(static_cast<int>(std::floor(box[0])) - 1, 0);
  const int top = std::max(static_cast<int>(std::floor(box[1])) - 1, 0);
  const int right = std::min(static_cast<int>(std::ceil(box[2])) + 1, width);
  const int bottom = std::min(static_cast<int>(std::ceil(box[3])) + 1, height);
  return {top, left, std::max(bottom - top, 0), std::max(right - left, 0)};
}

void paste_mask_region(const float* probs, int mask_size, const std::array<float, 4>& box, const Region& region,
                       float threshold, uint8_t* out, size_t stride) {
  const float x0 = box[0], y0 = box[1], x1 = box[2], y1 = box[3];
  std::vector<Taps> column_taps(static_cast<size_t>(region.width));
  for (int i = 0; i < region.width; ++i) {
    column_taps[static_cast<size_t>(i)] = sample_taps(static_cast<float>(region.left + i) + 0.5f, x0, x1, mask_size);
  }
  std::vector<float> row_samples(static_cast<size_t>(mask_size));  // (wy @ probs) for one output row
  for (int r = 0; r < region.height; ++r) {
    uint8_t* row = out + static_cast<size_t>(r) * stride;
    const Taps ty = sample_taps(static_cast<float>(region.top + r) + 0.5f, y0, y1, mask_size);
    if (ty.index[0] < 0 && ty.index[1] < 0) {  // every sample of this row is 0
      std::memset(row, 0, static_cast<size_t>(region.width));
      continue;
    }
    for (int j = 0; j < mask_size; ++j) {
      float v = 0.0f;
      for (int t = 0; t < 2; ++t) {
        if (ty.index[t] >= 0) v += ty.weight[t] * probs[static_cast<size_t>(ty.index[t]) * mask_size + j];
      }
      row_samples[static_cast<size_t>(j)] = v;
    }
    for (int i = 0; i < region.width; ++i) {
      const Taps& tx = column_taps[static_cast<size_t>(i)];
      float v = 0.0f;
      for (int t = 0; t < 2; ++t) {
        if (tx.index[t] >= 0) v += row_samples[static_cast<size_t>(tx.index[t])] * tx.weight[t];
      }
      row[i] = v >= threshold ? 1 : 0;
    }
  }
}

void paste_mask(const float* probs, int mask_size, const std::array<float, 4>& box, int height, int width,
                float threshold, uint8_t* mask) {
  const Region region = paste_region(box, height, width);
  paste_mask_region(probs, mask_size, box, region, threshold,
                    mask + static_cast<size_t>(region.top) * width + region.left, static_cast<size_t>(width));
}

Instances postprocess(const RawDetections& raw, int image, std::pair<int, int> input_size,
                      std::pair<int, int> original_size, float score_thresh, float mask_threshold, MaskFormat masks) {
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
  const size_t image_stride = static_cast<size_t>(out_w);
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
    if (masks == MaskFormat::none) {
      result.items.push_back(std::move(inst));
      continue;
    }
    inst.region = paste_region(inst.box, out_h, out_w);
    const Region& region = inst.region;
    const uint8_t* pasted = raw.has_pasted_masks ? raw.pasted_masks.data() + static_cast<size_t>(d) * canvas : nullptr;
    const float* probs = pasted ? nullptr : raw.mask_probs.data() + static_cast<size_t>(d) * m2;
    const size_t canvas_stride = static_cast<size_t>(raw.canvas_width);
    if (pasted) inst.region = cover_on_pixels(pasted, out_h, out_w, canvas_stride, inst.region);
    if (masks == MaskFormat::dense) {
      if (pasted) {
        inst.mask.resize(static_cast<size_t>(out_h) * out_w);
        copy_rows(pasted, canvas_stride, {0, 0, out_h, out_w}, inst.mask.data(), image_stride);
      } else {
        inst.mask.assign(static_cast<size_t>(out_h) * out_w, 0);
        paste_mask_region(probs, raw.mask_size, inst.box, region, mask_threshold,
                          inst.mask.data() + static_cast<size_t>(region.top) * out_w + region.left, image_stride);
      }
    } else {
      std::vector<uint8_t> crop(static_cast<size_t>(region.height) * region.width);
      const size_t crop_stride = static_cast<size_t>(region.width);
      if (pasted) {
        copy_rows(pasted, canvas_stride, region, crop.data(), crop_stride);
      } else {
        paste_mask_region(probs, raw.mask_size, inst.box, region, mask_threshold, crop.data(), crop_stride);
      }
      if (masks == MaskFormat::rle) {
        inst.rle = rle_counts_string(rle_counts_region(crop.data(), region, out_h, out_w));
      } else {
        inst.region_mask = std::move(crop);
      }
    }
    result.items.push_back(std::move(inst));
  }
  return result;
}

}  // namespace instseg
