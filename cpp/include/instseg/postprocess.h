// Network outputs -> Instances in original-image pixels, as instseg_deploy/processing/postprocess.py
// (detectron2's detector_postprocess): boxes rescaled and clipped, empty boxes dropped, score
// threshold, 28x28 mask probabilities pasted at full resolution (grid_sample bilinear,
// align_corners=False, zero padding) and thresholded. float32 arithmetic step for step.
#pragma once

#include <utility>

#include "instseg/types.h"

namespace instseg {

// Pastes one (M, M) probability map into its box (image pixels) of a (height, width) mask:
// mask[y * width + x] = 1 where the bilinear sample >= threshold. Only the box grown by one pixel
// is touched (outside it every sample is 0); `mask` must hold height * width zeros.
void paste_mask(const float* probs, int mask_size, const std::array<float, 4>& box, int height, int width,
                float threshold, uint8_t* mask);

// Detections of batch slot `image` -> Instances. input_size: the resized (h, w) the network saw;
// original_size: the image's (h, w). Keeps score >= score_thresh. paste=false leaves masks empty.
Instances postprocess(const RawDetections& raw, int image, std::pair<int, int> input_size,
                      std::pair<int, int> original_size, float score_thresh, float mask_threshold = 0.5f,
                      bool paste = true);

}  // namespace instseg
