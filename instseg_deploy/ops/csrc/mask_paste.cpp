// Pastes a mask's (M, M) probabilities into its box and writes the full image's COCO RLE counts, without the
// full image: processing/masks.py's paste_cropped + rle_counts in one pass, bit for bit.
//
// Exactness: every value is computed with the same float32 operations in the same order as the numpy
// reference (built with -ffp-contract=off and no fast-math, so nothing is fused or reordered); the tests
// compare both on random boxes and on the detectron2 golden images.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

struct Taps {
    std::vector<int64_t> i0, i1;
    std::vector<float> w0, w1;
};

// numpy's _bilinear_taps for pixel centres start + 0.5 ... end - 0.5 of a size-long signal spanning [lo, hi].
Taps bilinear_taps(int32_t start, int32_t end, float lo, float hi, int32_t size)
{
    Taps t;
    const int32_t n = end - start;
    t.i0.resize(n);
    t.i1.resize(n);
    t.w0.resize(n);
    t.w1.resize(n);
    const float span = hi - lo;
    for (int32_t k = 0; k < n; ++k) {
        const float coord = static_cast<float>(start + k) + 0.5f;
        const float g = (coord - lo) / span * 2.0f - 1.0f;
        const float src = ((g + 1.0f) * static_cast<float>(size) - 1.0f) / 2.0f;
        const float left = std::floor(src);
        const float w_right = src - left;
        const float w_left = 1.0f - w_right;
        // numpy casts a NaN/inf (a zero-width box) to some int64 and the NaN weights keep the pixel off; so here.
        const int64_t i0 = std::isfinite(left) ? static_cast<int64_t>(left) : 0;
        const int64_t i1 = i0 + 1;
        t.w0[k] = (i0 >= 0 && i0 < size) ? w_left : 0.0f;
        t.w1[k] = (i1 >= 0 && i1 < size) ? w_right : 0.0f;
        t.i0[k] = i0 < 0 ? 0 : (i0 > size - 1 ? size - 1 : i0);
        t.i1[k] = i1 < 0 ? 0 : (i1 > size - 1 ? size - 1 : i1);
    }
    return t;
}

} // namespace

// probs: (m, m) row-major; box: x0, y0, x1, y1 (image pixels); the region [top, bottom) x [left, right) holds
// every pixel that can be on. region_t (optional, may be null): (right - left) x (bottom - top) bytes, the
// region's mask column by column. counts: room for `capacity` COCO RLE counts of the (height, width) image.
// Returns the number of counts, or -(the number needed) when capacity is too small.
extern "C" __attribute__((visibility("default"))) int64_t instseg_paste_mask_rle(const float* probs, int32_t m,
    const float* box, int32_t height, int32_t width, int32_t top, int32_t left, int32_t bottom, int32_t right,
    float threshold, uint8_t* region_t, uint32_t* counts, int64_t capacity)
{
    const int32_t h = bottom - top;
    const Taps rt = bilinear_taps(top, bottom, box[1], box[3], m);
    const Taps ct = bilinear_taps(left, right, box[0], box[2], m);
    // rows[k * h + y]: the row interpolation, one source column after another (numpy's transposed rows).
    std::vector<float> rows(static_cast<size_t>(m) * h);
    for (int32_t y = 0; y < h; ++y) {
        const float* a = probs + rt.i0[y] * m;
        const float* b = probs + rt.i1[y] * m;
        for (int32_t k = 0; k < m; ++k) {
            const float first = a[k] * rt.w0[y];
            const float second = b[k] * rt.w1[y];
            rows[static_cast<size_t>(k) * h + y] = first + second;
        }
    }
    const int64_t total = static_cast<int64_t>(height) * width;
    int64_t written = 0, needed = 0, last = 0;
    auto emit = [&](int64_t boundary) {
        if (written < capacity)
            counts[written++] = static_cast<uint32_t>(boundary - last);
        ++needed;
        last = boundary;
    };
    std::vector<uint8_t> scratch(region_t ? 0 : h);
    uint8_t on = 0;
    for (int32_t x = left; x < right; ++x) {
        const int32_t j = x - left;
        const float* r0 = rows.data() + static_cast<size_t>(ct.i0[j]) * h;
        const float* r1 = rows.data() + static_cast<size_t>(ct.i1[j]) * h;
        const float w0 = ct.w0[j], w1 = ct.w1[j];
        uint8_t* column = region_t ? region_t + static_cast<size_t>(j) * h : scratch.data();
        for (int32_t y = 0; y < h; ++y) { // no branches: the compiler vectorises it
            const float first = r0[y] * w0;
            const float second = r1[y] * w1;
            column[y] = (first + second) >= threshold ? 1 : 0;
        }
        // `on` at the top of a column only when the region spans whole columns (a run going on from the last).
        const int64_t base = static_cast<int64_t>(x) * height;
        for (int32_t y = 0; y < h;) { // changes are rare: skip 8 unchanged pixels at a time
            const uint64_t same = on ? 0x0101010101010101ULL : 0;
            uint64_t word;
            if (y + 8 <= h && (std::memcpy(&word, column + y, 8), word == same)) {
                y += 8;
                continue;
            }
            if (column[y] != on) {
                emit(base + top + y);
                on = column[y];
            }
            ++y;
        }
        // A run reaching the region's bottom ends there, unless it goes on at the top of the next image column.
        if (on && !(bottom == height && top == 0 && x + 1 < right)) {
            emit(base + bottom);
            on = 0;
        }
    }
    if (last < total)
        emit(total);
    return needed <= capacity ? written : -needed;
}
