// IEEE 754 binary16 on the host, for the CPU twin (no CUDA headers there).
// Conversions round to nearest even, like __float2half_rn and numpy.
#pragma once

#include <stdint.h>
#include <string.h>

#include "roi_align_math.h"

namespace instseg {

struct HostHalf {
    uint16_t bits;
};

inline float half_bits_to_float(uint16_t h)
{
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t const exponent = (h >> 10) & 0x1fu;
    uint32_t const mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {
            // Subnormal: mantissa * 2^-24 is exact in float.
            float value = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
            memcpy(&bits, &value, sizeof(bits));
            bits |= sign;
        }
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13); // inf / NaN
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float out;
    memcpy(&out, &bits, sizeof(out));
    return out;
}

inline uint16_t float_to_half_bits(float value)
{
    uint32_t x;
    memcpy(&x, &value, sizeof(x));
    uint32_t const sign = (x >> 16) & 0x8000u;
    uint32_t const exponent = (x >> 23) & 0xffu;
    uint32_t mantissa = x & 0x7fffffu;
    if (exponent == 0xffu) {
        return static_cast<uint16_t>(sign | 0x7c00u | (mantissa != 0 ? 0x200u : 0u));
    }
    int const e = static_cast<int>(exponent) - 127 + 15;
    if (e >= 31) {
        return static_cast<uint16_t>(sign | 0x7c00u); // overflow to infinity
    }
    if (e <= 0) {
        if (e < -10) {
            return static_cast<uint16_t>(sign); // below half the smallest subnormal
        }
        mantissa |= 0x800000u; // make the implicit leading one explicit
        int const shift = 14 - e;
        uint32_t result = mantissa >> shift;
        uint32_t const rest = mantissa & ((1u << shift) - 1u);
        uint32_t const halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (result & 1u))) {
            ++result; // may carry into the smallest normal, which is still correct
        }
        return static_cast<uint16_t>(sign | result);
    }
    uint32_t result = sign | (static_cast<uint32_t>(e) << 10) | (mantissa >> 13);
    uint32_t const rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (result & 1u))) {
        ++result; // a carry into the exponent rounds up to the next binade or to infinity
    }
    return static_cast<uint16_t>(result);
}

template <>
struct ElementIO<HostHalf> {
    static inline float load(HostHalf v) { return half_bits_to_float(v.bits); }
    static inline HostHalf store(float v) { return HostHalf{float_to_half_bits(v)}; }
};

} // namespace instseg
