// ONNX Runtime backend through the C++ API (CPU execution provider), with the session settings of
// the Python ORT backend's defaults: default intra-op threads, ORT_ENABLE_ALL, errors-only logging.
#include "instseg/ort_session.h"

#include <algorithm>
#include <filesystem>
#include <mutex>

// The API table is fetched by hand so that a library older than these headers is a clear error
// instead of a null pointer.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include "instseg/error.h"
#include "instseg/roi_align_contract.h"

namespace instseg {
namespace {

void init_ort_api() {
  static std::once_flag once;
  static const OrtApi* api = nullptr;
  std::call_once(once, [] {
    api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (api != nullptr) Ort::InitApi(api);
  });
  if (api == nullptr) {
    throw Error(std::string("the ONNX Runtime library (") + OrtGetApiBase()->GetVersionString() +
                ") is older than the headers this program was built with (API version " +
                std::to_string(ORT_API_VERSION) + "); use a newer onnxruntime");
  }
}

std::string first_line(const std::string& text, size_t limit = 300) {
  std::string line = text.substr(0, text.find('\n'));
  return line.size() > limit ? line.substr(0, limit) + "..." : line;
}

template <typename T>
std::vector<T> copy_tensor(const Ort::Value& value, size_t count) {
  const T* data = value.GetTensorData<T>();
  return std::vector<T>(data, data + count);
}

// Any integer output as int64 (engines and exporters may narrow classes/batch_idx to int32).
std::vector<int64_t> integer_tensor(const Ort::Value& value, size_t count, const std::string& name) {
  const auto type = value.GetTensorTypeAndShapeInfo().GetElementType();
  if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) return copy_tensor<int64_t>(value, count);
  if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32) {
    const int32_t* data = value.GetTensorData<int32_t>();
    return std::vector<int64_t>(data, data + count);
  }
  throw Error("model output \"" + name + "\" has an unexpected element type (expected int64 or int32)");
}

class OrtBackend final : public Backend {
 public:
  OrtBackend(const std::string& path, const BackendOptions& options)
      : env_(ORT_LOGGING_LEVEL_ERROR, "instseg"), session_(nullptr) {
    Ort::SessionOptions settings;
    settings.SetIntraOpNumThreads(options.threads);
    settings.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    settings.SetLogSeverityLevel(3);
    // Threads spin inside a run but stop when it returns, so they do not hold the cores through the
    // caller's post-processing (as the Python runner, instseg_deploy/runtime/ort.py).
    settings.AddConfigEntry("session.force_spinning_stop", "1");
    try {
      session_ = Ort::Session(env_, path.c_str(), settings);
    } catch (const Ort::Exception& e) {
      const std::string reason = e.what();
      if (reason.find(roi_align_contract::kOpType) != std::string::npos) {
        throw Error(path +
                    " is plugin-flavoured (its RoIAlign node runs under TensorRT): export with "
                    "`--roi-align onnx` for ONNX Runtime");
      }
      throw Error("ONNX Runtime cannot load " + path + ": " + first_line(reason));
    }
    Ort::AllocatorWithDefaultOptions allocator;
    Ort::ModelMetadata model_metadata = session_.GetModelMetadata();
    Ort::AllocatedStringPtr text = model_metadata.LookupCustomMetadataMapAllocated(kMetadataKey, allocator);
    if (!text) {
      throw Error(path + " has no instseg metadata (not exported by `instseg export`)");
    }
    meta_ = parse_metadata(text.get(), path);
    for (size_t i = 0; i < session_.GetInputCount(); ++i) {
      input_names_.emplace_back(session_.GetInputNameAllocated(i, allocator).get());
    }
    for (size_t i = 0; i < session_.GetOutputCount(); ++i) {
      output_names_.emplace_back(session_.GetOutputNameAllocated(i, allocator).get());
    }
    for (const char* required : {"boxes", "scores", "classes", "batch_idx", "mask_probs"}) {
      if (std::find(output_names_.begin(), output_names_.end(), required) == output_names_.end()) {
        throw Error(path + " lacks the output \"" + required + "\" of an instseg export");
      }
    }
  }

  std::string name() const override { return "onnxruntime " + onnxruntime_version(); }
  const ModelMetadata& metadata() const override { return meta_; }

  RawDetections run(const Batch& batch) override {
    const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    const int64_t image_shape[4] = {batch.n, 3, batch.height, batch.width};
    const int64_t size_shape[2] = {batch.n, 2};
    // ONNX Runtime does not write to inputs; its API takes non-const pointers.
    auto* images = const_cast<float*>(batch.images.data());
    auto* image_sizes = const_cast<int64_t*>(batch.image_sizes.data());
    auto* original_sizes = const_cast<int64_t*>(batch.original_sizes.data());
    std::vector<Ort::Value> inputs;
    std::vector<const char*> input_names;
    for (const std::string& name : input_names_) {
      if (name == "images") {
        inputs.push_back(Ort::Value::CreateTensor<float>(cpu, images, batch.images.size(), image_shape, 4));
      } else if (name == "image_sizes") {
        inputs.push_back(Ort::Value::CreateTensor<int64_t>(cpu, image_sizes, batch.image_sizes.size(), size_shape, 2));
      } else if (name == "original_sizes") {
        inputs.push_back(
            Ort::Value::CreateTensor<int64_t>(cpu, original_sizes, batch.original_sizes.size(), size_shape, 2));
      } else {
        throw Error("model input \"" + name + "\" is not one an instseg export has");
      }
      input_names.push_back(name.c_str());
    }
    std::vector<const char*> output_names;
    for (const std::string& name : output_names_) output_names.push_back(name.c_str());

    std::vector<Ort::Value> outputs;
    try {
      outputs = session_.Run(Ort::RunOptions{nullptr}, input_names.data(), inputs.data(), inputs.size(),
                             output_names.data(), output_names.size());
    } catch (const Ort::Exception& e) {
      throw Error(std::string("ONNX Runtime failed to run the model: ") + first_line(e.what()));
    }
    RawDetections raw;
    for (size_t i = 0; i < outputs.size(); ++i) {
      const std::string& name = output_names_[i];
      const Ort::Value& value = outputs[i];
      const std::vector<int64_t> shape = value.GetTensorTypeAndShapeInfo().GetShape();
      const size_t count = value.GetTensorTypeAndShapeInfo().GetElementCount();
      if (name == "boxes") {
        raw.count = static_cast<int>(shape.at(0));
        raw.boxes = copy_tensor<float>(value, count);
      } else if (name == "scores") {
        raw.scores = copy_tensor<float>(value, count);
      } else if (name == "classes") {
        raw.classes = integer_tensor(value, count, name);
      } else if (name == "batch_idx") {
        raw.batch_idx = integer_tensor(value, count, name);
      } else if (name == "mask_probs") {
        raw.mask_size = shape.size() == 3 ? static_cast<int>(shape[2]) : 0;
        raw.mask_probs = copy_tensor<float>(value, count);
      } else if (name == "masks") {
        raw.has_pasted_masks = true;
        raw.canvas_height = static_cast<int>(shape.at(1));
        raw.canvas_width = static_cast<int>(shape.at(2));
        const bool* data = value.GetTensorData<bool>();
        raw.pasted_masks.assign(data, data + count);
      }
    }
    check_consistent(raw);
    return raw;
  }

 private:
  static void check_consistent(const RawDetections& raw) {
    const size_t d = static_cast<size_t>(raw.count);
    if (raw.boxes.size() != d * 4 || raw.scores.size() != d || raw.classes.size() != d || raw.batch_idx.size() != d ||
        raw.mask_probs.size() != d * static_cast<size_t>(raw.mask_size) * raw.mask_size) {
      throw Error("model outputs disagree on the number of detections");
    }
  }

  Ort::Env env_;
  Ort::Session session_;
  ModelMetadata meta_;
  std::vector<std::string> input_names_;
  std::vector<std::string> output_names_;
};

}  // namespace

std::string onnxruntime_version() { return OrtGetApiBase()->GetVersionString(); }

std::unique_ptr<Backend> open_ort_backend(const std::string& model_path, const BackendOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model_path, ec)) {
    throw Error("model file not found: " + model_path);
  }
  init_ort_api();
  try {
    return std::make_unique<OrtBackend>(model_path, options);
  } catch (const Ort::Exception& e) {
    throw Error("ONNX Runtime error with " + model_path + ": " + first_line(e.what()));
  }
}

}  // namespace instseg
