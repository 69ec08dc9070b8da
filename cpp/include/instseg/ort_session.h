// ONNX Runtime backend (C++ API, CPU execution provider): loads an exported .onnx, reads its
// "instseg" metadata and runs batches.
#pragma once

#include <memory>
#include <string>

#include "instseg/backend.h"

namespace instseg {

// Throws instseg::Error for a missing file, a file ONNX Runtime cannot load, a model without our
// metadata, or a plugin-flavoured model (its RoIAlign node runs only under TensorRT here).
std::unique_ptr<Backend> open_ort_backend(const std::string& model_path, const BackendOptions& options);

// "1.32.0": the version of the ONNX Runtime library in use.
std::string onnxruntime_version();

}  // namespace instseg
