// Image -> network input, as instseg_deploy/processing/preprocess.py (detectron2's DefaultPredictor):
// channel order to the model's, ResizeShortestEdge with Pillow bilinear, pad bottom/right with the
// pixel mean to a multiple of size_divisibility (or to a fixed input size), NCHW float32.
#pragma once

#include <utility>
#include <vector>

#include "instseg/metadata.h"
#include "instseg/types.h"

namespace instseg {

// detectron2's ResizeShortestEdge.get_output_shape: (h, w) after resizing (double math, round half up).
std::pair<int, int> resized_shape(int height, int width, int short_edge, int max_size);

// A BGR image in the model's channel order, resized; (h, w, 3) uint8.
Image prepare_image(const Image& bgr, const PreprocessParams& params);

// Stacks prepared images (and the (h, w) of their originals) into one padded batch.
// slots: the batch size to fill (fixed-batch models), at least images.size(); extra slots get
// small blank images. fixed_height/width > 0: pad to that size (throws instseg::Error if too small).
Batch make_batch(const std::vector<Image>& prepared, const std::vector<std::pair<int, int>>& original_sizes,
                 const PreprocessParams& params, int slots = 0, int fixed_height = 0, int fixed_width = 0);

}  // namespace instseg
