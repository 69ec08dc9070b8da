// The identity of the multi-level RoIAlign op, shared by the TensorRT plugin and the C++ runtime.
//
// Mirrors instseg_deploy/ops/roi_align_contract.py (tests/test_roi_align_contract.py checks that the
// two agree): TensorRT's ONNX parser finds the plugin creator by op_type == plugin name plus the
// plugin_version / plugin_namespace string attributes; every other attribute of the node becomes
// a PluginField of the same name. Lives in plugins/include/ (not plugins/src/) so that cpp/ can
// include the contract without seeing the plugin's implementation headers.
#pragma once

#include <cstdint>

namespace instseg::roi_align_contract {

inline constexpr char kOpType[] = "InstsegMultilevelRoIAlign"; // ONNX op_type == TensorRT plugin name
inline constexpr char kPluginVersion[] = "1";
inline constexpr char kPluginNamespace[] = "";
inline constexpr char kOnnxDomain[] = "instseg";        // the domain the exporter emits
inline constexpr char kOrtDomain[] = "ai.onnx.contrib"; // onnxruntime-extensions' custom-op domain

// PluginField (ONNX attribute) names, each with detectron2's Mask R-CNN ROIPooler default.
inline constexpr char kOutputSize[] = "output_size";
inline constexpr int32_t kDefaultOutputSize = 7;
inline constexpr char kSamplingRatio[] = "sampling_ratio";
inline constexpr int32_t kDefaultSamplingRatio = 0;
inline constexpr char kAligned[] = "aligned";
inline constexpr int32_t kDefaultAligned = 1;
inline constexpr char kCanonicalBoxSize[] = "canonical_box_size";
inline constexpr int32_t kDefaultCanonicalBoxSize = 224;
inline constexpr char kCanonicalLevel[] = "canonical_level";
inline constexpr int32_t kDefaultCanonicalLevel = 4;
inline constexpr char kFeatmapStrides[] = "featmap_strides";
inline constexpr int32_t kDefaultFeatmapStrides[] = {4, 8, 16, 32};

} // namespace instseg::roi_align_contract
