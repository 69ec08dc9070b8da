// TensorRT 10 backend. Compiled only when CMake finds TensorRT and CUDA (INSTSEG_WITH_TENSORRT).
//
// An engine from `instseg export --to trt` has the exporter's inputs (images, image_sizes[,
// original_sizes]) and outputs whose first dimension is the data-dependent detection count, so
// every output goes through an IOutputAllocator that grows a device buffer and records the shape.
#include "instseg/trt_engine.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <vector>

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include "instseg/error.h"
#include "instseg/sidecar_check.h"

namespace instseg {
namespace {

using nvinfer1::DataType;

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
  }
}

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, nvinfer1::AsciiChar const* message) noexcept override {
    if (severity <= Severity::kERROR) {
      last_error = message;
      std::fprintf(stderr, "TensorRT: %s\n", message);
    }
  }
  std::string last_error;
};

// A device buffer that grows on demand.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(ptr_); }
  void* reserve(size_t bytes) {
    bytes = std::max<size_t>(bytes, 1);  // empty tensors still need a unique, non-null address
    if (bytes > capacity_) {
      cudaFree(ptr_);
      ptr_ = nullptr;
      capacity_ = 0;
      if (cudaMalloc(&ptr_, bytes) != cudaSuccess) return nullptr;
      capacity_ = bytes;
    }
    return ptr_;
  }
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

// Output memory for tensors whose shape is known only after enqueueV3.
class OutputAllocator final : public nvinfer1::IOutputAllocator {
 public:
  void* reallocateOutputAsync(char const*, void*, uint64_t size, uint64_t, cudaStream_t) noexcept override {
    return buffer.reserve(static_cast<size_t>(size));
  }
  void notifyShape(char const*, nvinfer1::Dims const& dims) noexcept override { shape = dims; }

  DeviceBuffer buffer;
  nvinfer1::Dims shape{};
};

size_t element_size(DataType type) {
  switch (type) {
    case DataType::kFLOAT:
    case DataType::kINT32: return 4;
    case DataType::kHALF: return 2;
    case DataType::kINT64: return 8;
    case DataType::kBOOL:
    case DataType::kUINT8:
    case DataType::kINT8: return 1;
    default: throw Error("engine tensor has an element type this runtime does not read");
  }
}

uint16_t float_to_half(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exponent = static_cast<int32_t>((x >> 23) & 0xffu) - 127 + 15;
  uint32_t mantissa = x & 0x7fffffu;
  if (((x >> 23) & 0xffu) == 0xffu) return static_cast<uint16_t>(sign | 0x7c00u | (mantissa ? 0x200u : 0u));
  if (exponent >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exponent <= 0) {  // subnormal or zero in half precision
    if (exponent < -10) return static_cast<uint16_t>(sign);
    mantissa |= 0x800000u;
    const int shift = 14 - exponent;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u), midpoint = 1u << (shift - 1);
    if (rest > midpoint || (rest == midpoint && (half & 1u))) ++half;  // round half to even
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(half);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // normalise a subnormal
      exponent = 127 - 15 + 1;
      while (!(mantissa & 0x400u)) {
        mantissa <<= 1;
        --exponent;
      }
      bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
    }
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

std::vector<float> to_floats(const std::vector<uint8_t>& bytes, DataType type) {
  if (type == DataType::kFLOAT) {
    std::vector<float> out(bytes.size() / 4);
    std::memcpy(out.data(), bytes.data(), out.size() * 4);
    return out;
  }
  if (type == DataType::kHALF) {
    std::vector<float> out(bytes.size() / 2);
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      out[i] = half_to_float(h);
    }
    return out;
  }
  throw Error("engine output is not float32 or float16 where a real number is expected");
}

std::vector<int64_t> to_int64(const std::vector<uint8_t>& bytes, DataType type) {
  if (type == DataType::kINT64) {
    std::vector<int64_t> out(bytes.size() / 8);
    std::memcpy(out.data(), bytes.data(), out.size() * 8);
    return out;
  }
  if (type == DataType::kINT32) {
    std::vector<int64_t> out(bytes.size() / 4);
    for (size_t i = 0; i < out.size(); ++i) {
      int32_t v;
      std::memcpy(&v, bytes.data() + 4 * i, 4);
      out[i] = v;
    }
    return out;
  }
  throw Error("engine output is not int64 or int32 where an integer is expected");
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open engine " + path);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The running TensorRT and GPU, as the sidecar check compares them.
RunningPlatform running_platform() {
  const long version = getInferLibVersion();  // NV_TENSORRT_VERSION form: major * 10000 + minor * 100 + patch
  int device = 0;
  cudaDeviceProp properties{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&properties, device) != cudaSuccess) {
    throw Error("no usable CUDA GPU: TensorRT engines need an NVIDIA GPU with its driver");
  }
  return {
      std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." + std::to_string(version % 100),
      properties.name, std::to_string(properties.major) + "." + std::to_string(properties.minor)};
}

// The batch grown to the engine profile's smallest shape where needed (as the Python runner's
// fit_to_profile): padding with the pixel mean, extra slots as small blank images.
Batch fit_to_profile(const Batch& batch, const nvinfer1::Dims& min, const nvinfer1::Dims& max,
                     const std::array<float, 3>& pixel_mean) {
  if (batch.n > max.d[0] || batch.height > max.d[2] || batch.width > max.d[3]) {
    throw Error("the batch needs " + std::to_string(batch.n) + "x3x" + std::to_string(batch.height) + "x" +
                std::to_string(batch.width) + " but the engine accepts at most " + std::to_string(max.d[0]) + "x3x" +
                std::to_string(max.d[2]) + "x" + std::to_string(max.d[3]) +
                "; rebuild it with a larger --max-shape (or --size/--batch)");
  }
  const int n = std::max<int>(batch.n, static_cast<int>(min.d[0]));
  const int h = std::max<int>(batch.height, static_cast<int>(min.d[2]));
  const int w = std::max<int>(batch.width, static_cast<int>(min.d[3]));
  if (n == batch.n && h == batch.height && w == batch.width) return batch;
  constexpr int64_t kBlankSize = 32;
  Batch grown;
  grown.n = n;
  grown.height = h;
  grown.width = w;
  grown.real = batch.real;
  const size_t plane = static_cast<size_t>(h) * w, old_plane = static_cast<size_t>(batch.height) * batch.width;
  grown.images.resize(static_cast<size_t>(n) * 3 * plane);
  for (int i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) {
      float* dst = grown.images.data() + (static_cast<size_t>(i) * 3 + c) * plane;
      std::fill(dst, dst + plane, pixel_mean[static_cast<size_t>(c)]);
      if (i >= batch.n) continue;
      const float* src = batch.images.data() + (static_cast<size_t>(i) * 3 + c) * old_plane;
      for (int y = 0; y < batch.height; ++y) {
        std::copy(src + static_cast<size_t>(y) * batch.width, src + static_cast<size_t>(y + 1) * batch.width,
                  dst + static_cast<size_t>(y) * w);
      }
    }
  }
  grown.image_sizes = batch.image_sizes;
  grown.original_sizes = batch.original_sizes;
  grown.image_sizes.resize(static_cast<size_t>(n) * 2, kBlankSize);
  grown.original_sizes.resize(static_cast<size_t>(n) * 2, kBlankSize);
  return grown;
}

// The CUDA stream the engine runs on.
class CudaStream {
 public:
  CudaStream() { check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream() { cudaStreamDestroy(stream_); }
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class TrtBackend final : public Backend {
 public:
  TrtBackend(const std::string& path, const BackendOptions& options) {
    const EngineSidecar sidecar = read_engine_sidecar(path);
    // TensorRT version, compute capability and the engine's SHA-256, before TensorRT sees the file.
    for (const std::string& warning : check_sidecar(sidecar, path, running_platform())) {
      std::fprintf(stderr, "warning: %s\n", warning.c_str());
    }
    meta_ = sidecar.metadata;
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (runtime_ == nullptr) throw Error("TensorRT could not create a runtime (is libnvinfer usable here?)");
    if (sidecar.plugin_required || meta_.roi_align == "plugin" || !options.plugin_library.empty()) {
      // The sidecar's library only where the rule allows it: our build, or a copy next to the engine
      // with the SHA-256 the sidecar records (see choose_plugin_library).
      const char* env = std::getenv("INSTSEG_PLUGIN_LIB");
      const PluginLibraryChoice library = choose_plugin_library(options.plugin_library, env == nullptr ? "" : env, path,
                                                                sidecar.plugin_path, recorded_plugin_sha256(path));
      if (runtime_->getPluginRegistry().loadLibrary(library.path.c_str()) == nullptr) {
        throw Error("TensorRT could not load the RoIAlign plugin library " + library.path + " (from " + library.source +
                    "; built against another TensorRT version? see the TensorRT log above)");
      }
    }
    const std::vector<char> blob = read_file(path);
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (engine_ == nullptr) {
      throw Error("TensorRT cannot deserialize " + path +
                  " (built by another TensorRT version or for another GPU?): " + logger_.last_error);
    }
    stream_ = std::make_unique<CudaStream>();
    context_.reset(engine_->createExecutionContext());
    if (context_ == nullptr) throw Error("TensorRT could not create an execution context for " + path);
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const std::string name = engine_->getIOTensorName(i);
      if (engine_->getTensorIOMode(name.c_str()) == nvinfer1::TensorIOMode::kINPUT) {
        inputs_.push_back(name);
      } else {
        outputs_[name];  // one allocator per output
      }
    }
    for (auto& [name, allocator] : outputs_) {
      if (!context_->setOutputAllocator(name.c_str(), &allocator)) {
        throw Error("TensorRT refused an output allocator for \"" + name + "\"");
      }
    }
  }

  std::string name() const override { return "tensorrt"; }
  const ModelMetadata& metadata() const override { return meta_; }

  RawDetections run(const Batch& request) override {
    const Batch batch = fit_to_profile(
        request, engine_->getProfileShape("images", 0, nvinfer1::OptProfileSelector::kMIN),
        engine_->getProfileShape("images", 0, nvinfer1::OptProfileSelector::kMAX), meta_.preprocess.pixel_mean);
    for (const std::string& name : inputs_) upload_input(name, batch);
    if (!context_->enqueueV3(stream_->get())) throw Error("TensorRT enqueueV3 failed: " + logger_.last_error);
    check_cuda(cudaStreamSynchronize(stream_->get()), "cudaStreamSynchronize");

    RawDetections raw;
    for (auto& [name, allocator] : outputs_) {
      const nvinfer1::Dims& shape = allocator.shape;
      size_t count = 1;
      for (int32_t d = 0; d < shape.nbDims; ++d) count *= static_cast<size_t>(shape.d[d]);
      const DataType type = engine_->getTensorDataType(name.c_str());
      std::vector<uint8_t> bytes(count * element_size(type));
      if (!bytes.empty()) {
        check_cuda(cudaMemcpy(bytes.data(), allocator.buffer.get(), bytes.size(), cudaMemcpyDeviceToHost),
                   "cudaMemcpy");
      }
      if (name == "boxes") {
        raw.count = static_cast<int>(shape.d[0]);
        raw.boxes = to_floats(bytes, type);
      } else if (name == "scores") {
        raw.scores = to_floats(bytes, type);
      } else if (name == "classes") {
        raw.classes = to_int64(bytes, type);
      } else if (name == "batch_idx") {
        raw.batch_idx = to_int64(bytes, type);
      } else if (name == "mask_probs") {
        raw.mask_size = shape.nbDims == 3 ? static_cast<int>(shape.d[2]) : 0;
        raw.mask_probs = to_floats(bytes, type);
      } else if (name == "masks") {
        raw.has_pasted_masks = true;
        raw.canvas_height = static_cast<int>(shape.d[1]);
        raw.canvas_width = static_cast<int>(shape.d[2]);
        raw.pasted_masks = std::move(bytes);
      }
    }
    if (raw.boxes.size() != static_cast<size_t>(raw.count) * 4 || raw.scores.size() != static_cast<size_t>(raw.count)) {
      throw Error("engine outputs disagree on the number of detections");
    }
    return raw;
  }

 private:
  void upload_input(const std::string& name, const Batch& batch) {
    nvinfer1::Dims dims{};
    std::vector<uint8_t> host;
    const DataType type = engine_->getTensorDataType(name.c_str());
    if (name == "images") {
      dims.nbDims = 4;
      dims.d[0] = batch.n;
      dims.d[1] = 3;
      dims.d[2] = batch.height;
      dims.d[3] = batch.width;
      if (type == DataType::kFLOAT) {
        host.resize(batch.images.size() * 4);
        std::memcpy(host.data(), batch.images.data(), host.size());
      } else if (type == DataType::kHALF) {
        host.resize(batch.images.size() * 2);
        for (size_t i = 0; i < batch.images.size(); ++i) {
          const uint16_t h = float_to_half(batch.images[i]);
          std::memcpy(host.data() + 2 * i, &h, 2);
        }
      } else {
        throw Error("engine input \"images\" is not float32 or float16");
      }
    } else if (name == "image_sizes" || name == "original_sizes") {
      const std::vector<int64_t>& sizes = name == "image_sizes" ? batch.image_sizes : batch.original_sizes;
      dims.nbDims = 2;
      dims.d[0] = batch.n;
      dims.d[1] = 2;
      if (type == DataType::kINT64) {
        host.resize(sizes.size() * 8);
        std::memcpy(host.data(), sizes.data(), host.size());
      } else if (type == DataType::kINT32) {
        host.resize(sizes.size() * 4);
        for (size_t i = 0; i < sizes.size(); ++i) {
          const int32_t v = static_cast<int32_t>(sizes[i]);
          std::memcpy(host.data() + 4 * i, &v, 4);
        }
      } else {
        throw Error("engine input \"" + name + "\" is not int64 or int32");
      }
    } else {
      throw Error("engine input \"" + name + "\" is not one an instseg export has");
    }
    if (!context_->setInputShape(name.c_str(), dims)) {
      throw Error("the engine's optimisation profile does not allow input \"" + name + "\" of this shape (" +
                  std::to_string(batch.n) + "x3x" + std::to_string(batch.height) + "x" + std::to_string(batch.width) +
                  "); rebuild it with larger --max-shape");
    }
    void* device = input_buffers_[name].reserve(host.size());
    if (device == nullptr) throw Error("out of GPU memory for input \"" + name + "\"");
    check_cuda(cudaMemcpyAsync(device, host.data(), host.size(), cudaMemcpyHostToDevice, stream_->get()),
               "cudaMemcpyAsync");
    check_cuda(cudaStreamSynchronize(stream_->get()), "cudaStreamSynchronize");  // `host` goes out of scope next
    if (!context_->setTensorAddress(name.c_str(), device))
      throw Error("TensorRT refused the address of \"" + name + "\"");
  }

  // Declaration order is release order reversed: the context goes first, the logger last
  // (TensorRT 10 objects are released with delete).
  ModelMetadata meta_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::map<std::string, OutputAllocator> outputs_;
  std::map<std::string, DeviceBuffer> input_buffers_;
  std::unique_ptr<CudaStream> stream_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::vector<std::string> inputs_;
};

}  // namespace

std::unique_ptr<Backend> open_trt_backend(const std::string& engine_path, const BackendOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(engine_path, ec)) throw Error("engine file not found: " + engine_path);
  return std::make_unique<TrtBackend>(engine_path, options);
}

}  // namespace instseg
