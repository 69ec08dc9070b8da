// TensorRT 10 IPluginV3 wrapper of the multi-level RoIAlign kernel, and its creator.
//
// Op contract (same as the ONNX node and the CPU twin):
//   inputs : rois (R, 5) [batch_index, x1, y1, x2, y2], then one feature map (N, C, H_l, W_l) per stride
//   output : (R, C, output_size, output_size); every tensor float32 or every tensor float16, linear
//   fields : output_size, sampling_ratio, aligned, canonical_box_size, canonical_level (int32),
//            featmap_strides (int32 array)
#pragma once

#include <NvInferRuntime.h>

#include <iterator>
#include <string>
#include <vector>

#include "instseg/roi_align_contract.h"
#include "roi_align_math.h"

namespace instseg {

constexpr char const* kRoiAlignPluginName = roi_align_contract::kOpType;
constexpr char const* kRoiAlignPluginVersion = roi_align_contract::kPluginVersion;

// Attribute values as they appear in the ONNX node and in the serialized engine.
struct RoiAlignAttributes {
    int32_t output_size{roi_align_contract::kDefaultOutputSize};
    int32_t sampling_ratio{roi_align_contract::kDefaultSamplingRatio};
    int32_t aligned{roi_align_contract::kDefaultAligned};
    int32_t canonical_box_size{roi_align_contract::kDefaultCanonicalBoxSize};
    int32_t canonical_level{roi_align_contract::kDefaultCanonicalLevel};
    std::vector<int32_t> featmap_strides = std::vector<int32_t>(
        std::begin(roi_align_contract::kDefaultFeatmapStrides), std::end(roi_align_contract::kDefaultFeatmapStrides));
};

class MultilevelRoIAlignPlugin : public nvinfer1::IPluginV3,
                                 public nvinfer1::IPluginV3OneCore,
                                 public nvinfer1::IPluginV3OneBuild,
                                 public nvinfer1::IPluginV3OneRuntime {
public:
    // cfg must be the validated form of attrs (see make_pooler_config).
    MultilevelRoIAlignPlugin(RoiAlignAttributes attrs, PoolerConfig const& cfg, std::string pluginNamespace);
    ~MultilevelRoIAlignPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getTimingCacheID() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    bool hasExpectedIoCount(int32_t nbInputs, int32_t nbOutputs) const noexcept;

    RoiAlignAttributes mAttrs;
    PoolerConfig mConfig;
    std::string mNamespace;
    std::string mTimingCacheId; // attribute values; TensorRT adds shapes and formats itself
    std::vector<nvinfer1::PluginField> mSerializedFields;
    nvinfer1::PluginFieldCollection mSerializedCollection{};
};

class MultilevelRoIAlignPluginCreator : public nvinfer1::IPluginCreatorV3One {
public:
    MultilevelRoIAlignPluginCreator();
    ~MultilevelRoIAlignPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
    std::string mNamespace;
};

} // namespace instseg
