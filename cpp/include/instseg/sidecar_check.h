// The checks that refuse an engine this machine cannot run, before TensorRT sees it: the same
// checks, order and messages as instseg_deploy/runtime/trt/sidecar.py check_sidecar. Plain C++
// (no TensorRT, no CUDA), so they build and are tested everywhere; trt_engine.cpp supplies what
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

}  // namespace instseg
