// Per-output-element math of the multi-level RoIAlign (detectron2's ROIPooler):
// FPN level assignment, then torchvision-style RoIAlign on the chosen level.
//
// Everything here is header-only and marked __host__ __device__ under nvcc, so the CUDA kernel
// and the g++-built CPU twin run the very same arithmetic. All accumulation is in float; the
// element type T only matters when values are loaded (ElementIO<T>::load).
//
// The formulas and the order of floating-point operations follow torchvision's CPU roi_align
// (the reference the tests compare against) so that FP32 results agree to ~1e-7.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define INSTSEG_HD __host__ __device__ __forceinline__
#else
#define INSTSEG_HD inline
#endif

namespace instseg {

// detectron2 uses 4 levels (P2..P5); a few more leave room without dynamic allocation.
constexpr int kMaxLevels = 8;

// Loads an element as float and stores a float as element. Specialised for float here; the
// CPU twin adds its host half type and the CUDA kernel adds __half.
template <typename T>
struct ElementIO;

template <>
struct ElementIO<float> {
    static INSTSEG_HD float load(float v) { return v; }
    static INSTSEG_HD float store(float v) { return v; }
};

// Attributes of the op after validation (see pooler_config.h).
struct PoolerConfig {
    int output_size;                  // pooled height == pooled width
    int sampling_ratio;               // > 0: fixed samples per bin side; 0: adaptive ceil(roi_size / output_size)
    int aligned;                      // 1: ROIAlignV2 half-pixel offset; 0: legacy ROIAlign (min RoI size 1)
    int canonical_box_size;           // 224 in detectron2
    int canonical_level;              // 4 in detectron2
    int num_levels;                   // number of feature maps (P2..P5 -> 4)
    int min_level;                    // log2 of the first stride
    float spatial_scales[kMaxLevels]; // 1 / stride of each level
};

// One feature map (N, C, H, W), contiguous.
template <typename T>
struct FeatureLevel {
    T const* data;
    int height;
    int width;
};

// All feature maps of one call plus the shapes they share.
template <typename T>
struct FeaturePyramid {
    FeatureLevel<T> levels[kMaxLevels];
    int batch;    // N
    int channels; // C
};

// FPN level (0-based from min_level) of a box, as detectron2's assign_boxes_to_levels computes it
// in float32: floor(canonical_level + log2(sqrt(area) / canonical_box_size + 1e-8)), clamped.
// Returns -1 where the level is NaN (negative area or NaN coordinates): the reference pooler
// then matches no level and leaves the output at zero.
INSTSEG_HD int assign_fpn_level(float x1, float y1, float x2, float y2, PoolerConfig const& cfg)
{
    float const area = (x2 - x1) * (y2 - y1);
    float const scale = sqrtf(area) / static_cast<float>(cfg.canonical_box_size) + 1e-8f;
    float const level = floorf(static_cast<float>(cfg.canonical_level) + log2f(scale));
    if (!(level == level)) {
        return -1;
    }
    float const lo = static_cast<float>(cfg.min_level);
    float const hi = static_cast<float>(cfg.min_level + cfg.num_levels - 1);
    float const clamped = level < lo ? lo : (level > hi ? hi : level);
    return static_cast<int>(clamped) - cfg.min_level;
}

// Where one RoI's bins and sampling points lie on its level's feature map.
struct RoiWindow {
    float start_w;
    float start_h;
    float bin_w;
    float bin_h;
    int grid_w; // samples per bin along x (may be <= 0 for empty or inverted RoIs)
    int grid_h;
    float count; // divisor of the bin average, never below 1
};

INSTSEG_HD RoiWindow make_roi_window(
    float x1, float y1, float x2, float y2, float spatial_scale, PoolerConfig const& cfg)
{
    float const offset = cfg.aligned ? 0.5f : 0.0f;
    RoiWindow w;
    w.start_w = x1 * spatial_scale - offset;
    w.start_h = y1 * spatial_scale - offset;
    float const end_w = x2 * spatial_scale - offset;
    float const end_h = y2 * spatial_scale - offset;
    float roi_w = end_w - w.start_w;
    float roi_h = end_h - w.start_h;
    if (!cfg.aligned) {
        // Legacy ROIAlign forces malformed RoIs to be at least 1x1.
        roi_w = roi_w > 1.0f ? roi_w : 1.0f;
        roi_h = roi_h > 1.0f ? roi_h : 1.0f;
    }
    float const pooled = static_cast<float>(cfg.output_size);
    w.bin_h = roi_h / pooled;
    w.bin_w = roi_w / pooled;
    w.grid_h = cfg.sampling_ratio > 0 ? cfg.sampling_ratio : static_cast<int>(ceilf(roi_h / pooled));
    w.grid_w = cfg.sampling_ratio > 0 ? cfg.sampling_ratio : static_cast<int>(ceilf(roi_w / pooled));
    int const n = w.grid_h * w.grid_w;
    w.count = static_cast<float>(n > 1 ? n : 1);
    return w;
}

// Bilinear interpolation of one channel plane at (y, x) with torchvision's border rules:
// samples beyond one pixel outside the map contribute 0, samples in [-1, 0] clamp to the edge.
template <typename T>
INSTSEG_HD float bilinear_sample(T const* plane, int height, int width, float y, float x)
{
    // Written as !(in range) so NaN coordinates take the empty branch.
    if (!(y >= -1.0f && y <= static_cast<float>(height) && x >= -1.0f && x <= static_cast<float>(width))) {
        return 0.0f;
    }
    if (y <= 0.0f) {
        y = 0.0f;
    }
    if (x <= 0.0f) {
        x = 0.0f;
    }
    int y_low = static_cast<int>(y);
    int x_low = static_cast<int>(x);
    int y_high;
    int x_high;
    if (y_low >= height - 1) {
        y_high = y_low = height - 1;
        y = static_cast<float>(y_low);
    } else {
        y_high = y_low + 1;
    }
    if (x_low >= width - 1) {
        x_high = x_low = width - 1;
        x = static_cast<float>(x_low);
    } else {
        x_high = x_low + 1;
    }
    float const ly = y - static_cast<float>(y_low);
    float const lx = x - static_cast<float>(x_low);
    float const hy = 1.0f - ly;
    float const hx = 1.0f - lx;
    float const w1 = hy * hx;
    float const w2 = hy * lx;
    float const w3 = ly * hx;
    float const w4 = ly * lx;
    float const v1 = ElementIO<T>::load(plane[static_cast<int64_t>(y_low) * width + x_low]);
    float const v2 = ElementIO<T>::load(plane[static_cast<int64_t>(y_low) * width + x_high]);
    float const v3 = ElementIO<T>::load(plane[static_cast<int64_t>(y_high) * width + x_low]);
    float const v4 = ElementIO<T>::load(plane[static_cast<int64_t>(y_high) * width + x_high]);
    return w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4;
}

// Average of the grid_h x grid_w samples of bin (ph, pw) on one channel plane.
template <typename T>
INSTSEG_HD float average_bin(T const* plane, int height, int width, RoiWindow const& w, int ph, int pw)
{
    float sum = 0.0f;
    for (int iy = 0; iy < w.grid_h; ++iy) {
        float const y = w.start_h + static_cast<float>(ph) * w.bin_h
            + (static_cast<float>(iy) + 0.5f) * w.bin_h / static_cast<float>(w.grid_h);
        for (int ix = 0; ix < w.grid_w; ++ix) {
            float const x = w.start_w + static_cast<float>(pw) * w.bin_w
                + (static_cast<float>(ix) + 0.5f) * w.bin_w / static_cast<float>(w.grid_w);
            sum += bilinear_sample(plane, height, width, y, x);
        }
    }
    return sum / w.count;
}

// Value of output element `index` of the (R, C, S, S) result, in float.
// rois: (R, 5) as (batch_index, x1, y1, x2, y2) in network-input pixels.
// RoIs whose level is undefined or whose batch index is out of range pool to 0.
template <typename T>
INSTSEG_HD float multilevel_roi_align_element(
    T const* rois, FeaturePyramid<T> const& pyramid, PoolerConfig const& cfg, int64_t index)
{
    int64_t const s = cfg.output_size;
    int const pw = static_cast<int>(index % s);
    int const ph = static_cast<int>((index / s) % s);
    int const c = static_cast<int>((index / (s * s)) % pyramid.channels);
    int64_t const r = index / (s * s * pyramid.channels);

    T const* roi = rois + r * 5;
    float const batch_f = ElementIO<T>::load(roi[0]);
    float const x1 = ElementIO<T>::load(roi[1]);
    float const y1 = ElementIO<T>::load(roi[2]);
    float const x2 = ElementIO<T>::load(roi[3]);
    float const y2 = ElementIO<T>::load(roi[4]);

    int const level = assign_fpn_level(x1, y1, x2, y2, cfg);
    if (level < 0 || !(batch_f >= 0.0f && batch_f < static_cast<float>(pyramid.batch))) {
        return 0.0f;
    }
    int const batch = static_cast<int>(batch_f); // truncation, as torchvision's int cast
    FeatureLevel<T> const& feature = pyramid.levels[level];
    RoiWindow const window = make_roi_window(x1, y1, x2, y2, cfg.spatial_scales[level], cfg);
    int64_t const plane_size = static_cast<int64_t>(feature.height) * feature.width;
    T const* plane = feature.data + (static_cast<int64_t>(batch) * pyramid.channels + c) * plane_size;
    return average_bin(plane, feature.height, feature.width, window, ph, pw);
}

} // namespace instseg
