// Scalar fp16 / bf16 <-> fp32 conversions (IEEE binary16, bfloat16 with round-to-nearest-even).
#pragma once

#include <cstdint>
#include <cstring>

namespace osprey {

inline float fp32_from_bits(uint32_t w) {
    float f;
    std::memcpy(&f, &w, 4);
    return f;
}

inline uint32_t fp32_to_bits(float f) {
    uint32_t w;
    std::memcpy(&w, &f, 4);
    return w;
}

inline float fp16_to_fp32(uint16_t h) {
    // Exact conversion, handling subnormals, inf and nan.
    const uint32_t sign = uint32_t(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        if (mant == 0) return fp32_from_bits(sign);
        // subnormal: normalise
        int e = -1;
        do {
            e++;
            mant <<= 1;
        } while ((mant & 0x400) == 0);
        mant &= 0x3ff;
        return fp32_from_bits(sign | uint32_t(127 - 15 - e) << 23 | mant << 13);
    }
    if (exp == 0x1f) return fp32_from_bits(sign | 0x7f800000u | mant << 13);
    return fp32_from_bits(sign | (exp + 127 - 15) << 23 | mant << 13);
}

inline uint16_t fp32_to_fp16(float f) {
    const uint32_t x = fp32_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t abs = x & 0x7fffffff;
    if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00);  // nan
    if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // overflow -> inf (rounds past 65504)
    if (abs < 0x38800000u) {
        // subnormal or zero in fp16: round to nearest even at 2^-24 granularity
        if (abs < 0x33000000u) return uint16_t(sign);
        const uint32_t e = abs >> 23;
        const uint32_t m = (abs & 0x7fffff) | 0x800000;
        // value = m * 2^(e-150); in units of 2^-24 that is m * 2^(e-126)
        const int s = 126 - int(e);  // right shift amount (>= 1)
        uint32_t q = m >> s;
        const uint32_t rem = m & ((1u << s) - 1);
        const uint32_t halfway = 1u << (s - 1);
        if (rem > halfway || (rem == halfway && (q & 1))) q++;
        return uint16_t(sign | q);
    }
    uint32_t h = ((abs - 0x38000000u) >> 13);
    const uint32_t rem = abs & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return uint16_t(sign | h);
}

inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits(uint32_t(h) << 16); }

inline uint16_t fp32_to_bf16(float f) {
    uint32_t x = fp32_to_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // quiet nan
    x += 0x7fff + ((x >> 16) & 1);
    return uint16_t(x >> 16);
}

}  // namespace osprey
