// Conversion between TensorRT PluginFields and the op's attributes.
#pragma once

#include <NvInferRuntime.h>

#include <string>
#include <vector>

#include "multilevel_roi_align_plugin.h"

namespace instseg {

// Field names advertised by the creator, in the order the ONNX parser looks them up.
std::vector<nvinfer1::PluginField> roi_align_field_names();

// Fills attrs from fc; fields that are absent keep their defaults, unknown fields are ignored.
// Integers may come as kINT8/16/32/64; featmap_strides as an integer array or as a kCHAR list
// such as "4,8,16,32". Returns false and sets error on a malformed field.
bool parse_roi_align_fields(nvinfer1::PluginFieldCollection const* fc, RoiAlignAttributes& attrs, std::string& error);

// Fields that reproduce attrs through parse_roi_align_fields; they point into attrs.
std::vector<nvinfer1::PluginField> roi_align_fields_of(RoiAlignAttributes const& attrs);

} // namespace instseg
