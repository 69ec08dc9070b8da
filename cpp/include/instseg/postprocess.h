// Network outputs -> Instances in original-image pixels, as instseg_deploy/processing/postprocess.py
// (detectron2's detector_postprocess): boxes rescaled and clipped, empty boxes dropped, score
// threshold, 28x28 mask probabilities pasted at full resolution (grid_sample bilinear,
// align_corners=False, zero padding) and thresholded. float32 arithmetic step for step.
#pragma once

#include <cstddef>
#include <utility>

#include "instseg/types.h"

namespace instseg {

// Where pasting `box` (image pixels) can turn pixels on: the box grown by one pixel and clipped to
// the (height, width) image; outside it every bilinear sample is 0. Not empty for a box that
// clipping left non-empty.
Region paste_region(const std::array<float, 4>& box, int height, int width);

// Pastes one (M, M) probability map into its box over region = paste_region(box, ...): for every
// image pixel (y, x) of the region, out[(y - region.top) * stride + (x - region.left)] = 1 where the
// bilinear sample >= threshold, else 0. Nothing outside the region is touched.
void paste_mask_region(const float* probs, int mask_size, const std::array<float, 4>& box, const Region& region,
                       float threshold, uint8_t* out, size_t stride);

// The same into a full (height, width) row-major mask: `mask` must hold height * width zeros.
void paste_mask(const float* probs, int mask_size, const std::array<float, 4>& box, int height, int width,
                float threshold, uint8_t* mask);

// Detections of batch slot `image` -> Instances. input_size: the resized (h, w) the network saw;
// original_size: the image's (h, w). Keeps score >= score_thresh. Masks in `masks` format (see
// MaskFormat): rle and cropped only ever hold one region-sized buffer per instance.
Instances postprocess(const RawDetections& raw, int image, std::pair<int, int> input_size,
                      std::pair<int, int> original_size, float score_thresh, float mask_threshold = 0.5f,
                      MaskFormat masks = MaskFormat::dense);

}  // namespace instseg
