// CUDA kernel of the multi-level RoIAlign: each thread computes one output element with the
// shared __host__ __device__ math of roi_align_math.h (FP32 accumulation for FP32 and FP16 I/O).
#include "multilevel_roi_align_kernel.h"

#include <cuda_fp16.h>

#include "pooler_config.h"

namespace instseg {

template <>
struct ElementIO<__half> {
    static INSTSEG_HD float load(__half v) { return __half2float(v); }
    static INSTSEG_HD __half store(float v) { return __float2half_rn(v); }
};

namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20; // grid-stride loop covers the rest

template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock) multilevel_roi_align_kernel(T const* __restrict__ rois,
    FeaturePyramid<T> const pyramid, PoolerConfig const cfg, int64_t total, T* __restrict__ output)
{
    int64_t const stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < total; index += stride) {
        output[index] = ElementIO<T>::store(multilevel_roi_align_element(rois, pyramid, cfg, index));
    }
}

template <typename T>
cudaError_t launch_typed(void const* rois, int64_t num_rois, void const* const* features, PyramidShape const& shape,
    PoolerConfig const& cfg, void* output, cudaStream_t stream)
{
    int64_t const total = num_rois * shape.channels * cfg.output_size * cfg.output_size;
    if (total == 0) {
        return cudaSuccess; // N = 0 RoIs: nothing to write, and a zero-sized grid is invalid
    }
    FeaturePyramid<T> pyramid{};
    pyramid.batch = shape.batch;
    pyramid.channels = shape.channels;
    for (int l = 0; l < cfg.num_levels; ++l) {
        pyramid.levels[l] = {static_cast<T const*>(features[l]), shape.heights[l], shape.widths[l]};
    }
    int64_t blocks = (total + kThreadsPerBlock - 1) / kThreadsPerBlock;
    blocks = blocks < kMaxBlocks ? blocks : kMaxBlocks;
    multilevel_roi_align_kernel<T><<<static_cast<unsigned int>(blocks), kThreadsPerBlock, 0, stream>>>(
        static_cast<T const*>(rois), pyramid, cfg, total, static_cast<T*>(output));
    return cudaGetLastError();
}

} // namespace

cudaError_t launch_multilevel_roi_align(int dtype, void const* rois, int64_t num_rois, void const* const* features,
    PyramidShape const& shape, PoolerConfig const& cfg, void* output, cudaStream_t stream)
{
    if (dtype == INSTSEG_DTYPE_FLOAT16) {
        return launch_typed<__half>(rois, num_rois, features, shape, cfg, output, stream);
    }
    return launch_typed<float>(rois, num_rois, features, shape, cfg, output, stream);
}

} // namespace instseg

extern "C" int instseg_multilevel_roi_align_cuda(int dtype, void const* rois, int64_t num_rois,
    void const* const* features, int num_levels, int batch, int channels, int const* heights, int const* widths,
    int const* featmap_strides, int output_size, int sampling_ratio, int aligned, int canonical_box_size,
    int canonical_level, void* output, void* stream)
{
    using instseg::CallStatus;
    instseg::PoolerConfig cfg;
    instseg::ConfigStatus const config_status = instseg::make_pooler_config(
        output_size, sampling_ratio, aligned, canonical_box_size, canonical_level, featmap_strides, num_levels, cfg);
    if (config_status != instseg::ConfigStatus::kOk) {
        return static_cast<int>(config_status);
    }
    if (dtype != INSTSEG_DTYPE_FLOAT32 && dtype != INSTSEG_DTYPE_FLOAT16) {
        return static_cast<int>(CallStatus::kBadDtype);
    }
    if (num_rois < 0 || batch <= 0 || channels <= 0 || features == nullptr) {
        return static_cast<int>(CallStatus::kBadShape);
    }
    instseg::PyramidShape shape{};
    shape.batch = batch;
    shape.channels = channels;
    for (int l = 0; l < num_levels; ++l) {
        if (features[l] == nullptr || heights[l] <= 0 || widths[l] <= 0) {
            return static_cast<int>(CallStatus::kBadShape);
        }
        shape.heights[l] = heights[l];
        shape.widths[l] = widths[l];
    }
    cudaError_t const err = instseg::launch_multilevel_roi_align(
        dtype, rois, num_rois, features, shape, cfg, output, static_cast<cudaStream_t>(stream));
    return err == cudaSuccess ? 0 : static_cast<int>(CallStatus::kCudaError);
}
