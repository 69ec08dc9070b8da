// Status codes and dtype tags shared by the C entry points of the CPU twin and the CUDA launcher.
#pragma once

#include "pooler_config.h"

// Element type tags used across the C ABI (the Python wrapper mirrors them).
#define INSTSEG_DTYPE_FLOAT32 0
#define INSTSEG_DTYPE_FLOAT16 1

namespace instseg {

// ConfigStatus values (1..99) pass through unchanged; these extend them.
enum class CallStatus : int {
    kBadDtype = 100,
    kBadShape = 101, // non-positive batch/channels/height/width, or a null pointer
    kCudaError = 102,
};

inline char const* describe_status(int status)
{
    switch (status) {
    case static_cast<int>(CallStatus::kBadDtype): return "dtype must be 0 (float32) or 1 (float16)";
    case static_cast<int>(CallStatus::kBadShape): return "feature maps need positive N, C, H, W and non-null data";
    case static_cast<int>(CallStatus::kCudaError): return "CUDA kernel launch failed";
    default: return describe(static_cast<ConfigStatus>(status));
    }
}

} // namespace instseg
