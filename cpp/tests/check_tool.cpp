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
//   instseg_check rle-region H W TOP LEFT RH RW CROP.raw
//                                                  -> the RLE string of the (H, W) mask that is CROP ((RH, RW)
//                                                     bytes) at (TOP, LEFT) and 0 elsewhere, from the region alone
//   instseg_check rle-selftest SEED CASES          -> "ok CASES" when, on CASES random masks and regions, the
//                                                     region RLE equals the full-image RLE, the string decodes
//                                                     back, the region decodes back, and bad input is refused
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "instseg/error.h"
#include "instseg/image_io.h"
#include "instseg/metadata.h"
#include "instseg/preprocess.h"
#include "instseg/resize.h"
#include "instseg/rle.h"
#include "instseg/sidecar_check.h"

namespace {

void write_raw(const std::string& path, const instseg::Image& image) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(image.pixels.data()), static_cast<std::streamsize>(image.pixels.size()));
  std::printf("%d %d\n", image.height, image.width);
}

// A random (region.height, region.width) crop: all off, all on, sparse noise, or blobs of runs.
std::vector<uint8_t> random_crop(std::mt19937& rng, const instseg::Region& region) {
  std::vector<uint8_t> crop(static_cast<size_t>(region.height) * region.width);
  const int kind = std::uniform_int_distribution<int>(0, 3)(rng);
  std::bernoulli_distribution noise(0.2), flip(0.05);
  uint8_t value = 0;
  for (uint8_t& pixel : crop) {
    if (kind == 1) pixel = 1;
    if (kind == 2) pixel = noise(rng) ? 1 : 0;
    if (kind == 3) {
      if (flip(rng)) value ^= 1;
      pixel = value ? 255 : 0;  // any non-zero value is "on"
    }
  }
  return crop;
}

bool throws(void (*action)()) {
  try {
    action();
  } catch (const instseg::Error&) {
    return true;
  }
  return false;
}

// Region RLE against the full-image RLE on random masks (regions anywhere, touching the edges,
// one pixel, the whole image), and the string and region decoders against what was encoded.
int rle_selftest(unsigned seed, int cases) {
  std::mt19937 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int c = 0; c < cases; ++c) {
    const int height = uniform(1, 40), width = uniform(1, 40);
    instseg::Region region;
    switch (c % 4) {
      case 0: region = {0, 0, height, width}; break;                                               // the whole image
      case 1: region = {uniform(0, height - 1), uniform(0, width - 1), 1, 1}; break;               // one pixel
      case 2: region = {height - uniform(1, height), 0, 0, width - uniform(0, width - 1)}; break;  // at edges
      default: region = {uniform(0, height - 1), uniform(0, width - 1), 0, 0};
    }
    if (region.height == 0) region.height = uniform(1, height - region.top);
    if (region.width == 0) region.width = uniform(1, width - region.left);
    const std::vector<uint8_t> crop = random_crop(rng, region);
    std::vector<uint8_t> full(static_cast<size_t>(height) * width, 0);
    for (int y = 0; y < region.height; ++y) {
      for (int x = 0; x < region.width; ++x) {
        full[static_cast<size_t>(region.top + y) * width + region.left + x] =
            crop[static_cast<size_t>(y) * region.width + x];
      }
    }
    const std::vector<uint32_t> expected = instseg::rle_counts(full.data(), height, width);
    const std::vector<uint32_t> counts = instseg::rle_counts_region(crop.data(), region, height, width);
    const std::string text = instseg::rle_counts_string(counts);
    std::vector<uint8_t> decoded(crop.size());
    instseg::rle_decode_region(instseg::rle_counts_from_string(text), height, width, region, decoded.data());
    bool same_crop = true;
    for (size_t i = 0; i < crop.size(); ++i) same_crop &= decoded[i] == (crop[i] ? 1 : 0);
    if (counts != expected || instseg::rle_counts_from_string(text) != counts || !same_crop) {
      std::fprintf(stderr, "case %d: mask %dx%d, region top %d left %d %dx%d: %s\n", c, height, width, region.top,
                   region.left, region.height, region.width,
                   counts != expected ? "region RLE != full RLE" : "decoding does not give the mask back");
      return 1;
    }
  }
  // Decoding refuses what the encoder never writes.
  const bool refused = throws([] { instseg::rle_counts_from_string("0\x7f"); }) &&
                       throws([] { instseg::rle_counts_from_string("0Q"); }) &&
                       throws([] {  // 2x2 mask, only its top-left pixel in the region, the bottom-right pixel on
                         uint8_t crop = 0;
                         instseg::rle_decode_region({3, 1}, 2, 2, {0, 0, 1, 1}, &crop);
                       }) &&
                       throws([] {  // counts covering 3 of 4 pixels
                         uint8_t crop[4];
                         instseg::rle_decode_region({1, 2}, 2, 2, {0, 0, 2, 2}, crop);
                       });
  if (!refused) {
    std::fprintf(stderr, "a malformed RLE string or counts were accepted\n");
    return 1;
  }
  std::printf("ok %d\n", cases);
  return 0;
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
    } else if (command == "rle-region" && argc == 9) {
      const instseg::Region region{std::atoi(argv[4]), std::atoi(argv[5]), std::atoi(argv[6]), std::atoi(argv[7])};
      std::ifstream in(argv[8], std::ios::binary);
      const std::vector<uint8_t> crop{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
      if (crop.size() != static_cast<size_t>(region.height) * region.width)
        throw instseg::Error("CROP has the wrong size");
      std::printf("%s\n", instseg::rle_counts_string(
                              instseg::rle_counts_region(crop.data(), region, std::atoi(argv[2]), std::atoi(argv[3])))
                              .c_str());
    } else if (command == "rle-selftest" && argc == 4) {
      return rle_selftest(static_cast<unsigned>(std::strtoul(argv[2], nullptr, 10)), std::atoi(argv[3]));
    } else {
      std::fprintf(stderr,
                   "usage: instseg_check decode IMAGE OUT | resize IMAGE H W OUT | prepare IMAGE JSON OUT | "
                   "sidecar ENGINE | sha256 FILE | check-sidecar ENGINE TRT_VERSION COMPUTE_CAPABILITY DEVICE_NAME | "
                   "rle-region H W TOP LEFT RH RW CROP | rle-selftest SEED CASES\n");
      return 2;
    }
  } catch (const instseg::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
