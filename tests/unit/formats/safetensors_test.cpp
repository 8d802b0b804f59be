// SafetensorsFile / SafetensorsModel / writer. Good files come from tests/golden/make_safetensors_fixtures.py (the
// reference `safetensors` package); expected values are the formulas that script used, and IEEE bit patterns.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "unit/temp_dir.h"
#include "core/error.h"
#include "formats/safetensors.h"
#include "formats/safetensors_model.h"

using namespace osprey;
using namespace osprey::formats;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(OSPREY_SOURCE_DIR) + "/tests/golden/data/safetensors";

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// Builds a safetensors image from a header text and a data section, by the spec (independent of the writer).
std::vector<uint8_t> image(const std::string& header, size_t n_data, uint64_t header_len_override = ~0ull) {
    std::vector<uint8_t> b(8 + header.size() + n_data, 0x11);
    const uint64_t n = header_len_override != ~0ull ? header_len_override : header.size();
    for (int i = 0; i < 8; i++) b[i] = uint8_t(n >> (8 * i));
    if (!header.empty()) std::memcpy(b.data() + 8, header.data(), header.size());
    return b;
}

void expect_error(const std::vector<uint8_t>& img, ErrorCode code, const std::string& needle) {
    try {
        SafetensorsFile f(img.data(), img.size());
        ADD_FAILURE() << "accepted a bad file (expected '" << needle << "')";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
    }
}

template <typename T>
T at(const SafetensorsTensorInfo* t, size_t i) {
    T v;
    std::memcpy(&v, t->data + i * sizeof(T), sizeof(T));
    return v;
}

using osprey::testing::TempDir;

}  // namespace

TEST(Safetensors, ReadsReferenceFile) {
    SafetensorsFile f(kDir + "/small.safetensors");
    ASSERT_EQ(f.tensors().size(), 7u);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    EXPECT_EQ(f.metadata().at("note"), "osprey fixture");

    const auto* a = f.find_tensor("a");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->dtype, DType::F32);
    EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(a->n_bytes, 24u);
    for (size_t i = 0; i < 6; i++) EXPECT_EQ(at<float>(a, i), float(i) * 0.5f - 1.0f);
    const Tensor av = a->view();
    EXPECT_EQ(av.n_dims, 2);
    EXPECT_EQ(av.shape[0], 2);
    EXPECT_EQ(av.shape[1], 3);
    EXPECT_EQ(av.as<float>()[5], 1.5f);

    const auto* b = f.find_tensor("b");
    EXPECT_EQ(b->dtype, DType::F16);
    const uint16_t b_bits[] = {0x3c00, 0xc000, 0x3800, 0x7bff};  // 1, -2, 0.5, 65504 in IEEE binary16
    for (size_t i = 0; i < 4; i++) EXPECT_EQ(at<uint16_t>(b, i), b_bits[i]);

    const auto* c = f.find_tensor("c");
    EXPECT_EQ(c->dtype, DType::BF16);
    EXPECT_EQ(c->st_dtype, "BF16");
    const uint16_t c_bits[] = {0x3f80, 0xbfc0, 0x4049, 0x0000};  // 1, -1.5, 3.140625, 0 in bfloat16
    for (size_t i = 0; i < 4; i++) EXPECT_EQ(at<uint16_t>(c, i), c_bits[i]);

    const auto* d = f.find_tensor("d");
    EXPECT_EQ(d->dtype, DType::I32);
    EXPECT_EQ(at<int32_t>(d, 0), -7);
    EXPECT_EQ(at<int32_t>(d, 2), 123456789);

    const auto* e = f.find_tensor("e");  // a 0-d scalar
    EXPECT_EQ(e->dtype, DType::I64);
    EXPECT_TRUE(e->shape.empty());
    EXPECT_EQ(e->numel(), 1);
    EXPECT_EQ(at<int64_t>(e, 0), (int64_t(1) << 40) + 3);
    EXPECT_EQ(e->view().numel(), 1);

    const auto* u = f.find_tensor("f");
    EXPECT_EQ(u->st_dtype, "U8");
    EXPECT_EQ(u->n_bytes, 5u);
    EXPECT_EQ(u->data[4], 4);
    EXPECT_THROW(u->view(), Error);  // no unsigned byte DType in Osprey

    const auto* g = f.find_tensor("g");
    EXPECT_EQ(g->dtype, DType::F64);
    EXPECT_EQ(at<double>(g, 0), 0.1);
    EXPECT_EQ(at<double>(g, 1), -1e300);

    EXPECT_EQ(f.find_tensor("nope"), nullptr);
    // Tensors are listed in data order and do not overlap.
    for (size_t i = 0; i + 1 < f.tensors().size(); i++) EXPECT_LE(f.tensors()[i].end, f.tensors()[i + 1].begin);
}

TEST(Safetensors, EveryTruncationIsACleanError) {
    const auto img = read_bytes(kDir + "/small.safetensors");
    ASSERT_GT(img.size(), 100u);
    for (size_t n = 0; n < img.size(); n++) {
        std::vector<uint8_t> cut(img.begin(), img.begin() + long(n));
        try {
            SafetensorsFile f(cut.data(), cut.size());
            ADD_FAILURE() << "accepted a file cut at " << n;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidFile) << n << ": " << e.what();
        }
    }
}

TEST(Safetensors, RejectsCorruptHeaders) {
    const std::string ok = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
    { auto img = image(ok, 16); SafetensorsFile f(img.data(), img.size()); EXPECT_EQ(f.tensors().size(), 1u); }
    expect_error(image(ok, 16, 1000), ErrorCode::InvalidFile, "truncated");
    expect_error(image(ok, 16, 200ull << 20), ErrorCode::InvalidFile, "over the");
    expect_error(image(ok, 16, ~0ull - 1), ErrorCode::InvalidFile, "over the");
    expect_error(image("[1,2]", 0), ErrorCode::InvalidFile, "not a JSON object");
    expect_error(image(R"({"w":{"dtype":"F32",)", 0), ErrorCode::InvalidFile, "malformed JSON");
    expect_error(image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}xyz)", 16), ErrorCode::InvalidFile,
                 "malformed JSON");
    expect_error(image(std::string(1000, '[') , 0), ErrorCode::InvalidFile, "not a JSON object");
    expect_error(image("{" + std::string(100000, '[') + "}", 0), ErrorCode::InvalidFile, "nested deeper");
    // Offsets and sizes.
    expect_error(image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 15), ErrorCode::InvalidFile,
                 "ends at byte");
    expect_error(image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}})", 16), ErrorCode::InvalidFile,
                 "ends at byte");
    expect_error(image(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 24), ErrorCode::InvalidFile,
                 "needs 24 bytes");
    expect_error(image(R"({"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,16]}})", 16), ErrorCode::InvalidFile,
                 "needs 8 bytes");
    expect_error(image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}})", 16), ErrorCode::InvalidFile,
                 "end before");
    expect_error(image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[-1,15]}})", 16), ErrorCode::InvalidFile,
                 "data_offsets");
    expect_error(image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0]}})", 16), ErrorCode::InvalidFile,
                 "data_offsets");
    expect_error(image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", 24),
                 ErrorCode::InvalidFile, "overlap");
    // Shapes.
    expect_error(image(R"({"w":{"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]}})", 16), ErrorCode::InvalidFile,
                 "non-negative");
    expect_error(image(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})", 16), ErrorCode::InvalidFile,
                 "non-negative");
    expect_error(image(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", 16),
                 ErrorCode::InvalidFile, "absurd shape");
    expect_error(image(R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", 4),
                 ErrorCode::InvalidFile, "dimensions");
    expect_error(image(R"({"w":{"dtype":"F32","data_offsets":[0,16]}})", 16), ErrorCode::InvalidFile, "shape");
    // Types.
    expect_error(image(R"({"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4), ErrorCode::Unsupported,
                 "unsupported tensor type F8_E4M3");
    expect_error(image(R"({"w":{"dtype":7,"shape":[4],"data_offsets":[0,16]}})", 16), ErrorCode::InvalidFile,
                 "'w.dtype' must be a string, got integer");
    expect_error(image(R"({"w":[1,2]})", 0), ErrorCode::InvalidFile, "must be an object");
    expect_error(image(R"({"__metadata__":{"k":1}})", 0), ErrorCode::InvalidFile, "must be a string");
}

TEST(Safetensors, EmptyAndZeroSizedTensors) {
    auto img = image(R"({"__metadata__":{"a":"b"},"z":{"dtype":"BF16","shape":[0,4],"data_offsets":[0,0]}})", 0);
    SafetensorsFile f(img.data(), img.size());
    ASSERT_EQ(f.tensors().size(), 1u);
    EXPECT_EQ(f.find_tensor("z")->n_bytes, 0u);
    auto empty = image("{}", 0);
    EXPECT_TRUE(SafetensorsFile(empty.data(), empty.size()).tensors().empty());
}

TEST(Safetensors, WriterRoundTrip) {
    TempDir tmp;
    const std::string path = (tmp.path / "w.safetensors").string();
    std::vector<float> a = {1, 2, 3, 4, 5, 6};
    std::vector<uint16_t> b = {0x3f80, 0xc000};
    std::vector<int64_t> c = {-5};
    write_safetensors(path, {{"a", DType::F32, {2, 3}, a.data()}, {"b", DType::BF16, {2}, b.data()},
                             {"c", DType::I64, {}, c.data()}},
                      {{"format", "pt"}});
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    const auto bytes = read_bytes(path);
    uint64_t n_header = 0;
    std::memcpy(&n_header, bytes.data(), 8);
    EXPECT_EQ(n_header % 8, 0u);  // data section aligned like the reference writer does
    EXPECT_EQ(bytes.size(), 8 + n_header + 24 + 4 + 8);
    SafetensorsFile f(path);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    EXPECT_EQ(f.find_tensor("a")->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(at<float>(f.find_tensor("a"), 5), 6.0f);
    EXPECT_EQ(f.find_tensor("b")->dtype, DType::BF16);
    EXPECT_EQ(at<uint16_t>(f.find_tensor("b"), 1), 0xc000);
    EXPECT_EQ(at<int64_t>(f.find_tensor("c"), 0), -5);
}

TEST(Safetensors, StreamingWriterChecksItsInput) {
    TempDir tmp;
    const std::string path = (tmp.path / "s.safetensors").string();
    {
        SafetensorsWriter w(path, {{"x", DType::F32, {4}}});
        const float v[4] = {1, 2, 3, 4};
        w.append(v, 8);
        EXPECT_THROW(w.finish(), Error);  // only half the bytes came
    }
    EXPECT_FALSE(fs::exists(path));
    EXPECT_FALSE(fs::exists(path + ".tmp"));  // the abandoned partial file is removed
    {
        SafetensorsWriter w(path, {{"x", DType::F32, {4}}});
        const float v[5] = {1, 2, 3, 4, 5};
        EXPECT_THROW(w.append(v, 20), Error);
    }
    EXPECT_THROW(SafetensorsWriter(path, {{"x", DType::Q4_0, {32}}}), Error);
    EXPECT_THROW(SafetensorsWriter(path, {{"x", DType::F32, {1}}, {"x", DType::F32, {1}}}), Error);
}

TEST(SafetensorsModel, SingleFileFolder) {
    SafetensorsModel m(kDir + "/single");
    EXPECT_FALSE(m.is_sharded());
    EXPECT_EQ(m.n_shards(), 1u);
    EXPECT_EQ(m.tensor_names().size(), 7u);
    EXPECT_EQ(at<float>(&m.tensor("a"), 0), -1.0f);
    EXPECT_EQ(m.metadata().at("format"), "pt");
    try {
        m.tensor("lm_head.weight");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::NotFound);
    }
    SafetensorsModel direct(kDir + "/small.safetensors");
    EXPECT_NE(direct.find_tensor("g"), nullptr);
}

TEST(SafetensorsModel, ShardedFolder) {
    SafetensorsModel m(kDir + "/sharded");
    EXPECT_TRUE(m.is_sharded());
    EXPECT_EQ(m.n_shards(), 2u);
    EXPECT_EQ(m.tensor_names(), (std::vector<std::string>{"x.weight", "y.bias", "z.weight"}));
    EXPECT_EQ(at<float>(m.find_tensor("x.weight"), 3), 3.0f);
    EXPECT_EQ(at<float>(m.find_tensor("y.bias"), 0), 7.0f);
    const auto* z = m.find_tensor("z.weight");
    EXPECT_EQ(z->dtype, DType::F16);
    EXPECT_EQ(z->shape, (std::vector<int64_t>{1, 4}));
    EXPECT_EQ(at<uint16_t>(z, 0), 0x3400);  // 0.25 in binary16
}

TEST(SafetensorsModel, MissingShardIsNotFound) {
    try {
        SafetensorsModel m(kDir + "/sharded_missing");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::NotFound);
        EXPECT_NE(std::string(e.what()).find("model-00002-of-00002.safetensors"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
    }
    try {
        SafetensorsModel m(kDir + "/no_such_folder");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::NotFound);
    }
}

TEST(SafetensorsModel, RejectsBadIndexes) {
    TempDir tmp;
    const std::string shard = "model-00001-of-00002.safetensors";
    fs::copy_file(kDir + "/sharded/" + shard, tmp.path / shard);
    auto write_index = [&](const std::string& text) {
        std::ofstream(tmp.path / "model.safetensors.index.json") << text;
    };
    auto expect = [&](ErrorCode code, const std::string& needle) {
        try {
            SafetensorsModel m(tmp.path.string());
            ADD_FAILURE() << "accepted (" << needle << ")";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), code) << e.what();
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    write_index(R"({"weight_map": {"z.weight": ")" + shard + R"("}})");
    expect(ErrorCode::InvalidFile, "does not hold it");
    write_index(R"({"weight_map": {"x.weight": "../)" + shard + R"("}})");
    expect(ErrorCode::InvalidFile, "not a file name");
    write_index(R"({"weight_map": {"x.weight": 3}})");
    expect(ErrorCode::InvalidFile, "must be a file name string");
    write_index(R"({"metadata": {}})");
    expect(ErrorCode::InvalidFile, "weight_map");
    write_index(R"({"weight_map": {"x.weight": )");
    expect(ErrorCode::InvalidFile, "malformed JSON");
    write_index(R"({"weight_map": {"x.weight": ")" + shard + R"("}})");
    SafetensorsModel ok(tmp.path.string());
    EXPECT_EQ(ok.tensor_names(), (std::vector<std::string>{"x.weight"}));
    fs::remove(tmp.path / "model.safetensors.index.json");
    expect(ErrorCode::NotFound, "no model.safetensors");
}
