// Reference (de)quantizers: gguf-py goldens from real model tensors, hand-built blocks, and round trips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "backend/cpu/cpu_kernels.h"
#include "unit/backend/backend_test_util.h"

using namespace osprey;
using namespace osprey::backend;
using namespace osprey::backend::testing;

TEST(Dequant, MatchesGgufPyOnRealTensors) {
    // tests/golden/make_dequant_goldens.py: raw blocks + gguf.quants.dequantize output for the first rows of
    // real Q4_1, Q8_0 (SmolLM2) and Q5_0, Q4_K, Q6_K (Gemma 3) tensors.
    std::ifstream f(std::string(OSPREY_SOURCE_DIR) + "/tests/golden/data/dequant_goldens.bin", std::ios::binary);
    ASSERT_TRUE(f) << "missing golden file";
    std::vector<char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ASSERT_GE(data.size(), 12u);
    ASSERT_EQ(std::memcmp(data.data(), "OSPDQG1\0", 8), 0);
    size_t pos = 8;
    auto u32 = [&] {
        uint32_t v;
        std::memcpy(&v, data.data() + pos, 4);
        pos += 4;
        return v;
    };
    const uint32_t n = u32();
    ASSERT_EQ(n, 5u);
    std::vector<DType> seen;
    for (uint32_t e = 0; e < n; e++) {
        const uint32_t type = u32(), cols = u32(), rows = u32(), raw_bytes = u32();
        const auto dtype = dtype_from_ggml(type);
        ASSERT_TRUE(dtype.has_value());
        seen.push_back(*dtype);
        ASSERT_EQ(raw_bytes, rows * dtype_row_bytes(*dtype, cols));
        const char* raw = data.data() + pos;
        pos += raw_bytes;
        std::vector<float> expect(size_t(rows) * cols);
        std::memcpy(expect.data(), data.data() + pos, expect.size() * 4);
        pos += expect.size() * 4;
        std::vector<float> got(expect.size());
        for (uint32_t r = 0; r < rows; r++)
            cpu::dequantize_row_ref(*dtype, raw + r * dtype_row_bytes(*dtype, cols), got.data() + r * cols, cols);
        for (size_t i = 0; i < got.size(); i++)
            ASSERT_NEAR(got[i], expect[i], 1e-6 * std::max(1.0f, std::fabs(expect[i])))
                << dtype_name(*dtype) << " element " << i;
    }
    EXPECT_EQ(seen, (std::vector<DType>{DType::Q4_1, DType::Q8_0, DType::Q5_0, DType::Q4_K, DType::Q6_K}));
}

TEST(Dequant, HandBuiltBlocks) {
    // Q4_0: d = 2, low nibble -> element j, high nibble -> element j + 16, value (q - 8) * d.
    BlockQ4_0 q40{};
    q40.d = fp32_to_fp16(2.0f);
    q40.qs[0] = 0x1F;  // element 0: 15 -> 14; element 16: 1 -> -14
    q40.qs[3] = 0x80;  // element 3: 0 -> -16; element 19: 8 -> 0
    float y[256];
    cpu::dequantize_row_ref(DType::Q4_0, &q40, y, 32);
    EXPECT_EQ(y[0], 14.0f);
    EXPECT_EQ(y[16], -14.0f);
    EXPECT_EQ(y[3], -16.0f);
    EXPECT_EQ(y[19], 0.0f);
    // Q5_0: fifth bit j of qh belongs to element j.
    BlockQ5_0 q50{};
    q50.d = fp32_to_fp16(1.0f);
    q50.qh[2] = 0x01;  // bit 16 -> element 16
    q50.qs[0] = 0x3F;  // element 0: 15 - 16 = -1; element 16: (3 | 16) - 16 = 3
    cpu::dequantize_row_ref(DType::Q5_0, &q50, y, 32);
    EXPECT_EQ(y[0], -1.0f);
    EXPECT_EQ(y[16], 3.0f);
    EXPECT_EQ(y[1], -16.0f);
    // Q4_K: sub-block 5's scale/min use the packed high bits (get_scale_min_k4, j >= 4).
    BlockQ4_K q4k{};
    q4k.d = fp32_to_fp16(1.0f);
    q4k.dmin = fp32_to_fp16(0.5f);
    q4k.scales[1] = 0x40;  // high 2 bits of scale 5 = 1  -> scale 5 = 16 | low
    q4k.scales[9] = 0x23;  // low nibble of scale 5 = 3, low nibble of min 5 = 2
    q4k.qs[64 + 10] = 0x70;  // sub-block 5 (high nibbles of bytes 64..95): element 160 + 10 has q = 7
    cpu::dequantize_row_ref(DType::Q4_K, &q4k, y, 256);
    EXPECT_EQ(y[170], 19.0f * 7.0f - 0.5f * 2.0f);
    EXPECT_EQ(y[171], -1.0f);
    EXPECT_EQ(y[0], 0.0f);
    // Q6_K: element 64 + l takes ql[l] >> 4 and qh bits 4..5, scale sc[4 + l / 16].
    BlockQ6_K q6k{};
    q6k.d = fp32_to_fp16(0.5f);
    for (auto& s : q6k.scales) s = 2;
    q6k.ql[1] = 0xA0;  // element 65: low 4 bits = 10
    q6k.qh[1] = 0x30;  // element 65: high 2 bits = 3 -> q = 58 - 32 = 26
    cpu::dequantize_row_ref(DType::Q6_K, &q6k, y, 256);
    EXPECT_EQ(y[65], 0.5f * 2.0f * 26.0f);
    EXPECT_EQ(y[1], 0.5f * 2.0f * -32.0f);
}

TEST(Quantize, RoundTripErrorIsSmall) {
    const int64_t n = 1024;
    const auto x = random_floats(size_t(n), 3);
    double rms = 0;
    for (float v : x) rms += double(v) * v;
    rms = std::sqrt(rms / double(n));
    const std::vector<std::pair<DType, double>> cases = {
        {DType::F16, 1e-3}, {DType::BF16, 5e-3}, {DType::Q4_0, 0.12}, {DType::Q4_1, 0.08}, {DType::Q5_0, 0.06},
        {DType::Q5_1, 0.04}, {DType::Q8_0, 0.01}, {DType::Q8_1, 0.01}, {DType::Q8_K, 0.01}, {DType::Q4_K, 0.1},
        {DType::Q6_K, 0.03}};
    for (const auto& [dtype, tol] : cases) {
        std::vector<uint8_t> q(dtype_row_bytes(dtype, n));
        cpu::quantize_row_ref(dtype, x.data(), q.data(), n);
        std::vector<float> y(static_cast<size_t>(n));
        cpu::dequantize_row_ref(dtype, q.data(), y.data(), n);
        double err = 0;
        for (int64_t i = 0; i < n; i++) err += double(y[size_t(i)] - x[size_t(i)]) * (y[size_t(i)] - x[size_t(i)]);
        err = std::sqrt(err / double(n));
        EXPECT_LT(err / rms, tol) << dtype_name(dtype);
        EXPECT_GT(err / rms, tol / 1000) << dtype_name(dtype) << " suspiciously exact";
    }
}

TEST(Quantize, Q8ActivationLayouts) {
    const auto x = random_floats(512, 9, -4.0f, 4.0f);
    BlockQ8_1 b1[16];
    cpu::quantize_row_q8_1_ref(x.data(), b1, 512);
    for (int b = 0; b < 16; b++) {
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += b1[b].qs[j];
        EXPECT_NEAR(fp16_to_fp32(b1[b].s), fp16_to_fp32(b1[b].d) * float(sum), 2e-3 * std::fabs(fp16_to_fp32(b1[b].s)) + 1e-3);
    }
    BlockQ8_K bk[2];
    cpu::quantize_row_q8_K_ref(x.data(), bk, 512);
    for (int b = 0; b < 2; b++) {
        float amax = 0;
        for (int j = 0; j < 256; j++) amax = std::max(amax, std::fabs(x[size_t(256 * b + j)]));
        EXPECT_FLOAT_EQ(bk[b].d, amax / 127.0f);
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += bk[b].qs[16 * g + j];
            EXPECT_EQ(bk[b].bsums[g], sum);
        }
    }
}
