// Choosing the backend from the model file.
#include "instseg/backend.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "instseg/error.h"
#include "instseg/ort_session.h"
#ifdef INSTSEG_WITH_TENSORRT
#include "instseg/trt_engine.h"
#endif

namespace instseg {

bool tensorrt_available() {
#ifdef INSTSEG_WITH_TENSORRT
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Backend> open_backend(const std::string& model_path, const BackendOptions& options) {
  std::string ext = std::filesystem::path(model_path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".engine" || ext == ".plan" || ext == ".trt") {
#ifdef INSTSEG_WITH_TENSORRT
    return open_trt_backend(model_path, options);
#else
    throw Error(model_path +
                " is a TensorRT engine, but this build has no TensorRT backend "
                "(configure cpp/ with -DTENSORRT_ROOT=/path/to/TensorRT-10 on a machine with CUDA)");
#endif
  }
  return open_ort_backend(model_path, options);
}

}  // namespace instseg
