// GgufWriter: byte-exact against a GGUF image laid out by hand from the spec, and round trips through GgufFile
// (every metadata type, arrays of scalars / strings / arrays, alignment, tensor offsets and data).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"

using namespace osprey;
using namespace osprey::formats;
namespace fs = std::filesystem;

namespace {

struct TempFile {
    fs::path path;
    TempFile() { path = fs::temp_directory_path() / ("osprey_ggufw_" + std::to_string(std::random_device{}()) + ".gguf"); }
    ~TempFile() {
        std::error_code ec;
        fs::remove(path, ec);
    }
};

std::vector<uint8_t> read_all(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// The spec's layout, byte by byte.
struct Bytes {
    std::vector<uint8_t> b;
    template <typename T>
    void put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
    }
    void str(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void pad(size_t a) {
        while (b.size() % a) b.push_back(0);
    }
};

GgufValue val(GgufType t, std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>> v,
              GgufType at = GgufType::Uint8) {
    GgufValue g;
    g.type = t;
    g.array_type = at;
    g.value = std::move(v);
    return g;
}

}  // namespace

TEST(GgufWriter, MatchesTheSpecLayoutByteForByte) {
    TempFile tmp;
    {
        GgufWriter w(tmp.path.string());
        w.add_string("general.architecture", "llama");
        w.add_u32("llama.block_count", 2);
        w.add_f32_array("s", {0.5f, -1.0f});
        w.add_tensor("w", DType::F32, {3, 4});  // GGUF dims {4, 3}
        w.add_tensor("q", DType::Q8_0, {32});
        w.begin_data();
        std::vector<float> wf(12);
        for (int i = 0; i < 12; i++) wf[size_t(i)] = float(i);
        w.append(wf.data(), 20);  // a tensor may span calls
        w.append(reinterpret_cast<const uint8_t*>(wf.data()) + 20, 28);
        std::vector<uint8_t> q(34, 7);
        w.append(q.data(), q.size());
        w.finish();
    }
    Bytes e;
    e.put<uint32_t>(0x46554747);
    e.put<uint32_t>(3);
    e.put<uint64_t>(2);
    e.put<uint64_t>(3);
    e.str("general.architecture"); e.put<uint32_t>(8); e.str("llama");
    e.str("llama.block_count"); e.put<uint32_t>(4); e.put<uint32_t>(2);
    e.str("s"); e.put<uint32_t>(9); e.put<uint32_t>(6); e.put<uint64_t>(2); e.put<float>(0.5f); e.put<float>(-1.0f);
    e.str("w"); e.put<uint32_t>(2); e.put<uint64_t>(4); e.put<uint64_t>(3); e.put<uint32_t>(0); e.put<uint64_t>(0);
    e.str("q"); e.put<uint32_t>(1); e.put<uint64_t>(32); e.put<uint32_t>(8); e.put<uint64_t>(64);
    e.pad(32);
    for (int i = 0; i < 12; i++) e.put<float>(float(i));
    e.pad(32);
    for (int i = 0; i < 34; i++) e.put<uint8_t>(7);
    EXPECT_EQ(read_all(tmp.path), e.b);
}

TEST(GgufWriter, RoundTripsEveryMetadataTypeThroughGgufFile) {
    TempFile tmp;
    std::vector<uint8_t> t0(3 * 64 * 2), t1(2 * 34);
    for (size_t i = 0; i < t0.size(); i++) t0[i] = uint8_t(i * 31 + 5);
    for (size_t i = 0; i < t1.size(); i++) t1[i] = uint8_t(i * 7 + 1);
    {
        GgufWriter w(tmp.path.string(), 64);
        w.add_u8("u8", 250);
        w.add_i8("i8", -120);
        w.add_u16("u16", 65000);
        w.add_i16("i16", -32000);
        w.add_u32("u32", 4000000000u);
        w.add_i32("i32", -2000000000);
        w.add_u64("u64", 1ull << 60);
        w.add_i64("i64", -(1ll << 60));
        w.add_f32("f32", 0.125f);
        w.add_f64("f64", 1e-300);
        w.add_bool("b1", true);
        w.add_bool("b0", false);
        w.add_string("str", std::string("h\xC3\xA9llo\0x", 8));
        w.add_string_array("strs", {"a", "", "b c"});
        w.add_i32_array("ints", {-1, 0, 7});
        w.add_f32_array("floats", {1.5f, -2.25f});
        std::vector<GgufValue> inner1{val(GgufType::Uint16, uint64_t(1)), val(GgufType::Uint16, uint64_t(2))};
        std::vector<GgufValue> inner2{val(GgufType::Uint16, uint64_t(3))};
        w.add("nested", val(GgufType::Array,
                            std::vector<GgufValue>{val(GgufType::Array, inner1, GgufType::Uint16),
                                                   val(GgufType::Array, inner2, GgufType::Uint16)},
                            GgufType::Array));
        w.add("bools", val(GgufType::Array, std::vector<GgufValue>{val(GgufType::Bool, true), val(GgufType::Bool, false)},
                           GgufType::Bool));
        EXPECT_EQ(w.add_tensor("a.weight", DType::F16, {3, 64}), t0.size());
        EXPECT_EQ(w.add_tensor("b.weight", DType::Q8_0, {2, 32}), t1.size());
        w.begin_data();
        w.append(t0.data(), t0.size());
        w.append(t1.data(), t1.size());
        w.finish();
        EXPECT_EQ(w.file_bytes(), fs::file_size(tmp.path));
    }
    GgufFile f(tmp.path.string());
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 64u);
    EXPECT_EQ(*f.get_int("general.alignment"), 64);
    EXPECT_EQ(f.find("u8")->type, GgufType::Uint8);
    EXPECT_EQ(*f.get_int("u8"), 250);
    EXPECT_EQ(f.find("i8")->type, GgufType::Int8);
    EXPECT_EQ(*f.get_int("i8"), -120);
    EXPECT_EQ(f.find("u16")->type, GgufType::Uint16);
    EXPECT_EQ(*f.get_int("u16"), 65000);
    EXPECT_EQ(f.find("i16")->type, GgufType::Int16);
    EXPECT_EQ(*f.get_int("i16"), -32000);
    EXPECT_EQ(f.find("u32")->type, GgufType::Uint32);
    EXPECT_EQ(*f.get_int("u32"), 4000000000ll);
    EXPECT_EQ(f.find("i32")->type, GgufType::Int32);
    EXPECT_EQ(*f.get_int("i32"), -2000000000);
    EXPECT_EQ(f.find("u64")->type, GgufType::Uint64);
    EXPECT_EQ(*f.get_int("u64"), 1ll << 60);
    EXPECT_EQ(f.find("i64")->type, GgufType::Int64);
    EXPECT_EQ(*f.get_int("i64"), -(1ll << 60));
    EXPECT_EQ(f.find("f32")->type, GgufType::Float32);
    EXPECT_EQ(*f.get_float("f32"), 0.125);
    EXPECT_EQ(f.find("f64")->type, GgufType::Float64);
    EXPECT_EQ(*f.get_float("f64"), 1e-300);
    EXPECT_EQ(*f.get_bool("b1"), true);
    EXPECT_EQ(*f.get_bool("b0"), false);
    EXPECT_EQ(*f.get_string("str"), std::string("h\xC3\xA9llo\0x", 8));
    EXPECT_EQ(f.get_string_array("strs"), (std::vector<std::string>{"a", "", "b c"}));
    EXPECT_EQ(f.find("ints")->array_type, GgufType::Int32);
    EXPECT_EQ(f.get_int_array("ints"), (std::vector<int64_t>{-1, 0, 7}));
    EXPECT_EQ(f.get_float_array("floats"), (std::vector<float>{1.5f, -2.25f}));
    const auto& nested = f.find("nested")->as_array("nested");
    ASSERT_EQ(nested.size(), 2u);
    EXPECT_EQ(nested[0].array_type, GgufType::Uint16);
    ASSERT_EQ(nested[0].as_array("n").size(), 2u);
    EXPECT_EQ(nested[0].as_array("n")[1].as_int("n"), 2);
    EXPECT_EQ(nested[1].as_array("n")[0].as_int("n"), 3);
    const auto& bools = f.find("bools")->as_array("bools");
    ASSERT_EQ(bools.size(), 2u);
    EXPECT_TRUE(bools[0].as_bool("b"));
    EXPECT_FALSE(bools[1].as_bool("b"));

    ASSERT_EQ(f.tensors().size(), 2u);
    const GgufTensorInfo* a = f.find_tensor("a.weight");
    const GgufTensorInfo* b = f.find_tensor("b.weight");
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->dtype, DType::F16);
    EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 64}));
    EXPECT_EQ(b->dtype, DType::Q8_0);
    EXPECT_EQ(b->shape, (std::vector<int64_t>{2, 32}));
    EXPECT_EQ(a->offset, 0u);
    EXPECT_EQ(b->offset, 384u);  // 384 is already a multiple of 64
    EXPECT_EQ(0, std::memcmp(a->data, t0.data(), t0.size()));
    EXPECT_EQ(0, std::memcmp(b->data, t1.data(), t1.size()));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a->data) % 64, reinterpret_cast<uintptr_t>(b->data) % 64);
}

TEST(GgufWriter, PadsBetweenTensorsToTheAlignment) {
    TempFile tmp;
    {
        GgufWriter w(tmp.path.string(), 32);
        w.add_tensor("x", DType::F32, {3});  // 12 bytes, the next tensor starts at 32
        w.add_tensor("y", DType::F32, {1});
        w.begin_data();
        const float x[3] = {1, 2, 3}, y = 4;
        w.append(x, sizeof(x));
        w.append(&y, sizeof(y));
        w.finish();
    }
    GgufFile f(tmp.path.string());
    EXPECT_EQ(f.find_tensor("y")->offset, 32u);
    float y = 0;
    std::memcpy(&y, f.find_tensor("y")->data, 4);
    EXPECT_EQ(y, 4.0f);
}

TEST(GgufWriter, RejectsMisuse) {
    TempFile tmp;
    GgufWriter w(tmp.path.string());
    w.add_u32("k", 1);
    EXPECT_THROW(w.add_u32("k", 2), Error);                                      // duplicate key
    EXPECT_THROW(w.add("big", val(GgufType::Uint8, uint64_t(300))), Error);      // does not fit
    EXPECT_THROW(w.add_tensor("q", DType::Q8_0, {2, 33}), Error);                // not whole blocks
    EXPECT_THROW(w.add_tensor("z", DType::F32, {0}), Error);
    w.add_tensor("t", DType::F32, {2});
    EXPECT_THROW(w.add_tensor("t", DType::F32, {2}), Error);                     // duplicate tensor
    w.begin_data();
    EXPECT_THROW(w.add_u32("late", 1), Error);
    const float v[3] = {1, 2, 3};
    EXPECT_THROW(w.append(v, sizeof(v)), Error);  // more than the tensor holds
    w.append(v, 4);
    EXPECT_THROW(w.finish(), Error);              // 4 of 8 bytes
    EXPECT_THROW(GgufWriter(tmp.path.string(), 48), Error);
}
