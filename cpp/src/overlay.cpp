// Drawing instances on a copy of the image: blended masks with outlines (only over each mask's
// region), boxes, labels.
#include "instseg/overlay.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <vector>

#include "font5x7.h"
#include "instseg/rle.h"

namespace instseg {
namespace {

using Color = std::array<uint8_t, 3>;  // B, G, R

// A stable, well-separated colour per class: golden-angle hue steps at saturation 200/255,
// value 255 (the colours of instseg_deploy.visualize.class_color).
Color class_color(int64_t index) {
  const double hue = std::fmod(static_cast<double>(static_cast<int>(std::fmod(index * 137.508, 180.0))) * 2.0, 360.0);
  const double s = 200.0 / 255.0, v = 255.0;
  const double c = v * s;
  const double h = hue / 60.0;
  const double x = c * (1.0 - std::fabs(std::fmod(h, 2.0) - 1.0));
  double r = 0, g = 0, b = 0;
  // One hue sector per line reads as the table it is.
  // clang-format off
  if (h < 1) { r = c; g = x; }
  else if (h < 2) { r = x; g = c; }
  else if (h < 3) { g = c; b = x; }
  else if (h < 4) { g = x; b = c; }
  else if (h < 5) { r = x; b = c; }
  else { r = c; b = x; }
  // clang-format on
  const double m = v - c;
  auto u8 = [](double value) { return static_cast<uint8_t>(std::lround(std::clamp(value, 0.0, 255.0))); };
  return {u8(b + m), u8(g + m), u8(r + m)};
}

void set_pixel(Image& image, int x, int y, const Color& color) {
  if (x < 0 || y < 0 || x >= image.width || y >= image.height) return;
  std::copy(color.begin(), color.end(), image.row(y) + 3 * x);
}

void fill_rect(Image& image, int x0, int y0, int x1, int y1, const Color& color) {
  for (int y = std::max(y0, 0); y < std::min(y1, image.height); ++y) {
    for (int x = std::max(x0, 0); x < std::min(x1, image.width); ++x) set_pixel(image, x, y, color);
  }
}

void draw_rect_outline(Image& image, int x0, int y0, int x1, int y1, const Color& color) {
  for (int x = x0; x <= x1; ++x) {
    set_pixel(image, x, y0, color);
    set_pixel(image, x, y1, color);
  }
  for (int y = y0; y <= y1; ++y) {
    set_pixel(image, x0, y, color);
    set_pixel(image, x1, y, color);
  }
}

// An instance's mask as pixels: the rectangle `region` of a buffer with rows `stride` apart; every
// pixel outside the region is off.
struct MaskView {
  const uint8_t* pixels = nullptr;
  size_t stride = 0;
  Region region;
};

void draw_mask(Image& canvas, const MaskView& mask, const Color& color, float alpha) {
  const Region& r = mask.region;
  auto on = [&](int x, int y) {  // image pixel (x, y)
    return x >= r.left && y >= r.top && x < r.left + r.width && y < r.top + r.height &&
           mask.pixels[static_cast<size_t>(y - r.top) * mask.stride + (x - r.left)];
  };
  for (int y = r.top; y < r.top + r.height; ++y) {
    uint8_t* px = canvas.row(y);
    for (int x = r.left; x < r.left + r.width; ++x) {
      if (!on(x, y)) continue;
      for (int c = 0; c < 3; ++c) {
        px[3 * x + c] = static_cast<uint8_t>(px[3 * x + c] * (1.0f - alpha) + color[static_cast<size_t>(c)] * alpha);
      }
    }
  }
  // Outline: mask pixels with a 4-neighbour outside the mask.
  for (int y = r.top; y < r.top + r.height; ++y) {
    for (int x = r.left; x < r.left + r.width; ++x) {
      if (on(x, y) && (!on(x - 1, y) || !on(x + 1, y) || !on(x, y - 1) || !on(x, y + 1)))
        set_pixel(canvas, x, y, color);
    }
  }
}

// Draws the instance's mask from whichever form it has (nothing for MaskFormat::none). An RLE is
// decoded into its region only.
void draw_instance_mask(Image& canvas, const Instance& inst, const Color& color, float alpha) {
  if (!inst.mask.empty()) {
    const size_t w = static_cast<size_t>(canvas.width);
    const Region& r = inst.region.width > 0 ? inst.region : Region{0, 0, canvas.height, canvas.width};
    draw_mask(canvas, {inst.mask.data() + static_cast<size_t>(r.top) * w + r.left, w, r}, color, alpha);
  } else if (!inst.region_mask.empty()) {
    draw_mask(canvas, {inst.region_mask.data(), static_cast<size_t>(inst.region.width), inst.region}, color, alpha);
  } else if (!inst.rle.empty()) {
    std::vector<uint8_t> crop(static_cast<size_t>(inst.region.height) * inst.region.width);
    rle_decode_region(rle_counts_from_string(inst.rle), canvas.height, canvas.width, inst.region, crop.data());
    draw_mask(canvas, {crop.data(), static_cast<size_t>(inst.region.width), inst.region}, color, alpha);
  }
}

void draw_label(Image& canvas, const std::string& text, int x0, int y0, const Color& background) {
  const int pad = 1;
  const int tw = static_cast<int>(text.size()) * (kGlyphWidth + 1) + pad;
  const int th = kGlyphHeight + 2 * pad;
  const int top = std::max(y0 - th, 0);  // above the box when there is room, else inside it
  fill_rect(canvas, x0, top, x0 + tw, top + th, background);
  const Color ink{0, 0, 0};
  for (size_t i = 0; i < text.size(); ++i) {
    const auto& rows = glyph(text[i]);
    const int gx = x0 + pad + static_cast<int>(i) * (kGlyphWidth + 1);
    for (int r = 0; r < kGlyphHeight; ++r) {
      for (int c = 0; c < kGlyphWidth; ++c) {
        if (rows[static_cast<size_t>(r)] & (1 << (kGlyphWidth - 1 - c))) set_pixel(canvas, gx + c, top + pad + r, ink);
      }
    }
  }
}

}  // namespace

Image draw_instances(const Image& bgr, const Instances& instances, const std::vector<std::string>& class_names,
                     float alpha) {
  Image canvas = bgr;
  std::vector<size_t> order(instances.items.size());
  std::iota(order.begin(), order.end(), 0);
  // Low scores first, so the best ones are drawn on top.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return instances.items[a].score < instances.items[b].score; });
  for (size_t i : order) {
    const Instance& inst = instances.items[i];
    draw_instance_mask(canvas, inst, class_color(inst.class_id), alpha);
  }
  for (size_t i : order) {
    const Instance& inst = instances.items[i];
    const Color color = class_color(inst.class_id);
    const int x0 = static_cast<int>(std::lround(inst.box[0])), y0 = static_cast<int>(std::lround(inst.box[1]));
    const int x1 = static_cast<int>(std::lround(inst.box[2])), y1 = static_cast<int>(std::lround(inst.box[3]));
    draw_rect_outline(canvas, x0, y0, x1, y1, color);
    const std::string name = inst.class_id >= 0 && inst.class_id < static_cast<int64_t>(class_names.size())
                                 ? class_names[static_cast<size_t>(inst.class_id)]
                                 : std::to_string(inst.class_id);
    char score[16];
    std::snprintf(score, sizeof(score), " %.2f", inst.score);
    draw_label(canvas, name + score, x0, y0, color);
  }
  return canvas;
}

}  // namespace instseg
