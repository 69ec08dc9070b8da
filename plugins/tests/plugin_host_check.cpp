// Host-side check of libinstseg_plugins.so through the TensorRT plugin interfaces alone: loads the
// library like IPluginRegistry::loadLibrary does (dlopen + getCreators), then exercises the creator
// and the plugin's build/runtime methods that need no GPU. Exit code 0 when every check passes.
//   usage: plugin_host_check path/to/libinstseg_plugins.so
#include <NvInferRuntime.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "instseg/roi_align_contract.h"

using namespace nvinfer1;

namespace {

int gFailures = 0;

void check(bool ok, char const* what)
{
    std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    gFailures += ok ? 0 : 1;
}

template <typename T>
T* capability(IPluginV3* plugin, PluginCapabilityType type)
{
    return static_cast<T*>(plugin->getCapabilityInterface(type));
}

DynamicPluginTensorDesc linear(DataType type, int nbDims)
{
    DynamicPluginTensorDesc d{};
    d.desc.type = type;
    d.desc.format = TensorFormat::kLINEAR;
    d.desc.dims.nbDims = nbDims;
    for (int i = 0; i < nbDims; ++i) {
        d.desc.dims.d[i] = -1;
    }
    return d;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s libinstseg_plugins.so\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        std::fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    check(getCreators != nullptr, "getCreators is exported");
    check(dlsym(lib, "setLoggerFinder") != nullptr, "setLoggerFinder is exported");
    if (getCreators == nullptr) {
        return 1;
    }
    int32_t nbCreators = 0;
    IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    check(nbCreators == 1, "one creator");
    check(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0, "creator is V3One");
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    namespace contract = instseg::roi_align_contract;
    check(std::strcmp(creator->getPluginName(), contract::kOpType) == 0, "plugin name");
    check(std::strcmp(creator->getPluginVersion(), contract::kPluginVersion) == 0
            && std::strcmp(creator->getPluginNamespace(), contract::kPluginNamespace) == 0,
        "plugin version and namespace");
    check(creator->getFieldNames()->nbFields == 6, "six fields advertised");

    // Fields as the ONNX parser builds them from the node (INT -> kINT32, INTS -> kINT32 array).
    int32_t outputSize = 14, samplingRatio = 0, aligned = 1, boxSize = 224, level = 4;
    int32_t strides[4] = {4, 8, 16, 32};
    PluginField fields[] = {
        {contract::kOutputSize, &outputSize, PluginFieldType::kINT32, 1},
        {contract::kSamplingRatio, &samplingRatio, PluginFieldType::kINT32, 1},
        {contract::kAligned, &aligned, PluginFieldType::kINT32, 1},
        {contract::kCanonicalBoxSize, &boxSize, PluginFieldType::kINT32, 1},
        {contract::kCanonicalLevel, &level, PluginFieldType::kINT32, 1},
        {contract::kFeatmapStrides, strides, PluginFieldType::kINT32, 4},
    };
    PluginFieldCollection fc{6, fields};
    std::unique_ptr<IPluginV3> plugin(creator->createPlugin("pooler", &fc, TensorRTPhase::kBUILD));
    check(plugin != nullptr, "createPlugin(kBUILD)");
    if (!plugin) {
        return 1;
    }
    auto* core = capability<IPluginV3OneCore>(plugin.get(), PluginCapabilityType::kCORE);
    auto* build = capability<IPluginV3OneBuild>(plugin.get(), PluginCapabilityType::kBUILD);
    auto* runtime = capability<IPluginV3OneRuntime>(plugin.get(), PluginCapabilityType::kRUNTIME);
    check(core && build && runtime, "core, build and runtime capabilities");
    check(std::strcmp(core->getPluginName(), creator->getPluginName()) == 0, "plugin and creator names agree");
    check(build->getNbOutputs() == 1, "one output");

    DataType halfs[5] = {DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kHALF};
    DataType outType{};
    check(build->getOutputDataTypes(&outType, 1, halfs, 5) == 0 && outType == DataType::kHALF, "FP16 in, FP16 out");
    check(build->getOutputDataTypes(&outType, 1, halfs, 4) != 0, "wrong input count rejected");

    DynamicPluginTensorDesc io[6] = {linear(DataType::kFLOAT, 2), linear(DataType::kFLOAT, 4),
        linear(DataType::kFLOAT, 4), linear(DataType::kFLOAT, 4), linear(DataType::kFLOAT, 4),
        linear(DataType::kFLOAT, 4)};
    io[0].desc.dims.d[1] = 5;
    bool allFloat = true;
    for (int pos = 0; pos < 6; ++pos) {
        allFloat = allFloat && build->supportsFormatCombination(pos, io, 5, 1);
    }
    check(allFloat, "all-FP32 linear combination supported");
    io[3].desc.type = DataType::kHALF;
    check(!build->supportsFormatCombination(3, io, 5, 1), "mixed FP32/FP16 rejected");
    io[3].desc.type = DataType::kFLOAT;
    io[3].desc.format = TensorFormat::kCHW32;
    check(!build->supportsFormatCombination(3, io, 5, 1), "non-linear format rejected");
    io[3].desc.format = TensorFormat::kLINEAR;
    check(build->configurePlugin(io, 5, io + 5, 1) == 0, "configurePlugin");

    PluginFieldCollection const* saved = runtime->getFieldsToSerialize();
    std::unique_ptr<IPluginV3> restored(creator->createPlugin("pooler", saved, TensorRTPhase::kRUNTIME));
    check(restored != nullptr, "createPlugin(kRUNTIME) from the serialized fields");
    if (restored) {
        auto* restoredBuild = capability<IPluginV3OneBuild>(restored.get(), PluginCapabilityType::kBUILD);
        check(std::string(restoredBuild->getTimingCacheID()) == build->getTimingCacheID(),
            "serialized fields reproduce the attributes");
    }
    std::unique_ptr<IPluginV3> attached(runtime->attachToContext(nullptr));
    check(attached != nullptr, "attachToContext clones");

    char const* stridesText = "4,8,16,32"; // featmap_strides as a string attribute
    PluginField textField{
        contract::kFeatmapStrides, stridesText, PluginFieldType::kCHAR, static_cast<int32_t>(std::strlen(stridesText))};
    PluginFieldCollection textFc{1, &textField};
    std::unique_ptr<IPluginV3> fromText(creator->createPlugin("pooler", &textFc, TensorRTPhase::kBUILD));
    check(fromText != nullptr, "featmap_strides accepted as text");

    int32_t badStrides[4] = {4, 8, 16, 24};
    PluginField badField{contract::kFeatmapStrides, badStrides, PluginFieldType::kINT32, 4};
    PluginFieldCollection badFc{1, &badField};
    std::unique_ptr<IPluginV3> bad(creator->createPlugin("pooler", &badFc, TensorRTPhase::kBUILD));
    check(bad == nullptr, "non power-of-two strides rejected");

    std::printf("%d failure(s)\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
