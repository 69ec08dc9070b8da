// Engine sidecar checks and the plugin library rule (see instseg/sidecar_check.h); SHA-256
// through OpenSSL's EVP interface.
#include "instseg/sidecar_check.h"

#include <openssl/evp.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>

#include <nlohmann/json.hpp>

#include "instseg/error.h"

namespace instseg {
namespace {

using DigestContext = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

DigestContext start_sha256() {
  DigestContext context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (context == nullptr || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    throw Error("OpenSSL could not start a SHA-256 digest");
  }
  return context;
}

void update(EVP_MD_CTX* context, const void* data, size_t size) {
  if (size > 0 && EVP_DigestUpdate(context, data, size) != 1) throw Error("OpenSSL SHA-256 update failed");
}

std::string finish_hex(EVP_MD_CTX* context) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(context, digest, &length) != 1) throw Error("OpenSSL SHA-256 digest failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

namespace fs = std::filesystem;

bool is_file(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return is_file(a) && is_file(b) && fs::equivalent(a, b, ec);
}

PluginLibraryChoice chosen(const fs::path& path, const char* source) {
  std::error_code ec;
  const fs::path canonical = fs::canonical(path, ec);
  return {ec ? fs::absolute(path).string() : canonical.string(), source};
}

Error refuse(const std::string& engine, const std::string& path, const std::string& reason,
             const std::string& default_library) {
  return Error("refusing to load " + path + ", the plugin library " + fs::path(engine).filename().string() +
               ".json names: " + reason + " (an engine's sidecar may only point at " + default_library +
               " under the working directory, or at a copy next to the engine whose SHA-256 it records); pass "
               "--plugin-lib PATH or set INSTSEG_PLUGIN_LIB to the library to load");
}

}  // namespace

long tensorrt_version_number(const std::string& version) {
  long parts[3] = {0, 0, 0};
  size_t k = 0;
  for (size_t i = 0; i < version.size() && k < 3;) {
    if (std::isdigit(static_cast<unsigned char>(version[i]))) {
      size_t end = i;
      while (end < version.size() && std::isdigit(static_cast<unsigned char>(version[end]))) ++end;
      parts[k++] = std::stol(version.substr(i, end - i));
      i = end;
    } else {
      ++i;
    }
  }
  return parts[0] * 10000L + parts[1] * 100L + parts[2];
}

std::string file_sha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  DigestContext context = start_sha256();
  std::vector<char> block(1 << 20);  // engines are hundreds of MiB: hash them in blocks
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    update(context.get(), block.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw Error("cannot read " + path);
  return finish_hex(context.get());
}

std::vector<std::string> check_sidecar(const EngineSidecar& sidecar, const std::string& engine,
                                       const RunningPlatform& running) {
  const std::string rebuild =
      "rebuild it on this machine: instseg export --to trt --model <model.onnx> --out " + engine;
  if (tensorrt_version_number(sidecar.tensorrt_version) != tensorrt_version_number(running.tensorrt_version)) {
    throw Error(engine + " was built with TensorRT " + sidecar.tensorrt_version + " but this is TensorRT " +
                running.tensorrt_version + " (engines only run on the version that built them); " + rebuild);
  }
  if (!sidecar.compute_capability.empty() && sidecar.compute_capability != running.compute_capability) {
    throw Error(engine + " was built for compute capability " + sidecar.compute_capability + " (" +
                sidecar.device_name + ") but this GPU is " + running.compute_capability + " (" + running.device_name +
                "); " + rebuild);
  }
  if (!sidecar.engine_sha256.empty() && file_sha256(engine) != sidecar.engine_sha256) {
    const std::string name = engine.substr(engine.find_last_of('/') + 1) + ".json";
    throw Error(engine + " is not the engine its sidecar " + name +
                " describes (replaced or copied without it?); "
                "rebuild both with `instseg export --to trt`");
  }
  std::vector<std::string> warnings;
  if (sidecar.device_name != running.device_name) {
    warnings.push_back(engine + " was built on " + sidecar.device_name + " and runs on " + running.device_name +
                       " (same compute capability, so TensorRT accepts it; rebuild here for the best kernels)");
  }
  return warnings;
}

std::string recorded_plugin_sha256(const std::string& engine) {
  std::ifstream in(engine + ".json");
  const nlohmann::json doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("plugin_library") || !doc["plugin_library"].is_object()) return "";
  const nlohmann::json& plugin = doc["plugin_library"];
  // Anything but a string counts as not recorded, so a copy next to the engine is refused.
  return plugin.contains("sha256") && plugin["sha256"].is_string() ? plugin["sha256"].get<std::string>() : "";
}

PluginLibraryChoice choose_plugin_library(const std::string& requested, const std::string& env_value,
                                          const std::string& engine, const std::string& recorded_path,
                                          const std::string& recorded_sha256, const std::string& default_library) {
  if (!requested.empty()) {
    if (!is_file(requested)) throw Error("--plugin-lib " + requested + " does not exist");
    return chosen(requested, "--plugin-lib");
  }
  if (!env_value.empty()) {
    if (!is_file(env_value)) throw Error("INSTSEG_PLUGIN_LIB=" + env_value + " does not exist");
    return chosen(env_value, "INSTSEG_PLUGIN_LIB");
  }
  const std::string name = recorded_path.empty() ? "" : fs::path(recorded_path).filename().string();
  const std::string beside = (fs::path(engine).parent_path() / name).string();
  if (!recorded_path.empty()) {
    if (same_file(recorded_path, default_library)) return chosen(default_library, "plugins/build");
    if (!name.empty() && is_file(beside)) {
      if (recorded_sha256.empty())
        throw refuse(engine, beside, "the sidecar records no SHA-256 for it", default_library);
      const std::string actual = file_sha256(beside);
      if (actual != recorded_sha256) {
        throw refuse(engine, beside,
                     "its SHA-256 is " + actual + ", not the " + recorded_sha256 + " the sidecar records",
                     default_library);
      }
      return chosen(beside, "next to the engine");
    }
    if (is_file(recorded_path)) {
      throw refuse(engine, recorded_path, "it is neither our own build nor next to the engine", default_library);
    }
  }
  if (is_file(default_library)) return chosen(default_library, "plugins/build");
  const std::string tried = name.empty() ? "" : beside + ", ";
  throw Error(
      "the TensorRT plugin library libinstseg_plugins.so was not found (tried --plugin-lib, "
      "$INSTSEG_PLUGIN_LIB, " +
      tried + default_library +
      "); build it with: cmake -S plugins -B plugins/build -DTENSORRT_ROOT=/path/to/TensorRT-10 "
      "-DCMAKE_CUDA_ARCHITECTURES=\"80;86;89;90\" && cmake --build plugins/build -j (or export with "
      "--roi-align onnx, which needs no plugin)");
}

}  // namespace instseg
