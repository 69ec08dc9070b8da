// COCO RLE: column-major run lengths and pycocotools' string compression (rleToString).
#include "instseg/rle.h"

namespace instseg {

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

}  // namespace instseg
