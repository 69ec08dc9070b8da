// Builds and validates a PoolerConfig from the op's attributes (host side).
// Shared by the CPU twin, the CUDA launcher and the TensorRT plugin so they reject the same inputs.
#pragma once

#include "roi_align_math.h"

namespace instseg {

enum class ConfigStatus : int {
    kOk = 0,
    kBadOutputSize = 1,
    kBadSamplingRatio = 2,
    kBadLevelCount = 3,
    kBadStride = 4, // not a positive power of two, or levels not consecutive (stride x2 each)
    kBadCanonicalBoxSize = 5,
};

inline char const* describe(ConfigStatus status)
{
    switch (status) {
    case ConfigStatus::kOk: return "ok";
    case ConfigStatus::kBadOutputSize: return "output_size must be positive";
    case ConfigStatus::kBadSamplingRatio: return "sampling_ratio must be >= 0";
    case ConfigStatus::kBadLevelCount: return "featmap_strides must have between 1 and 8 entries";
    case ConfigStatus::kBadStride: return "featmap_strides must be powers of two, each twice the previous";
    case ConfigStatus::kBadCanonicalBoxSize: return "canonical_box_size must be positive";
    }
    return "unknown error";
}

// log2 of a positive power of two, or -1.
inline int exact_log2(int value)
{
    if (value <= 0 || (value & (value - 1)) != 0) {
        return -1;
    }
    int log = 0;
    while ((1 << log) != value) {
        ++log;
    }
    return log;
}

inline ConfigStatus make_pooler_config(int output_size, int sampling_ratio, int aligned, int canonical_box_size,
    int canonical_level, int const* featmap_strides, int num_levels, PoolerConfig& cfg)
{
    if (output_size <= 0) {
        return ConfigStatus::kBadOutputSize;
    }
    if (sampling_ratio < 0) {
        return ConfigStatus::kBadSamplingRatio;
    }
    if (num_levels < 1 || num_levels > kMaxLevels) {
        return ConfigStatus::kBadLevelCount;
    }
    if (canonical_box_size <= 0) {
        return ConfigStatus::kBadCanonicalBoxSize;
    }
    int const min_level = exact_log2(featmap_strides[0]);
    if (min_level < 0) {
        return ConfigStatus::kBadStride;
    }
    // detectron2 requires the levels to be consecutive: level l has stride 2^(min_level + l).
    for (int l = 0; l < num_levels; ++l) {
        if (exact_log2(featmap_strides[l]) != min_level + l) {
            return ConfigStatus::kBadStride;
        }
    }
    cfg = PoolerConfig{};
    cfg.output_size = output_size;
    cfg.sampling_ratio = sampling_ratio;
    cfg.aligned = aligned != 0 ? 1 : 0;
    cfg.canonical_box_size = canonical_box_size;
    cfg.canonical_level = canonical_level;
    cfg.num_levels = num_levels;
    cfg.min_level = min_level;
    for (int l = 0; l < num_levels; ++l) {
        // Powers of two: 1 / stride is exact in float, as torchvision's (float) spatial_scale.
        cfg.spatial_scales[l] = 1.0f / static_cast<float>(featmap_strides[l]);
    }
    return ConfigStatus::kOk;
}

} // namespace instseg
