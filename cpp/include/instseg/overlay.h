// A picture of the results: each instance's mask blended in its class colour with its outline,
// its box, and a "name score" label, drawn low scores first so the best ones are on top
// (the same picture as instseg_deploy/visualize.py, with a built-in 5x7 pixel font).
#pragma once

#include <string>
#include <vector>

#include "instseg/types.h"

namespace instseg {

// A copy of `bgr` with the instances drawn on it. class_names[k] names class k. Masks are drawn
// from whichever MaskFormat the instances hold (the same picture for dense, rle and cropped).
Image draw_instances(const Image& bgr, const Instances& instances, const std::vector<std::string>& class_names,
                     float alpha = 0.5f);

}  // namespace instseg
