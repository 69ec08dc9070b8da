// IPluginV3 (core + build + runtime capabilities) around launch_multilevel_roi_align, and its creator.
#include "multilevel_roi_align_plugin.h"

#include <exception>
#include <utility>

#include "multilevel_roi_align_kernel.h"
#include "plugin_logging.h"
#include "pooler_config.h"
#include "roi_align_plugin_fields.h"

namespace instseg {

using nvinfer1::DataType;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::IPluginCapability;
using nvinfer1::IPluginV3;
using nvinfer1::PluginCapabilityType;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

namespace {

constexpr int32_t kRoisInput = 0;
constexpr int32_t kFirstFeatureInput = 1;

bool is_supported_type(DataType type)
{
    return type == DataType::kFLOAT || type == DataType::kHALF;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Plugin

MultilevelRoIAlignPlugin::MultilevelRoIAlignPlugin(
    RoiAlignAttributes attrs, PoolerConfig const& cfg, std::string pluginNamespace)
    : mAttrs(std::move(attrs))
    , mConfig(cfg)
    , mNamespace(std::move(pluginNamespace))
{
    mTimingCacheId = std::to_string(mAttrs.output_size) + "_" + std::to_string(mAttrs.sampling_ratio) + "_"
        + std::to_string(mAttrs.aligned) + "_" + std::to_string(mAttrs.canonical_box_size) + "_"
        + std::to_string(mAttrs.canonical_level);
    for (int32_t stride : mAttrs.featmap_strides) {
        mTimingCacheId += "_" + std::to_string(stride);
    }
}

IPluginCapability* MultilevelRoIAlignPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type) {
    case PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* MultilevelRoIAlignPlugin::clone() noexcept
{
    try {
        return new MultilevelRoIAlignPlugin(mAttrs, mConfig, mNamespace);
    } catch (std::exception const& e) {
        log_plugin_error(e.what());
        return nullptr;
    }
}

char const* MultilevelRoIAlignPlugin::getPluginName() const noexcept
{
    return kRoiAlignPluginName;
}

char const* MultilevelRoIAlignPlugin::getPluginVersion() const noexcept
{
    return kRoiAlignPluginVersion;
}

char const* MultilevelRoIAlignPlugin::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

bool MultilevelRoIAlignPlugin::hasExpectedIoCount(int32_t nbInputs, int32_t nbOutputs) const noexcept
{
    return nbInputs == kFirstFeatureInput + mConfig.num_levels && nbOutputs == 1;
}

int32_t MultilevelRoIAlignPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t MultilevelRoIAlignPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (!hasExpectedIoCount(nbInputs, nbOutputs) || !is_supported_type(inputTypes[kFirstFeatureInput])) {
        return -1;
    }
    outputTypes[0] = inputTypes[kFirstFeatureInput]; // pooled values keep the feature maps' type
    return 0;
}

int32_t MultilevelRoIAlignPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
    nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    if (!hasExpectedIoCount(nbInputs, nbOutputs) || inputs[kRoisInput].nbDims != 2) {
        return -1;
    }
    for (int32_t i = kFirstFeatureInput; i < nbInputs; ++i) {
        if (inputs[i].nbDims != 4) {
            return -1;
        }
    }
    // (R, C, S, S): R from the RoIs (dynamic), C from P2, S a build-time constant.
    DimsExprs& out = outputs[0];
    out.nbDims = 4;
    out.d[0] = inputs[kRoisInput].d[0];
    out.d[1] = inputs[kFirstFeatureInput].d[1];
    out.d[2] = exprBuilder.constant(mAttrs.output_size);
    out.d[3] = exprBuilder.constant(mAttrs.output_size);
    return 0;
}

bool MultilevelRoIAlignPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (!hasExpectedIoCount(nbInputs, nbOutputs) || pos < 0 || pos >= nbInputs + nbOutputs) {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR || !is_supported_type(desc.type)) {
        return false;
    }
    // All FP32 or all FP16: RoIs, every level and the output share position 0's type.
    return pos == 0 || desc.type == inOut[0].desc.type;
}

int32_t MultilevelRoIAlignPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (!hasExpectedIoCount(nbInputs, nbOutputs)) {
        log_plugin_error("InstsegMultilevelRoIAlign: expects rois plus one feature map per featmap_strides entry");
        return -1;
    }
    nvinfer1::Dims const& rois = in[kRoisInput].desc.dims;
    if (rois.nbDims != 2 || (rois.d[1] != 5 && rois.d[1] != -1)) { // -1: not known at build time
        log_plugin_error("InstsegMultilevelRoIAlign: rois must have shape (R, 5)");
        return -1;
    }
    return 0;
}

size_t MultilevelRoIAlignPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0;
}

char const* MultilevelRoIAlignPlugin::getTimingCacheID() noexcept
{
    return mTimingCacheId.c_str();
}

int32_t MultilevelRoIAlignPlugin::onShapeChange(
    PluginTensorDesc const* /*in*/, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return hasExpectedIoCount(nbInputs, nbOutputs) ? 0 : -1;
}

int32_t MultilevelRoIAlignPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    PluginTensorDesc const& p2 = inputDesc[kFirstFeatureInput];
    PyramidShape shape{};
    shape.batch = static_cast<int>(p2.dims.d[0]);
    shape.channels = static_cast<int>(p2.dims.d[1]);
    for (int32_t l = 0; l < mConfig.num_levels; ++l) {
        nvinfer1::Dims const& dims = inputDesc[kFirstFeatureInput + l].dims;
        if (dims.d[0] != p2.dims.d[0] || dims.d[1] != p2.dims.d[1]) {
            log_plugin_error("InstsegMultilevelRoIAlign: feature maps differ in batch or channel count");
            return -1;
        }
        shape.heights[l] = static_cast<int>(dims.d[2]);
        shape.widths[l] = static_cast<int>(dims.d[3]);
    }
    int const dtype = inputDesc[kRoisInput].type == DataType::kHALF ? INSTSEG_DTYPE_FLOAT16 : INSTSEG_DTYPE_FLOAT32;
    int64_t const numRois = inputDesc[kRoisInput].dims.d[0];
    cudaError_t const err = launch_multilevel_roi_align(
        dtype, inputs[kRoisInput], numRois, inputs + kFirstFeatureInput, shape, mConfig, outputs[0], stream);
    if (err != cudaSuccess) {
        log_plugin_error(cudaGetErrorString(err));
        return -1;
    }
    return 0;
}

IPluginV3* MultilevelRoIAlignPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone(); // no per-context resources
}

PluginFieldCollection const* MultilevelRoIAlignPlugin::getFieldsToSerialize() noexcept
{
    mSerializedFields = roi_align_fields_of(mAttrs);
    mSerializedCollection.nbFields = static_cast<int32_t>(mSerializedFields.size());
    mSerializedCollection.fields = mSerializedFields.data();
    return &mSerializedCollection;
}

// ---------------------------------------------------------------------------------------------
// Creator

MultilevelRoIAlignPluginCreator::MultilevelRoIAlignPluginCreator()
    : mFieldNames(roi_align_field_names())
{
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* MultilevelRoIAlignPluginCreator::getPluginName() const noexcept
{
    return kRoiAlignPluginName;
}

char const* MultilevelRoIAlignPluginCreator::getPluginVersion() const noexcept
{
    return kRoiAlignPluginVersion;
}

char const* MultilevelRoIAlignPluginCreator::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

PluginFieldCollection const* MultilevelRoIAlignPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* MultilevelRoIAlignPluginCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    // Build and runtime phases receive the same fields (getFieldsToSerialize mirrors getFieldNames).
    try {
        RoiAlignAttributes attrs;
        std::string error;
        if (!parse_roi_align_fields(fc, attrs, error)) {
            log_plugin_error(("InstsegMultilevelRoIAlign: " + error).c_str());
            return nullptr;
        }
        PoolerConfig cfg;
        ConfigStatus const status = make_pooler_config(attrs.output_size, attrs.sampling_ratio, attrs.aligned,
            attrs.canonical_box_size, attrs.canonical_level, attrs.featmap_strides.data(),
            static_cast<int>(attrs.featmap_strides.size()), cfg);
        if (status != ConfigStatus::kOk) {
            log_plugin_error((std::string("InstsegMultilevelRoIAlign: ") + describe(status)).c_str());
            return nullptr;
        }
        return new MultilevelRoIAlignPlugin(std::move(attrs), cfg, mNamespace);
    } catch (std::exception const& e) {
        log_plugin_error(e.what());
        return nullptr;
    }
}

} // namespace instseg
