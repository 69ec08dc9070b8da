// CUDA launcher of the multi-level RoIAlign kernel (one thread per output element).
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "roi_align_math.h"
#include "roi_align_status.h"

#if defined(_WIN32)
#define INSTSEG_CUDA_EXPORT __declspec(dllexport)
#else
#define INSTSEG_CUDA_EXPORT __attribute__((visibility("default")))
#endif

namespace instseg {

// Shapes shared by all calls of one configuration: N, C and each level's H, W.
struct PyramidShape {
    int batch;
    int channels;
    int heights[kMaxLevels];
    int widths[kMaxLevels];
};

// dtype: INSTSEG_DTYPE_FLOAT32 or INSTSEG_DTYPE_FLOAT16; every pointer is device memory and
// `features` is a host array of cfg.num_levels device pointers. Asynchronous on `stream`.
cudaError_t launch_multilevel_roi_align(int dtype, void const* rois, int64_t num_rois, void const* const* features,
    PyramidShape const& shape, PoolerConfig const& cfg, void* output, cudaStream_t stream);

} // namespace instseg

extern "C" {

// Same arguments as instseg_multilevel_roi_align_cpu, with device pointers and a cudaStream_t
// (as void*) last; for benchmarks and tests that drive the kernel without TensorRT.
INSTSEG_CUDA_EXPORT int instseg_multilevel_roi_align_cuda(int dtype, void const* rois, int64_t num_rois,
    void const* const* features, int num_levels, int batch, int channels, int const* heights, int const* widths,
    int const* featmap_strides, int output_size, int sampling_ratio, int aligned, int canonical_box_size,
    int canonical_level, void* output, void* stream);

} // extern "C"
