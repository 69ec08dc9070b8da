// The inference engine behind the Predictor: ONNX Runtime (ort_session.h) or TensorRT
// (trt_engine.h). Both take the same Batch and return the same RawDetections, so the pre- and
// post-processing around them is shared.
#pragma once

#include <memory>
#include <string>

#include "instseg/metadata.h"
#include "instseg/types.h"

namespace instseg {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual const ModelMetadata& metadata() const = 0;
  // Runs one batch; outputs cover every slot of the batch (callers drop the filler slots).
  virtual RawDetections run(const Batch& batch) = 0;
};

struct BackendOptions {
  int threads = 0;             // ONNX Runtime intra-op threads; 0: its default (one per physical core)
  std::string plugin_library;  // TensorRT: libinstseg_plugins.so ("": choose_plugin_library's rule)
};

// Opens a model by its file: a .onnx with ONNX Runtime, a .engine/.plan/.trt with TensorRT
// (when this library was built with TensorRT). Throws instseg::Error with a one-line reason.
std::unique_ptr<Backend> open_backend(const std::string& model_path, const BackendOptions& options = {});

// Whether this build includes the TensorRT backend.
bool tensorrt_available();

}  // namespace instseg
