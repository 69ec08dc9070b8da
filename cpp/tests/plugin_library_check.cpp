// plugin_library_check: the TensorRT backend's plugin library choice (choose_plugin_library with
// the engine sidecar's record and $INSTSEG_PLUGIN_LIB, as trt_engine.cpp calls it) as a command, so
// tests/test_plugin_library_policy.py can compare it with the Python loader without TensorRT.
//
//   plugin_library_check ENGINE REQUESTED DEFAULT  -> "PATH SOURCE", or "error: ..." and exit status 2
//                                                     (REQUESTED "" = no --plugin-lib)
#include <cstdio>
#include <cstdlib>
#include <string>

#include "instseg/error.h"
#include "instseg/metadata.h"
#include "instseg/sidecar_check.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: plugin_library_check ENGINE REQUESTED DEFAULT\n");
    return 2;
  }
  try {
    const std::string engine = argv[1];
    const instseg::EngineSidecar sidecar = instseg::read_engine_sidecar(engine);
    const char* env = std::getenv("INSTSEG_PLUGIN_LIB");
    const instseg::PluginLibraryChoice library =
        instseg::choose_plugin_library(argv[2], env == nullptr ? "" : env, engine, sidecar.plugin_path,
                                       instseg::recorded_plugin_sha256(engine), argv[3]);
    std::printf("%s %s\n", library.path.c_str(), library.source.c_str());
  } catch (const instseg::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
