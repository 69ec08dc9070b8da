// COCO run-length encoding of binary masks, as pycocotools.mask.encode writes it: runs over the
// mask in column-major order starting with a (possibly empty) run of zeros, then compressed into
// pycocotools' ASCII form (LEB128-like 5-bit groups with a continuation bit, each count after the
// second stored as the difference to the count two before).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "instseg/types.h"

namespace instseg {

// mask: (height, width) row-major, any non-zero value is "on".
std::vector<uint32_t> rle_counts(const uint8_t* mask, int height, int width);

// The counts of the (height, width) mask that is `crop` inside `region` and 0 elsewhere, from the
// region alone (no full-image buffer): in column-major order the mask starts with left * height +
// top zeros, each region column is followed by height - region.height zeros (the rest of its image
// column and the top of the next one), and the columns right of the region are zeros.
// crop: (region.height, region.width) row-major, any non-zero value is "on"; the region must lie
// inside the image. Equals rle_counts of the full mask.
std::vector<uint32_t> rle_counts_region(const uint8_t* crop, const Region& region, int height, int width);

// The compressed "counts" string pycocotools decodes (mask.decode / frPyObjects with size).
std::string rle_counts_string(const std::vector<uint32_t>& counts);

// The counts a compressed string holds (pycocotools' rleFrString); throws Error when it is malformed.
std::vector<uint32_t> rle_counts_from_string(const std::string& text);

// The part inside `region` of the (height, width) mask that `counts` encode, written to `crop`
// ((region.height, region.width) row-major, 0/1). Throws Error when the counts do not cover
// height * width pixels or turn on a pixel outside the region.
void rle_decode_region(const std::vector<uint32_t>& counts, int height, int width, const Region& region, uint8_t* crop);

}  // namespace instseg
