#include "formats/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace osprey::formats {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxStringBytes = 1ull << 30;
constexpr uint64_t kMaxArrayElems = 1ull << 28;
constexpr uint64_t kMaxTensors = 1ull << 20;
constexpr uint64_t kMaxKvs = 1ull << 20;
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;

// A cursor over the file bytes that checks every read against the end.
class Reader {
  public:
    Reader(const uint8_t* data, size_t size, const std::string& name) : data_(data), size_(size), name_(name) {}

    size_t pos() const { return pos_; }
    size_t size() const { return size_; }

    void need(uint64_t n, const char* what) const {
        if (n > size_ - pos_)
            raise(ErrorCode::InvalidFile, "{}: truncated: {} needs {} bytes at offset {} but the file has {} (truncated "
                  "download?)", name_, what, n, pos_, size_);
    }

    template <typename T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string read_string(const char* what) {
        const uint64_t n = read<uint64_t>(what);
        if (n > kMaxStringBytes) raise(ErrorCode::InvalidFile, "{}: {} at offset {} has absurd length {}", name_, what, pos_ - 8, n);
        need(n, what);
        std::string s(reinterpret_cast<const char*>(data_ + pos_), size_t(n));
        pos_ += size_t(n);
        return s;
    }

  private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& name_;
};

size_t scalar_size(GgufType t) {
    switch (t) {
        case GgufType::Uint8: case GgufType::Int8: case GgufType::Bool: return 1;
        case GgufType::Uint16: case GgufType::Int16: return 2;
        case GgufType::Uint32: case GgufType::Int32: case GgufType::Float32: return 4;
        case GgufType::Uint64: case GgufType::Int64: case GgufType::Float64: return 8;
        case GgufType::String: case GgufType::Array: return 0;
    }
    return 0;
}

GgufValue read_value(Reader& r, GgufType type, const std::string& key, const std::string& name, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
        case GgufType::Uint8: v.value = uint64_t(r.read<uint8_t>("u8 value")); break;
        case GgufType::Uint16: v.value = uint64_t(r.read<uint16_t>("u16 value")); break;
        case GgufType::Uint32: v.value = uint64_t(r.read<uint32_t>("u32 value")); break;
        case GgufType::Uint64: v.value = r.read<uint64_t>("u64 value"); break;
        case GgufType::Int8: v.value = int64_t(r.read<int8_t>("i8 value")); break;
        case GgufType::Int16: v.value = int64_t(r.read<int16_t>("i16 value")); break;
        case GgufType::Int32: v.value = int64_t(r.read<int32_t>("i32 value")); break;
        case GgufType::Int64: v.value = r.read<int64_t>("i64 value"); break;
        case GgufType::Float32: v.value = double(r.read<float>("f32 value")); break;
        case GgufType::Float64: v.value = r.read<double>("f64 value"); break;
        case GgufType::Bool: {
            const uint8_t b = r.read<uint8_t>("bool value");
            if (b > 1) raise(ErrorCode::InvalidFile, "{}: metadata '{}': bool value {} is neither 0 nor 1", name, key, b);
            v.value = b != 0;
            break;
        }
        case GgufType::String: v.value = r.read_string("string value"); break;
        case GgufType::Array: {
            if (depth >= kMaxArrayDepth) raise(ErrorCode::InvalidFile, "{}: metadata '{}': arrays nested too deeply", name, key);
            const uint32_t et = r.read<uint32_t>("array element type");
            if (et > uint32_t(GgufType::Float64))
                raise(ErrorCode::InvalidFile, "{}: metadata '{}': unknown array element type {}", name, key, et);
            v.array_type = GgufType(et);
            const uint64_t n = r.read<uint64_t>("array length");
            if (n > kMaxArrayElems) raise(ErrorCode::InvalidFile, "{}: metadata '{}': absurd array length {}", name, key, n);
            const size_t es = scalar_size(v.array_type);
            // Each element takes at least 1 byte (strings at least 8), so a length beyond the remaining bytes is corrupt.
            const uint64_t min_bytes = es ? n * es : n * 8;
            r.need(min_bytes, "array data");
            std::vector<GgufValue> elems;
            elems.reserve(size_t(n));
            for (uint64_t i = 0; i < n; i++) elems.push_back(read_value(r, v.array_type, key, name, depth + 1));
            v.value = std::move(elems);
            break;
        }
        default: raise(ErrorCode::InvalidFile, "{}: metadata '{}': unknown value type {}", name, key, uint32_t(type));
    }
    return v;
}

[[noreturn]] void wrong_type(const std::string& key, const char* want) {
    raise(ErrorCode::InvalidFile, "GGUF metadata '{}' is not {}", key, want);
}

}  // namespace

int64_t GgufValue::as_int(const std::string& key) const {
    if (auto* u = std::get_if<uint64_t>(&value)) {
        if (*u > uint64_t(std::numeric_limits<int64_t>::max())) wrong_type(key, "a representable integer");
        return int64_t(*u);
    }
    if (auto* i = std::get_if<int64_t>(&value)) return *i;
    wrong_type(key, "an integer");
}

double GgufValue::as_float(const std::string& key) const {
    if (auto* d = std::get_if<double>(&value)) return *d;
    if (auto* u = std::get_if<uint64_t>(&value)) return double(*u);
    if (auto* i = std::get_if<int64_t>(&value)) return double(*i);
    wrong_type(key, "a number");
}

bool GgufValue::as_bool(const std::string& key) const {
    if (auto* b = std::get_if<bool>(&value)) return *b;
    wrong_type(key, "a bool");
}

const std::string& GgufValue::as_string(const std::string& key) const {
    if (auto* s = std::get_if<std::string>(&value)) return *s;
    wrong_type(key, "a string");
}

const std::vector<GgufValue>& GgufValue::as_array(const std::string& key) const {
    if (auto* a = std::get_if<std::vector<GgufValue>>(&value)) return *a;
    wrong_type(key, "an array");
}

Tensor GgufTensorInfo::view() const {
    Tensor t;
    t.data = const_cast<uint8_t*>(data);
    t.dtype = dtype;
    t.device = Device::Cpu;
    t.n_dims = int(shape.size());
    for (size_t i = 0; i < shape.size(); i++) t.shape[i] = shape[i];
    return t;
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)), name_(path) {
    parse(file_->data(), file_->size());
}

GgufFile::GgufFile(const uint8_t* data, size_t n_bytes, std::string name) : name_(std::move(name)) {
    parse(data, n_bytes);
}

void GgufFile::parse(const uint8_t* data, size_t n_bytes) {
    Reader r(data, n_bytes, name_);
    const uint32_t magic = r.read<uint32_t>("magic");
    if (magic != kGgufMagic) raise(ErrorCode::InvalidFile, "{}: not a GGUF file (bad magic 0x{:08x})", name_, magic);
    version_ = r.read<uint32_t>("version");
    if (version_ != 2 && version_ != 3)
        raise(ErrorCode::Unsupported, "{}: GGUF version {} is not supported (2 and 3 are)", name_, version_);
    const uint64_t n_tensors = r.read<uint64_t>("tensor count");
    const uint64_t n_kv = r.read<uint64_t>("metadata count");
    if (n_tensors > kMaxTensors) raise(ErrorCode::InvalidFile, "{}: absurd tensor count {}", name_, n_tensors);
    if (n_kv > kMaxKvs) raise(ErrorCode::InvalidFile, "{}: absurd metadata count {}", name_, n_kv);

    for (uint64_t i = 0; i < n_kv; i++) {
        std::string key = r.read_string("metadata key");
        const uint32_t type = r.read<uint32_t>("metadata value type");
        if (type > uint32_t(GgufType::Float64))
            raise(ErrorCode::InvalidFile, "{}: metadata '{}' has unknown value type {}", name_, key, type);
        GgufValue v = read_value(r, GgufType(type), key, name_, 0);
        if (metadata_.count(key)) raise(ErrorCode::InvalidFile, "{}: duplicate metadata key '{}'", name_, key);
        metadata_.emplace(std::move(key), std::move(v));
    }

    if (auto it = metadata_.find("general.alignment"); it != metadata_.end()) {
        const int64_t a = it->second.as_int("general.alignment");
        if (a <= 0 || a > (1 << 20) || (a & (a - 1)) != 0)
            raise(ErrorCode::InvalidFile, "{}: general.alignment {} is not a power of two", name_, a);
        alignment_ = size_t(a);
    }

    // Each tensor info takes at least 32 bytes (name length, dims count, one dim, type, offset): a count the rest of
    // the file cannot hold must not reserve memory (a 24-byte file claiming 2^20 tensors would reserve ~100 MB).
    tensors_.reserve(size_t(std::min<uint64_t>(n_tensors, (n_bytes - r.pos()) / 32)));
    for (uint64_t i = 0; i < n_tensors; i++) {
        GgufTensorInfo t;
        t.name = r.read_string("tensor name");
        const uint32_t n_dims = r.read<uint32_t>("tensor dimension count");
        if (n_dims == 0 || n_dims > kMaxDims)
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' has {} dimensions (1..4 allowed)", name_, t.name, n_dims);
        std::vector<int64_t> ne(n_dims);
        uint64_t numel = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            const uint64_t v = r.read<uint64_t>("tensor dimension");
            if (v == 0 || v > (1ull << 40) || numel > (1ull << 50) / v)
                raise(ErrorCode::InvalidFile, "{}: tensor '{}' has absurd dimension {}", name_, t.name, v);
            ne[d] = int64_t(v);
            numel *= v;
        }
        const uint32_t ggml_type = r.read<uint32_t>("tensor type");
        const auto dtype = dtype_from_ggml(ggml_type);
        if (!dtype)
            raise(ErrorCode::Unsupported, "{}: tensor '{}' has unsupported tensor type {} ({})", name_, t.name,
                  ggml_type_name(ggml_type), ggml_type);
        t.dtype = *dtype;
        const int64_t bs = dtype_traits(t.dtype).block_size;
        if (ne[0] % bs != 0)
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' row of {} elements is not a multiple of the {} block size {}",
                  name_, t.name, ne[0], dtype_name(t.dtype), bs);
        t.shape.assign(ne.rbegin(), ne.rend());
        t.offset = r.read<uint64_t>("tensor offset");
        t.n_bytes = dtype_row_bytes(t.dtype, ne[0]) * size_t(numel / uint64_t(ne[0]));
        if (tensor_index_.count(t.name)) raise(ErrorCode::InvalidFile, "{}: duplicate tensor '{}'", name_, t.name);
        tensor_index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }

    const size_t data_start = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
    if (data_start > n_bytes && n_tensors > 0)
        raise(ErrorCode::InvalidFile, "{}: truncated: tensor data would start at byte {} but the file has {} bytes",
              name_, data_start, n_bytes);
    for (GgufTensorInfo& t : tensors_) {
        if (t.offset % alignment_ != 0)
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' offset {} is not aligned to {}", name_, t.name, t.offset,
                  alignment_);
        if (data_start > n_bytes || t.offset > n_bytes - data_start || t.n_bytes > n_bytes - data_start - t.offset)
            raise(ErrorCode::InvalidFile,
                  "{}: tensor '{}' ({} bytes at data offset {}) ends at byte {} but the file has {} bytes (truncated "
                  "download?)", name_, t.name, t.n_bytes, t.offset, data_start + t.offset + t.n_bytes, n_bytes);
        t.data = data + data_start + t.offset;
    }
}

const GgufValue* GgufFile::find(const std::string& key) const {
    auto it = metadata_.find(key);
    return it == metadata_.end() ? nullptr : &it->second;
}

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return v->as_int(key);
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return v->as_float(key);
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return v->as_bool(key);
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return v->as_string(key);
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
    std::vector<std::string> out;
    const GgufValue* v = find(key);
    if (!v) return out;
    const auto& arr = v->as_array(key);
    out.reserve(arr.size());
    for (const GgufValue& e : arr) out.push_back(e.as_string(key));
    return out;
}

std::vector<float> GgufFile::get_float_array(const std::string& key) const {
    std::vector<float> out;
    const GgufValue* v = find(key);
    if (!v) return out;
    const auto& arr = v->as_array(key);
    out.reserve(arr.size());
    for (const GgufValue& e : arr) out.push_back(float(e.as_float(key)));
    return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
    std::vector<int64_t> out;
    const GgufValue* v = find(key);
    if (!v) return out;
    const auto& arr = v->as_array(key);
    out.reserve(arr.size());
    for (const GgufValue& e : arr) out.push_back(e.as_int(key));
    return out;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace osprey::formats
