// Parsing the "instseg" metadata JSON (instseg_deploy/model_file/metadata.py writes it).
#include "instseg/metadata.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "instseg/error.h"

namespace instseg {
namespace {

using nlohmann::json;

const json& require(const json& object, const char* key, const std::string& source) {
  auto it = object.find(key);
  if (it == object.end()) {
    throw Error(source + ": instseg metadata has no \"" + key + "\" field");
  }
  return *it;
}

std::array<float, 3> three_floats(const json& value, const char* key, const std::string& source) {
  if (!value.is_array() || value.size() != 3) {
    throw Error(source + ": instseg metadata field \"" + key + "\" must hold 3 numbers");
  }
  return {value[0].get<float>(), value[1].get<float>(), value[2].get<float>()};
}

ModelMetadata from_json(const json& doc, const std::string& source) {
  if (!doc.is_object()) {
    throw Error(source + ": instseg metadata is not a JSON object");
  }
  ModelMetadata meta;
  meta.format_version = doc.value("format_version", 0);
  if (meta.format_version > kMetadataFormatVersion) {
    throw Error(source + " was written by a newer instseg-deploy (metadata format " +
                std::to_string(meta.format_version) + "); upgrade this runtime to read it");
  }
  for (const auto& name : doc.value("class_names", json::array())) {
    meta.class_names.push_back(name.get<std::string>());
  }

  const json& pre = require(doc, "preprocess", source);
  PreprocessParams& p = meta.preprocess;
  p.input_format = require(pre, "input_format", source).get<std::string>();
  if (p.input_format != "BGR" && p.input_format != "RGB") {
    throw Error(source + ": unsupported input_format \"" + p.input_format + "\" (expected BGR or RGB)");
  }
  p.min_size = require(pre, "min_size", source).get<int>();
  p.max_size = require(pre, "max_size", source).get<int>();
  p.pixel_mean = three_floats(require(pre, "pixel_mean", source), "pixel_mean", source);
  p.pixel_std = three_floats(require(pre, "pixel_std", source), "pixel_std", source);
  p.size_divisibility = require(pre, "size_divisibility", source).get<int>();
  if (p.min_size <= 0 || p.max_size <= 0) {
    throw Error(source + ": instseg metadata has non-positive min_size/max_size");
  }

  const json post = doc.value("postprocess", json::object());
  meta.score_thresh = post.value("score_thresh", 0.05f);
  meta.mask_threshold = post.value("mask_threshold", 0.5f);
  meta.masks = post.value("masks", std::string("raw"));

  const json batch = doc.value("batch", json("dynamic"));
  if (batch.is_number_integer()) meta.fixed_batch = batch.get<int>();
  const json size = doc.value("size", json("dynamic"));
  if (size.is_array() && size.size() == 2) {
    meta.fixed_height = size[0].get<int>();
    meta.fixed_width = size[1].get<int>();
  }
  meta.roi_align = doc.value("roi_align", std::string("onnx"));
  meta.precision = doc.value("precision", std::string("fp32"));
  for (const auto& name : doc.value("inputs", json::array())) meta.inputs.push_back(name.get<std::string>());
  for (const auto& name : doc.value("outputs", json::array())) meta.outputs.push_back(name.get<std::string>());
  return meta;
}

json parse_json(const std::string& text, const std::string& what) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    throw Error(what + " is not valid JSON");
  }
  return doc;
}

}  // namespace

ModelMetadata parse_metadata(const std::string& json_text, const std::string& source) {
  try {
    return from_json(parse_json(json_text, source + ": instseg metadata"), source);
  } catch (const json::exception& e) {  // a field of the wrong type
    throw Error(source + ": malformed instseg metadata (" + e.what() + ")");
  }
}

EngineSidecar read_engine_sidecar(const std::string& engine_path) {
  constexpr int kSidecarFormatVersion = 1;
  const std::string path = engine_path + ".json";
  std::ifstream in(path);
  if (!in) {
    throw Error(path + " is missing next to " + engine_path +
                ": TensorRT engines need the sidecar written by "
                "`instseg export --to trt` (rebuild the engine with it)");
  }
  std::stringstream text;
  text << in.rdbuf();
  try {
    const json doc = parse_json(text.str(), path);
    if (!doc.is_object() || !doc.contains("metadata") || !doc.contains("tensorrt_version")) {
      throw Error(path + " is not an instseg engine sidecar; rebuild the engine with `instseg export --to trt`");
    }
    if (doc.value("format_version", 0) > kSidecarFormatVersion) {
      throw Error(path + " was written by a newer instseg-deploy (sidecar format " +
                  std::to_string(doc.value("format_version", 0)) + "); upgrade this runtime to read it");
    }
    EngineSidecar sidecar;
    sidecar.metadata = from_json(doc["metadata"], path);
    sidecar.tensorrt_version = doc["tensorrt_version"].get<std::string>();
    const json device = doc.value("device", json::object());
    sidecar.device_name = device.value("name", std::string());
    sidecar.compute_capability = device.value("compute_capability", std::string());
    const json plugin = doc.value("plugin_library", json::object());
    sidecar.plugin_required = plugin.value("required", false);
    if (plugin.contains("path") && plugin["path"].is_string()) sidecar.plugin_path = plugin["path"].get<std::string>();
    if (doc.contains("engine_sha256") && doc["engine_sha256"].is_string()) sidecar.engine_sha256 = doc["engine_sha256"];
    return sidecar;
  } catch (const json::exception& e) {
    throw Error(path + ": malformed engine sidecar (" + e.what() + ")");
  }
}

std::string class_name(const ModelMetadata& meta, int64_t index) {
  if (index >= 0 && index < static_cast<int64_t>(meta.class_names.size())) {
    return meta.class_names[static_cast<size_t>(index)];
  }
  return "class " + std::to_string(index);
}

}  // namespace instseg
