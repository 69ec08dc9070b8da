// instseg_check: pieces of the library as commands, so tests can compare them with the Python side
// (decoding with cv2.imdecode, resizing with Pillow byte for byte; the engine sidecar reader with
// the sidecars instseg_deploy.model_file.sidecar writes, and the engine checks of runtime/trt/sidecar.py).
//
//   instseg_check decode IMAGE OUT.raw             -> prints "H W"; OUT.raw = (H, W, 3) BGR bytes
//   instseg_check resize IMAGE H W OUT.raw         -> decoded, then Pillow-bilinear resized
//   instseg_check prepare IMAGE META_JSON OUT.raw  -> prepare_image with the metadata's parameters
//   instseg_check sidecar ENGINE                   -> the fields read from ENGINE.json, one per line
//   instseg_check sha256 FILE                      -> the file's SHA-256, lowercase hex
//   instseg_check check-sidecar ENGINE TRT_VERSION COMPUTE_CAPABILITY DEVICE_NAME
//                                                  -> "ok" and one "warning: ..." line per warning, or the error
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "instseg/error.h"
#include "instseg/image_io.h"
#include "instseg/metadata.h"
#include "instseg/preprocess.h"
#include "instseg/resize.h"
#include "instseg/sidecar_check.h"

namespace {

void write_raw(const std::string& path, const instseg::Image& image) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(image.pixels.data()), static_cast<std::streamsize>(image.pixels.size()));
  std::printf("%d %d\n", image.height, image.width);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  try {
    if (command == "decode" && argc == 4) {
      write_raw(argv[3], instseg::read_image(argv[2]));
    } else if (command == "resize" && argc == 6) {
      write_raw(argv[5],
                instseg::resize_bilinear(instseg::read_image(argv[2]), std::atoi(argv[3]), std::atoi(argv[4])));
    } else if (command == "prepare" && argc == 5) {
      std::ifstream in(argv[3]);
      std::stringstream text;
      text << in.rdbuf();
      const instseg::ModelMetadata meta = instseg::parse_metadata(text.str(), argv[3]);
      write_raw(argv[4], instseg::prepare_image(instseg::read_image(argv[2]), meta.preprocess));
    } else if (command == "sidecar" && argc == 3) {
      const instseg::EngineSidecar sidecar = instseg::read_engine_sidecar(argv[2]);
      const instseg::ModelMetadata& meta = sidecar.metadata;
      std::printf("tensorrt_version %s\ncompute_capability %s\ndevice_name %s\nplugin_required %d\nplugin_path %s\n",
                  sidecar.tensorrt_version.c_str(), sidecar.compute_capability.c_str(), sidecar.device_name.c_str(),
                  sidecar.plugin_required ? 1 : 0, sidecar.plugin_path.c_str());
      std::printf("engine_sha256 %s\n", sidecar.engine_sha256.c_str());
      std::printf("classes %zu\ninput_format %s\nmin_size %d\nmax_size %d\nprecision %s\nroi_align %s\nmasks %s\n",
                  meta.class_names.size(), meta.preprocess.input_format.c_str(), meta.preprocess.min_size,
                  meta.preprocess.max_size, meta.precision.c_str(), meta.roi_align.c_str(), meta.masks.c_str());
    } else if (command == "sha256" && argc == 3) {
      std::printf("%s\n", instseg::file_sha256(argv[2]).c_str());
    } else if (command == "check-sidecar" && argc == 6) {
      const instseg::EngineSidecar sidecar = instseg::read_engine_sidecar(argv[2]);
      const auto warnings = instseg::check_sidecar(sidecar, argv[2], {argv[3], argv[5], argv[4]});
      std::printf("ok\n");
      for (const std::string& warning : warnings) std::printf("warning: %s\n", warning.c_str());
    } else {
      std::fprintf(stderr,
                   "usage: instseg_check decode IMAGE OUT | resize IMAGE H W OUT | prepare IMAGE JSON OUT | "
                   "sidecar ENGINE | sha256 FILE | check-sidecar ENGINE TRT_VERSION COMPUTE_CAPABILITY DEVICE_NAME\n");
      return 2;
    }
  } catch (const instseg::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
