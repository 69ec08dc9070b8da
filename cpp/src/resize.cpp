// Pillow's 8-bit BILINEAR resample (what detectron2's ResizeTransform calls), step for step:
// coefficients in double, normalised per output pixel, rounded to fixed point with 22 fraction
// bits, accumulated in int32 from a rounding bias, then clamped to [0, 255]; two passes in
// Pillow 13's order.
#include "instseg/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace instseg {
namespace {

constexpr int kFractionBits = 32 - 8 - 2;  // headroom for 8-bit values times weights summing to ~1

struct Taps {
  int width = 0;                 // coefficients stored per output pixel
  std::vector<int> first;        // first input index per output pixel
  std::vector<int> count;        // number of inputs per output pixel
  std::vector<int32_t> weights;  // (out_size, width), fixed point
};

double triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Which inputs (and with what weights) make each of out_size outputs from in_size inputs.
Taps bilinear_taps(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);  // widen the triangle when shrinking: antialiasing
  const double support = 1.0 * filter_scale;
  const double inv_filter_scale = 1.0 / filter_scale;
  Taps taps;
  taps.width = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(static_cast<size_t>(out_size));
  taps.count.resize(static_cast<size_t>(out_size));
  taps.weights.assign(static_cast<size_t>(out_size) * taps.width, 0);
  std::vector<double> w(static_cast<size_t>(taps.width));
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    // Truncating casts, as Pillow rounds with (int)(v + 0.5).
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int n = hi - lo;
    double total = 0.0;
    for (int i = 0; i < n; ++i) {
      w[static_cast<size_t>(i)] = triangle((i + lo - center + 0.5) * inv_filter_scale);
      total += w[static_cast<size_t>(i)];
    }
    int32_t* fixed = &taps.weights[static_cast<size_t>(o) * taps.width];
    for (int i = 0; i < n; ++i) {
      const double normalised = total != 0.0 ? w[static_cast<size_t>(i)] / total : w[static_cast<size_t>(i)];
      const double scaled = normalised * (1 << kFractionBits);
      fixed[i] = static_cast<int32_t>(normalised < 0 ? scaled - 0.5 : scaled + 0.5);
    }
    taps.first[static_cast<size_t>(o)] = lo;
    taps.count[static_cast<size_t>(o)] = n;
  }
  return taps;
}

inline uint8_t to_uint8(int32_t accumulated) {
  const int32_t v = accumulated >> kFractionBits;  // arithmetic shift, as Pillow's lookup index
  return static_cast<uint8_t>(std::clamp(v, 0, 255));
}

// Rows [row0, row0 + out.height) of `in`, resampled along x into `out`.
void horizontal_pass(const Image& in, int row0, const Taps& taps, Image& out) {
  for (int y = 0; y < out.height; ++y) {
    const uint8_t* src = in.row(row0 + y);
    uint8_t* dst = out.row(y);
    for (int x = 0; x < out.width; ++x) {
      const int32_t* k = &taps.weights[static_cast<size_t>(x) * taps.width];
      const uint8_t* s = src + 3 * taps.first[static_cast<size_t>(x)];
      int32_t acc0 = 1 << (kFractionBits - 1), acc1 = acc0, acc2 = acc0;
      for (int i = 0; i < taps.count[static_cast<size_t>(x)]; ++i) {
        acc0 += s[3 * i + 0] * k[i];
        acc1 += s[3 * i + 1] * k[i];
        acc2 += s[3 * i + 2] * k[i];
      }
      dst[3 * x + 0] = to_uint8(acc0);
      dst[3 * x + 1] = to_uint8(acc1);
      dst[3 * x + 2] = to_uint8(acc2);
    }
  }
}

// `in` resampled along y into `out`; first_shift is subtracted from every tap's first row.
void vertical_pass(const Image& in, const Taps& taps, int first_shift, Image& out) {
  const size_t row_values = static_cast<size_t>(out.width) * 3;
  std::vector<int32_t> acc(row_values);
  for (int y = 0; y < out.height; ++y) {
    const int32_t* k = &taps.weights[static_cast<size_t>(y) * taps.width];
    const int first = taps.first[static_cast<size_t>(y)] - first_shift;
    std::fill(acc.begin(), acc.end(), 1 << (kFractionBits - 1));
    for (int i = 0; i < taps.count[static_cast<size_t>(y)]; ++i) {
      const uint8_t* s = in.row(first + i);
      for (size_t v = 0; v < row_values; ++v) acc[v] += s[v] * k[i];
    }
    uint8_t* dst = out.row(y);
    for (size_t v = 0; v < row_values; ++v) dst[v] = to_uint8(acc[v]);
  }
}

}  // namespace

Image resize_bilinear(const Image& image, int out_height, int out_width) {
  const bool along_x = out_width != image.width;
  const bool along_y = out_height != image.height;
  if (!along_x && !along_y) return image;
  // The pass order changes the rounding of the intermediate image, so it follows Pillow (>= 13):
  // vertical first when the height shrinks by more than twice as many pixels as the width.
  const int shrink_y = image.height - out_height, shrink_x = image.width - out_width;
  const bool vertical_first = shrink_y > 0 && shrink_y > 2 * shrink_x;
  if (vertical_first) {
    Image shorter(out_height, image.width);
    vertical_pass(image, bilinear_taps(image.height, out_height), 0, shorter);
    if (!along_x) return shorter;
    Image out(out_height, out_width);
    horizontal_pass(shorter, 0, bilinear_taps(image.width, out_width), out);
    return out;
  }
  const Taps rows = bilinear_taps(image.height, out_height);
  if (!along_x) {
    Image out(out_height, out_width);
    vertical_pass(image, rows, 0, out);
    return out;
  }
  // Only the input rows the vertical pass will read are resampled horizontally.
  const int row_first = rows.first.front();
  const int row_last = rows.first.back() + rows.count.back();
  const Taps cols = bilinear_taps(image.width, out_width);
  Image narrowed(row_last - row_first, out_width);
  horizontal_pass(image, row_first, cols, narrowed);
  if (!along_y) return narrowed;
  Image out(out_height, out_width);
  vertical_pass(narrowed, rows, row_first, out);
  return out;
}

}  // namespace instseg
