// Pillow's Image.resize(..., BILINEAR) on 8-bit images, reproduced exactly: a separable
// convolution with a triangle filter whose support grows with the downscale factor (so it
// antialiases when shrinking), fixed-point coefficients, one pass per axis in the order Pillow 13
// chooses (vertical first when the height shrinks by more than twice as many pixels as the width;
// Pillow 12 and older always went horizontal first, which changes some pixels by 1).
#pragma once

#include "instseg/types.h"

namespace instseg {

// (H, W, 3) -> (out_height, out_width, 3); channels are resampled independently.
Image resize_bilinear(const Image& image, int out_height, int out_width);

}  // namespace instseg
