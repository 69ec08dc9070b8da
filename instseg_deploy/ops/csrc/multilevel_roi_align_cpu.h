// C ABI of the CPU twin: the kernel's per-element math run in a plain host loop.
// Used by Python (ctypes) for testing and by the ONNX Runtime custom op.
#pragma once

#include <stdint.h>

#include "roi_align_status.h"

#if defined(_WIN32)
#define INSTSEG_EXPORT __declspec(dllexport)
#else
#define INSTSEG_EXPORT __attribute__((visibility("default")))
#endif

extern "C" {

// rois: (num_rois, 5) of dtype; features[l]: (batch, channels, heights[l], widths[l]) of dtype;
// output: (num_rois, channels, output_size, output_size) of dtype. All contiguous.
// Returns 0 on success, else a status code (see instseg_roi_align_status_message).
INSTSEG_EXPORT int instseg_multilevel_roi_align_cpu(int dtype, void const* rois, int64_t num_rois,
    void const* const* features, int num_levels, int batch, int channels, int const* heights, int const* widths,
    int const* featmap_strides, int output_size, int sampling_ratio, int aligned, int canonical_box_size,
    int canonical_level, void* output);

INSTSEG_EXPORT char const* instseg_roi_align_status_message(int status);

} // extern "C"
