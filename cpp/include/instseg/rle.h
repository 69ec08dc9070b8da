// COCO run-length encoding of binary masks, as pycocotools.mask.encode writes it: runs over the
// mask in column-major order starting with a (possibly empty) run of zeros, then compressed into
// pycocotools' ASCII form (LEB128-like 5-bit groups with a continuation bit, each count after the
// second stored as the difference to the count two before).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace instseg {

// mask: (height, width) row-major, any non-zero value is "on".
std::vector<uint32_t> rle_counts(const uint8_t* mask, int height, int width);

// The compressed "counts" string pycocotools decodes (mask.decode / frPyObjects with size).
std::string rle_counts_string(const std::vector<uint32_t>& counts);

}  // namespace instseg
