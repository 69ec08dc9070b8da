// COCO RLE: column-major run lengths (of a full mask, or of a region's crop without the full
// mask), pycocotools' string compression (rleToString) and its inverse (rleFrString).
#include "instseg/rle.h"

#include <algorithm>

#include "instseg/error.h"

namespace instseg {
namespace {

// Alternating runs, starting with zeros; adding to the current value lengthens its run.
class RunBuilder {
 public:
  void add(uint8_t value, uint64_t length) {
    if (length == 0) return;
    if (value != current_) {
      counts_.push_back(static_cast<uint32_t>(run_));
      run_ = 0;
      current_ = value;
    }
    run_ += length;
  }
  std::vector<uint32_t> finish() {
    counts_.push_back(static_cast<uint32_t>(run_));
    return std::move(counts_);
  }

 private:
  std::vector<uint32_t> counts_;
  uint8_t current_ = 0;
  uint64_t run_ = 0;
};

}  // namespace

std::vector<uint32_t> rle_counts(const uint8_t* mask, int height, int width) {
  std::vector<uint32_t> counts;
  uint8_t current = 0;  // runs alternate starting with zeros
  uint32_t run = 0;
  for (int x = 0; x < width; ++x) {
    for (int y = 0; y < height; ++y) {
      const uint8_t value = mask[static_cast<size_t>(y) * width + x] ? 1 : 0;
      if (value != current) {
        counts.push_back(run);
        run = 0;
        current = value;
      }
      ++run;
    }
  }
  counts.push_back(run);
  return counts;
}

std::vector<uint32_t> rle_counts_region(const uint8_t* crop, const Region& region, int height, int width) {
  const uint64_t h = static_cast<uint64_t>(height);
  RunBuilder runs;
  runs.add(0, static_cast<uint64_t>(region.left) * h);  // the image columns left of the region
  for (int x = 0; x < region.width; ++x) {
    runs.add(0, static_cast<uint64_t>(region.top));  // above the region
    for (int y = 0; y < region.height; ++y) runs.add(crop[static_cast<size_t>(y) * region.width + x] ? 1 : 0, 1);
    runs.add(0, h - static_cast<uint64_t>(region.top + region.height));  // below it
  }
  runs.add(0, static_cast<uint64_t>(width - region.left - region.width) * h);  // right of it
  return runs.finish();
}

std::string rle_counts_string(const std::vector<uint32_t>& counts) {
  std::string out;
  for (size_t i = 0; i < counts.size(); ++i) {
    // From the third count on, store the difference to the count two before (often small).
    int64_t value = counts[i];
    if (i > 2) value -= counts[i - 2];
    bool more = true;
    while (more) {
      int64_t chunk = value & 0x1f;  // 5 data bits per character
      value >>= 5;                   // arithmetic shift: negative values end at -1
      more = (chunk & 0x10) ? value != -1 : value != 0;
      if (more) chunk |= 0x20;  // continuation bit
      out.push_back(static_cast<char>(chunk + 48));
    }
  }
  return out;
}

std::vector<uint32_t> rle_counts_from_string(const std::string& text) {
  std::vector<uint32_t> counts;
  size_t p = 0;
  while (p < text.size()) {
    int64_t value = 0;
    int shift = 0;
    bool more = true;
    while (more) {
      if (p >= text.size() || shift > 40) throw Error("malformed RLE string: a count is cut off or too long");
      const int chunk = static_cast<unsigned char>(text[p++]) - 48;
      if (chunk < 0 || chunk > 63) throw Error("malformed RLE string: character outside '0'..'o'");
      value |= static_cast<int64_t>(chunk & 0x1f) << shift;
      shift += 5;
      more = chunk & 0x20;
      if (!more && (chunk & 0x10)) value -= int64_t{1} << shift;  // sign-extend the last group
    }
    if (counts.size() > 2) value += counts[counts.size() - 2];
    if (value < 0 || value > UINT32_MAX) throw Error("malformed RLE string: a run length out of range");
    counts.push_back(static_cast<uint32_t>(value));
  }
  return counts;
}

void rle_decode_region(const std::vector<uint32_t>& counts, int height, int width, const Region& region,
                       uint8_t* crop) {
  std::fill(crop, crop + static_cast<size_t>(region.height) * region.width, uint8_t{0});
  const uint64_t h = static_cast<uint64_t>(height);
  const uint64_t total = h * static_cast<uint64_t>(width);
  uint64_t start = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const uint64_t end = start + counts[i];
    if (end > total) throw Error("RLE covers more pixels than its mask");
    if (i % 2) {  // a run of "on" pixels, column-major
      for (uint64_t k = start; k < end; ++k) {
        const int x = static_cast<int>(k / h) - region.left, y = static_cast<int>(k % h) - region.top;
        if (x < 0 || y < 0 || x >= region.width || y >= region.height) {
          throw Error("RLE turns on a pixel outside its mask's region");
        }
        crop[static_cast<size_t>(y) * region.width + x] = 1;
      }
    }
    start = end;
  }
  if (start != total) throw Error("RLE covers fewer pixels than its mask");
}

}  // namespace instseg
