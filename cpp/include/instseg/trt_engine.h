// TensorRT 10 backend: deserialises an engine built by `instseg export --to trt` (loading our
// RoIAlign plugin library first), reads the metadata from the engine's JSON sidecar, and runs
// batches with the tensor API (setInputShape, setTensorAddress, enqueueV3, output allocators for
// the data-dependent detection count). Compiled only when CMake finds TensorRT and CUDA.
#pragma once

#include <memory>
#include <string>

#include "instseg/backend.h"

namespace instseg {

std::unique_ptr<Backend> open_trt_backend(const std::string& engine_path, const BackendOptions& options);

}  // namespace instseg
