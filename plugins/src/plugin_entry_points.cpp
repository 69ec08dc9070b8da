// Entry points TensorRT looks for in a plugin shared library (IPluginRegistry::loadLibrary,
// trtexec --dynamicPlugins, plugins serialized into version-compatible engines):
//   setLoggerFinder() and getCreators().
// With INSTSEG_STATIC_PLUGIN_REGISTRATION the creator also registers itself when the library is
// loaded (REGISTER_TENSORRT_PLUGIN), for applications that just dlopen it or trtexec
// --staticPlugins. Never combine that build with loadLibrary(): TensorRT refuses to register a
// creator twice.
#include <NvInferRuntime.h>

#include <atomic>

#include "multilevel_roi_align_plugin.h"
#include "plugin_logging.h"

#define INSTSEG_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

instseg::MultilevelRoIAlignPluginCreator& roi_align_creator()
{
    static instseg::MultilevelRoIAlignPluginCreator creator;
    return creator;
}

} // namespace

namespace instseg {

void log_plugin_error(char const* message) noexcept
{
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    nvinfer1::ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr) {
        logger->log(nvinfer1::ILogger::Severity::kERROR, message);
    }
}

} // namespace instseg

INSTSEG_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    gLoggerFinder.store(finder);
}

INSTSEG_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&roi_align_creator()};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}

#if defined(INSTSEG_STATIC_PLUGIN_REGISTRATION)
// The macro pastes its argument into a variable name, so it needs an unqualified class name.
using instseg::MultilevelRoIAlignPluginCreator;
REGISTER_TENSORRT_PLUGIN(MultilevelRoIAlignPluginCreator);
#endif
