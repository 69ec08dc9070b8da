// The self-description an exported model carries: one JSON document under the ONNX metadata key
// "instseg" (or in the JSON sidecar next to a TensorRT engine). Mirrors
// instseg_deploy/model_file/metadata.py; only the fields the runtime needs are read.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace instseg {

inline constexpr const char* kMetadataKey = "instseg";
inline constexpr int kMetadataFormatVersion = 1;

struct PreprocessParams {
  std::string input_format = "BGR";   // channel order the network expects: "BGR" or "RGB"
  int min_size = 800;                 // ResizeShortestEdge short side
  int max_size = 1333;                // ... and cap on the long side
  std::array<float, 3> pixel_mean{};  // in the network's channel order; pads the input
  std::array<float, 3> pixel_std{};   // applied inside the graph
  int size_divisibility = 32;
};

struct ModelMetadata {
  int format_version = 0;
  std::vector<std::string> class_names;
  PreprocessParams preprocess;
  float score_thresh = 0.05f;   // the model's own threshold (informational)
  float mask_threshold = 0.5f;  // probability at which a pasted mask pixel is on
  std::string masks = "raw";    // "raw": 28x28 probabilities; "pasted": full-resolution masks in the graph
  int fixed_batch = 0;          // 0: dynamic batch
  int fixed_height = 0;         // 0: dynamic input size; else the padded input is fixed_height x fixed_width
  int fixed_width = 0;
  std::string roi_align = "onnx";
  std::string precision = "fp32";
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
};

// Parses the metadata JSON text; `source` names the model in error messages.
// Throws instseg::Error when the JSON is invalid, too new, or lacks required fields.
ModelMetadata parse_metadata(const std::string& json_text, const std::string& source);

// The JSON sidecar `instseg export --to trt` writes next to an engine ("model.engine.json"; see
// instseg_deploy/model_file/sidecar.py): the ONNX model's metadata plus what the engine was built for.
struct EngineSidecar {
  ModelMetadata metadata;
  std::string tensorrt_version;    // e.g. "10.3.0.26"
  std::string device_name;         // GPU it was built on
  std::string compute_capability;  // "major.minor" it was built for
  bool plugin_required = false;    // needs libinstseg_plugins.so (plugin-flavoured RoIAlign)
  std::string plugin_path;         // the plugin library used at build time ("" if none)
  std::string engine_sha256;       // lowercase hex SHA-256 of the engine file ("" if not recorded)
};

// Throws instseg::Error when the sidecar is missing, not JSON, not an instseg sidecar, or too new.
EngineSidecar read_engine_sidecar(const std::string& engine_path);

// Display name of class `index` ("class <index>" when the model has no names for it).
std::string class_name(const ModelMetadata& meta, int64_t index);

}  // namespace instseg
