// CPU twin of the CUDA kernel: same per-element function, one host loop instead of a grid.
#include "multilevel_roi_align_cpu.h"

#include "half_host.h"
#include "pooler_config.h"
#include "roi_align_math.h"

namespace {

using instseg::CallStatus;
using instseg::ConfigStatus;
using instseg::FeaturePyramid;
using instseg::PoolerConfig;

template <typename T>
void run_twin(T const* rois, int64_t num_rois, FeaturePyramid<T> const& pyramid, PoolerConfig const& cfg, T* output)
{
    int64_t const total = num_rois * pyramid.channels * cfg.output_size * cfg.output_size;
    for (int64_t index = 0; index < total; ++index) {
        float const value = instseg::multilevel_roi_align_element(rois, pyramid, cfg, index);
        output[index] = instseg::ElementIO<T>::store(value);
    }
}

template <typename T>
int build_pyramid(void const* const* features, int num_levels, int batch, int channels, int const* heights,
    int const* widths, FeaturePyramid<T>& pyramid)
{
    if (batch <= 0 || channels <= 0 || features == nullptr) {
        return static_cast<int>(CallStatus::kBadShape);
    }
    pyramid = FeaturePyramid<T>{};
    pyramid.batch = batch;
    pyramid.channels = channels;
    for (int l = 0; l < num_levels; ++l) {
        if (features[l] == nullptr || heights[l] <= 0 || widths[l] <= 0) {
            return static_cast<int>(CallStatus::kBadShape);
        }
        pyramid.levels[l] = {static_cast<T const*>(features[l]), heights[l], widths[l]};
    }
    return 0;
}

template <typename T>
int dispatch(void const* rois, int64_t num_rois, void const* const* features, int num_levels, int batch, int channels,
    int const* heights, int const* widths, PoolerConfig const& cfg, void* output)
{
    FeaturePyramid<T> pyramid;
    int const status = build_pyramid<T>(features, num_levels, batch, channels, heights, widths, pyramid);
    if (status != 0) {
        return status;
    }
    if (num_rois > 0 && (rois == nullptr || output == nullptr)) {
        return static_cast<int>(CallStatus::kBadShape);
    }
    run_twin(static_cast<T const*>(rois), num_rois, pyramid, cfg, static_cast<T*>(output));
    return 0;
}

} // namespace

extern "C" int instseg_multilevel_roi_align_cpu(int dtype, void const* rois, int64_t num_rois,
    void const* const* features, int num_levels, int batch, int channels, int const* heights, int const* widths,
    int const* featmap_strides, int output_size, int sampling_ratio, int aligned, int canonical_box_size,
    int canonical_level, void* output)
{
    PoolerConfig cfg;
    ConfigStatus const config_status = instseg::make_pooler_config(
        output_size, sampling_ratio, aligned, canonical_box_size, canonical_level, featmap_strides, num_levels, cfg);
    if (config_status != ConfigStatus::kOk) {
        return static_cast<int>(config_status);
    }
    if (num_rois < 0) {
        return static_cast<int>(CallStatus::kBadShape);
    }
    switch (dtype) {
    case INSTSEG_DTYPE_FLOAT32:
        return dispatch<float>(rois, num_rois, features, num_levels, batch, channels, heights, widths, cfg, output);
    case INSTSEG_DTYPE_FLOAT16:
        return dispatch<instseg::HostHalf>(
            rois, num_rois, features, num_levels, batch, channels, heights, widths, cfg, output);
    default: return static_cast<int>(CallStatus::kBadDtype);
    }
}

extern "C" char const* instseg_roi_align_status_message(int status)
{
    return instseg::describe_status(status);
}
