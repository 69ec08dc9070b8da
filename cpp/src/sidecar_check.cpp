// Engine sidecar checks (see instseg/sidecar_check.h); SHA-256 through OpenSSL's EVP interface.
#include "instseg/sidecar_check.h"

#include <openssl/evp.h>

#include <cctype>
#include <fstream>
#include <memory>

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

}  // namespace instseg
