// instseg_predict: run an exported model on images; write <out>/results.json (COCO results with
// RLE masks, or none) and one overlay PNG per image, as `instseg predict` does.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "instseg/backend.h"
#include "instseg/coco_json.h"
#include "instseg/error.h"
#include "instseg/image_io.h"
#include "instseg/ort_session.h"
#include "instseg/overlay.h"
#include "instseg/predictor.h"

namespace {

constexpr int kUserError = 2;  // as the Python CLI

const char* kUsage = R"(usage: instseg_predict --model MODEL --image IMAGE [--image IMAGE ...] --out DIR [options]

Runs an exported instseg model (.onnx with ONNX Runtime; .engine with TensorRT when built with it)
on JPEG/PNG images and writes DIR/results.json (COCO results with RLE masks) and DIR/<image stem>.png
overlays. Preprocessing and class names come from the model's own metadata.

options:
  --model PATH         model exported by `instseg export` (.onnx, or a TensorRT .engine)
  --image PATH         an image to run on; repeat for more
  --out DIR            output folder (created if missing)
  --score-thresh T     keep detections scoring at least T, in [0, 1] (default 0.5)
  --mask-format F      how the masks are held while predicting (default rle):
                         rle      pycocotools' compressed RLE, computed from each box's region
                                  without a full-image mask (what results.json stores anyway)
                         dense    a full-resolution mask per instance (height x width bytes each)
                         cropped  a 0/1 array over each box's region; results.json also gets
                                  "mask_offset" [top, left] and "mask_size" [height, width]
                         none     no masks: results.json has no "segmentation", overlays no masks
                       rle, dense and cropped write the same segmentation strings
  --threads N          ONNX Runtime intra-op threads, 0 = its default (default 0)
  --plugin-lib PATH    TensorRT: libinstseg_plugins.so (default: $INSTSEG_PLUGIN_LIB, a verified copy
                       next to the engine, plugins/build/; see plugins/README.md)
  --no-overlay         skip the overlay PNGs
  --repeat N           time N predictions per image (after one warm-up) and print a JSON line of
                       stage times per image on stdout (median and every sample, ms)
  --version            the backends this build has
  -h, --help           this text

examples:
  instseg_predict --model model.onnx --image photo.jpg --out pred/
  instseg_predict --model model.onnx --image a.jpg --image b.png --out pred/ --score-thresh 0.3
  instseg_predict --model model.onnx --image photo.jpg --out pred/ --mask-format none --no-overlay
)";

struct Args {
  std::string model;
  std::vector<std::string> images;
  std::string out;
  float score_thresh = 0.5f;
  instseg::MaskFormat mask_format = instseg::MaskFormat::rle;  // what results.json stores
  int threads = 0;
  std::string plugin_lib;
  bool overlay = true;
  int repeat = 0;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "error: %s\n(run instseg_predict --help for usage)\n", message.c_str());
  std::exit(kUserError);
}

double parse_number(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0') usage_error(flag + " needs a number, got '" + text + "'");
  return value;
}

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (flag == "--version") {
      std::printf("instseg_predict: onnxruntime %s%s\n", instseg::onnxruntime_version().c_str(),
                  instseg::tensorrt_available() ? ", tensorrt" : " (no TensorRT backend in this build)");
      std::exit(0);
    } else if (flag == "--model") {
      args.model = value();
    } else if (flag == "--image") {
      args.images.push_back(value());
    } else if (flag == "--out") {
      args.out = value();
    } else if (flag == "--score-thresh") {
      args.score_thresh = static_cast<float>(parse_number(flag, value()));
    } else if (flag == "--mask-format") {
      try {
        args.mask_format = instseg::parse_mask_format(value());
      } catch (const instseg::Error& e) {
        usage_error(std::string("--mask-format: ") + e.what());
      }
    } else if (flag == "--threads") {
      args.threads = static_cast<int>(parse_number(flag, value()));
    } else if (flag == "--plugin-lib") {
      args.plugin_lib = value();
    } else if (flag == "--no-overlay") {
      args.overlay = false;
    } else if (flag == "--repeat") {
      args.repeat = static_cast<int>(parse_number(flag, value()));
    } else {
      usage_error("unknown option " + flag);
    }
  }
  if (args.model.empty()) usage_error("--model is required");
  if (args.images.empty()) usage_error("at least one --image is required");
  if (args.out.empty()) usage_error("--out is required");
  if (!(args.score_thresh >= 0.0f && args.score_thresh <= 1.0f)) usage_error("--score-thresh must be in [0, 1]");
  if (args.threads < 0 || args.repeat < 0) usage_error("--threads and --repeat must be >= 0");
  return args;
}

// Output names per input; inputs with the same stem from different folders get a suffix.
std::vector<std::string> unique_stems(const std::vector<std::string>& paths) {
  std::map<std::string, int> seen;
  std::vector<std::string> stems;
  for (const std::string& path : paths) {
    const std::string stem = std::filesystem::path(path).stem().string();
    const int n = seen[stem]++;
    stems.push_back(n == 0 ? stem : stem + "_" + std::to_string(n));
  }
  return stems;
}

void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) throw instseg::Error("cannot write " + path);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw instseg::Error("cannot write " + path + ": " + ec.message());
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out;
}

std::string json_list(const std::vector<double>& values) {
  std::string text = "[";
  char number[32];
  for (size_t i = 0; i < values.size(); ++i) {
    std::snprintf(number, sizeof(number), i ? ", %.3f" : "%.3f", values[i]);
    text += number;
  }
  return text + "]";
}

// Times `repeat` predictions of one image; prints one JSON line with the median and every sample
// (milliseconds) of each stage: {"image", "runs", "median_ms": {...}, "samples_ms": {...}}.
void print_timing(instseg::Predictor& predictor, const instseg::Image& image, const std::string& path, int repeat,
                  instseg::MaskFormat masks) {
  const char* names[4] = {"preprocess", "inference", "postprocess", "total"};
  std::vector<double> samples[4];
  for (int r = 0; r < repeat; ++r) {
    predictor.predict(image, masks);
    const instseg::StageTimes& t = predictor.last_times();
    const double values[4] = {t.preprocess, t.inference, t.postprocess, t.preprocess + t.inference + t.postprocess};
    for (int k = 0; k < 4; ++k) samples[k].push_back(values[k]);
  }
  std::string medians, lists;
  for (int k = 0; k < 4; ++k) {
    char number[64];
    std::snprintf(number, sizeof(number), "%s\"%s\": %.3f", k ? ", " : "", names[k], median(samples[k]));
    medians += number;
    lists += std::string(k ? ", " : "") + "\"" + names[k] + "\": " + json_list(samples[k]);
  }
  std::printf("{\"image\": \"%s\", \"runs\": %d, \"median_ms\": {%s}, \"samples_ms\": {%s}}\n",
              json_escape(path).c_str(), repeat, medians.c_str(), lists.c_str());
  std::fflush(stdout);
}

int run(const Args& args) {
  instseg::BackendOptions options;
  options.threads = args.threads;
  options.plugin_library = args.plugin_lib;
  instseg::Predictor predictor(instseg::open_backend(args.model, options), args.score_thresh);
  std::filesystem::create_directories(args.out);

  std::vector<instseg::ImageResult> results;
  std::vector<std::string> failures;
  const std::vector<std::string> stems = unique_stems(args.images);
  size_t instances = 0;
  for (size_t i = 0; i < args.images.size(); ++i) {
    const std::string& path = args.images[i];
    instseg::Image image;
    try {
      image = instseg::read_image(path);
    } catch (const instseg::Error& e) {
      std::fprintf(stderr, "skipped: %s\n", e.what());
      failures.push_back(e.what());
      continue;
    }
    instseg::ImageResult result;
    result.image_id = static_cast<int>(i) + 1;
    result.file_name = std::filesystem::path(path).filename().string();
    result.instances = predictor.predict(image, args.mask_format);
    if (args.repeat > 0) print_timing(predictor, image, path, args.repeat, args.mask_format);
    if (args.overlay) {
      const std::string png = (std::filesystem::path(args.out) / (stems[i] + ".png")).string();
      instseg::write_png(png, instseg::draw_instances(image, result.instances, predictor.metadata().class_names));
    }
    instances += result.instances.items.size();
    results.push_back(std::move(result));
  }
  write_text_atomically((std::filesystem::path(args.out) / "results.json").string(),
                        instseg::coco_results_json(results));
  std::fprintf(stderr, "%zu image(s), %zu instance(s) -> %s (%s)\n", results.size(), instances, args.out.c_str(),
               predictor.backend().name().c_str());
  if (!failures.empty()) {
    std::fprintf(stderr, "error: %zu of %zu image(s) could not be read; first: %s\n", failures.size(),
                 args.images.size(), failures.front().c_str());
    return kUserError;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  try {
    return run(args);
  } catch (const instseg::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kUserError;
  } catch (const std::filesystem::filesystem_error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kUserError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\n", e.what());
    return 1;
  }
}
