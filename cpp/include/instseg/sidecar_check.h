// The checks that refuse an engine this machine cannot run, before TensorRT sees it: the same
// checks, order and messages as instseg_deploy/runtime/trt/sidecar.py check_sidecar; and which
// plugin library may be loaded for it, as runtime/trt/plugin_library.py find_plugin_library. Plain
// C++ (no TensorRT, no CUDA), so they build and are tested everywhere; trt_engine.cpp supplies what
// the running TensorRT and GPU report.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "instseg/metadata.h"

namespace instseg {

// What the engine would run on.
struct RunningPlatform {
  std::string tensorrt_version;    // e.g. "10.3.0" (compared as major.minor.patch)
  std::string device_name;         // e.g. "NVIDIA L4"
  std::string compute_capability;  // "major.minor"
};

// "10.3.0.26" or "10.3.0.post1" -> 100300, TensorRT's NV_TENSORRT_VERSION_INT form.
long tensorrt_version_number(const std::string& version);

// Lowercase hex SHA-256 of a file's contents. Throws instseg::Error when the file cannot be read.
std::string file_sha256(const std::string& path);

// Throws instseg::Error (with the rebuild command) for another TensorRT version, another compute
// capability, or an engine file whose SHA-256 is not the sidecar's engine_sha256. Returns warnings
// for what TensorRT tolerates (another GPU model of the same compute capability).
std::vector<std::string> check_sidecar(const EngineSidecar& sidecar, const std::string& engine,
                                       const RunningPlatform& running);

// Our own build of the TensorRT plugin library, relative to the working directory.
inline constexpr const char* kDefaultPluginLibrary = "plugins/build/libinstseg_plugins.so";

// The plugin library to load and how it was chosen.
struct PluginLibraryChoice {
  std::string path;    // canonical (absolute): dlopen never searches its own paths for it
  std::string source;  // "--plugin-lib", "INSTSEG_PLUGIN_LIB", "plugins/build" or "next to the engine"
};

// The sidecar's plugin_library.sha256 ("" when it records none); read_engine_sidecar keeps only the path.
std::string recorded_plugin_sha256(const std::string& engine);

// Loading a library runs its code, so it comes only from places the user chose: `requested`
// (--plugin-lib), then `env_value` ($INSTSEG_PLUGIN_LIB; "" when unset), then the library the
// engine's sidecar names (`recorded_path`, `recorded_sha256`) but only when it is `default_library`
// or a copy of that name next to the engine whose SHA-256 is `recorded_sha256`, then
// `default_library`. Throws instseg::Error for a missing requested file, a sidecar naming any other
// existing library or a copy that does not match (the reason, the rule and the fix), or nothing
// found. Same rule and messages as instseg_deploy/runtime/trt/plugin_library.py find_plugin_library.
PluginLibraryChoice choose_plugin_library(const std::string& requested, const std::string& env_value,
                                          const std::string& engine, const std::string& recorded_path,
                                          const std::string& recorded_sha256,
                                          const std::string& default_library = kDefaultPluginLibrary);

}  // namespace instseg
