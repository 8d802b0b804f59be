#include "formats/gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <variant>

#include "core/error.h"

namespace osprey::formats {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kGgufVersion = 3;

// Appends the little-endian bytes of one value to `out` (metadata is serialised in memory, then written).
class Serializer {
  public:
    explicit Serializer(std::string& out) : out_(out) {}

    template <typename T>
    void put(T v) {
        char b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        out_.append(b, sizeof(T));
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        out_ += s;
    }

    void value(const std::string& key, GgufType type, GgufType array_type, const GgufValue& v) {
        switch (type) {
            case GgufType::Uint8: put(uint8_t(unsigned_in(key, v, 0xff))); break;
            case GgufType::Uint16: put(uint16_t(unsigned_in(key, v, 0xffff))); break;
            case GgufType::Uint32: put(uint32_t(unsigned_in(key, v, 0xffffffffull))); break;
            case GgufType::Uint64: put(uint64_t(unsigned_in(key, v, ~0ull))); break;
            case GgufType::Int8: put(int8_t(signed_in(key, v, INT8_MIN, INT8_MAX))); break;
            case GgufType::Int16: put(int16_t(signed_in(key, v, INT16_MIN, INT16_MAX))); break;
            case GgufType::Int32: put(int32_t(signed_in(key, v, INT32_MIN, INT32_MAX))); break;
            case GgufType::Int64: put(int64_t(signed_in(key, v, INT64_MIN, INT64_MAX))); break;
            case GgufType::Float32: put(float(number(key, v))); break;
            case GgufType::Float64: put(number(key, v)); break;
            case GgufType::Bool: put(uint8_t(v.as_bool(key) ? 1 : 0)); break;
            case GgufType::String: put_string(v.as_string(key)); break;
            case GgufType::Array: {
                if (array_type > GgufType::Float64)
                    raise(ErrorCode::InvalidArgument, "GGUF metadata '{}': unknown array element type", key);
                const auto& elems = v.as_array(key);
                put<uint32_t>(uint32_t(array_type));
                put<uint64_t>(elems.size());
                for (const GgufValue& e : elems) {
                    if (e.type != array_type)
                        raise(ErrorCode::InvalidArgument, "GGUF metadata '{}': an array element's type differs from "
                              "the array's element type", key);
                    value(key, e.type, e.array_type, e);
                }
                break;
            }
            default: raise(ErrorCode::InvalidArgument, "GGUF metadata '{}': unknown value type {}", key, uint32_t(type));
        }
    }

  private:
    static uint64_t unsigned_in(const std::string& key, const GgufValue& v, uint64_t max) {
        uint64_t u = 0;
        if (auto* p = std::get_if<uint64_t>(&v.value)) u = *p;
        else if (auto* q = std::get_if<int64_t>(&v.value); q && *q >= 0) u = uint64_t(*q);
        else raise(ErrorCode::InvalidArgument, "GGUF metadata '{}': not an unsigned integer", key);
        if (u > max) raise(ErrorCode::InvalidArgument, "GGUF metadata '{}': {} does not fit the type", key, u);
        return u;
    }
    static int64_t signed_in(const std::string& key, const GgufValue& v, int64_t min, int64_t max) {
        int64_t i = 0;
        if (auto* p = std::get_if<int64_t>(&v.value)) i = *p;
        else if (auto* q = std::get_if<uint64_t>(&v.value); q && *q <= uint64_t(INT64_MAX)) i = int64_t(*q);
        else raise(ErrorCode::InvalidArgument, "GGUF metadata '{}': not a signed integer", key);
        if (i < min || i > max) raise(ErrorCode::InvalidArgument, "GGUF metadata '{}': {} does not fit the type", key, i);
        return i;
    }
    static double number(const std::string& key, const GgufValue& v) { return v.as_float(key); }

    std::string& out_;
};

GgufValue scalar(GgufType t, std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>> v) {
    GgufValue g;
    g.type = t;
    g.value = std::move(v);
    return g;
}

}  // namespace

GgufWriter::GgufWriter(std::string path, uint32_t alignment) : path_(std::move(path)), alignment_(alignment) {
    if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0 || alignment_ > (1u << 20))
        raise(ErrorCode::InvalidArgument, "GGUF alignment {} is not a power of two up to 1 MiB", alignment_);
    file_ = std::fopen(path_.c_str(), "wb");
    if (!file_) raise(ErrorCode::Io, "{}: cannot open for writing ({})", path_, std::strerror(errno));
    std::setvbuf(file_, nullptr, _IOFBF, 4u << 20);
    if (alignment_ != 32) add_u32("general.alignment", alignment_);
}

GgufWriter::~GgufWriter() {
    if (file_) std::fclose(file_);
}

void GgufWriter::check_open(const char* what) const {
    if (data_started_) raise(ErrorCode::InvalidArgument, "{}: {} after begin_data()", path_, what);
}

void GgufWriter::add(const std::string& key, GgufValue value) {
    check_open("metadata added");
    for (const auto& kv : kvs_)
        if (kv.first == key) raise(ErrorCode::InvalidArgument, "{}: duplicate GGUF metadata key '{}'", path_, key);
    std::string probe;  // serialise once now so a bad value fails at the call that added it
    Serializer(probe).value(key, value.type, value.array_type, value);
    kvs_.emplace_back(key, std::move(value));
}

void GgufWriter::add_u8(const std::string& k, uint8_t v) { add(k, scalar(GgufType::Uint8, uint64_t(v))); }
void GgufWriter::add_i8(const std::string& k, int8_t v) { add(k, scalar(GgufType::Int8, int64_t(v))); }
void GgufWriter::add_u16(const std::string& k, uint16_t v) { add(k, scalar(GgufType::Uint16, uint64_t(v))); }
void GgufWriter::add_i16(const std::string& k, int16_t v) { add(k, scalar(GgufType::Int16, int64_t(v))); }
void GgufWriter::add_u32(const std::string& k, uint32_t v) { add(k, scalar(GgufType::Uint32, uint64_t(v))); }
void GgufWriter::add_i32(const std::string& k, int32_t v) { add(k, scalar(GgufType::Int32, int64_t(v))); }
void GgufWriter::add_u64(const std::string& k, uint64_t v) { add(k, scalar(GgufType::Uint64, v)); }
void GgufWriter::add_i64(const std::string& k, int64_t v) { add(k, scalar(GgufType::Int64, v)); }
void GgufWriter::add_f32(const std::string& k, float v) { add(k, scalar(GgufType::Float32, double(v))); }
void GgufWriter::add_f64(const std::string& k, double v) { add(k, scalar(GgufType::Float64, v)); }
void GgufWriter::add_bool(const std::string& k, bool v) { add(k, scalar(GgufType::Bool, v)); }
void GgufWriter::add_string(const std::string& k, std::string v) { add(k, scalar(GgufType::String, std::move(v))); }

void GgufWriter::add_string_array(const std::string& k, const std::vector<std::string>& v) {
    std::vector<GgufValue> elems;
    elems.reserve(v.size());
    for (const std::string& s : v) elems.push_back(scalar(GgufType::String, s));
    GgufValue a = scalar(GgufType::Array, std::move(elems));
    a.array_type = GgufType::String;
    add(k, std::move(a));
}

void GgufWriter::add_i32_array(const std::string& k, const std::vector<int32_t>& v) {
    std::vector<GgufValue> elems;
    elems.reserve(v.size());
    for (int32_t x : v) elems.push_back(scalar(GgufType::Int32, int64_t(x)));
    GgufValue a = scalar(GgufType::Array, std::move(elems));
    a.array_type = GgufType::Int32;
    add(k, std::move(a));
}

void GgufWriter::add_f32_array(const std::string& k, const std::vector<float>& v) {
    std::vector<GgufValue> elems;
    elems.reserve(v.size());
    for (float x : v) elems.push_back(scalar(GgufType::Float32, double(x)));
    GgufValue a = scalar(GgufType::Array, std::move(elems));
    a.array_type = GgufType::Float32;
    add(k, std::move(a));
}

uint64_t GgufWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
    check_open("tensor declared");
    if (shape.empty() || shape.size() > 4)
        raise(ErrorCode::InvalidArgument, "GGUF tensor '{}': {} dimensions (1..4 allowed)", name, shape.size());
    const DTypeTraits& tr = dtype_traits(dtype);
    if (tr.ggml_type < 0) raise(ErrorCode::InvalidArgument, "GGUF tensor '{}': type {} has no GGUF id", name, tr.name);
    uint64_t rows = 1;
    for (int64_t d : shape) {
        if (d <= 0) raise(ErrorCode::InvalidArgument, "GGUF tensor '{}': dimension {} is not positive", name, d);
        rows *= uint64_t(d);
    }
    const int64_t inner = shape.back();
    rows /= uint64_t(inner);
    if (inner % tr.block_size != 0)
        raise(ErrorCode::InvalidArgument, "GGUF tensor '{}': row of {} is not a multiple of the {} block size {}", name,
              inner, tr.name, tr.block_size);
    for (const TensorEntry& t : tensors_)
        if (t.name == name) raise(ErrorCode::InvalidArgument, "{}: duplicate GGUF tensor '{}'", path_, name);
    TensorEntry e{name, dtype, shape, 0, uint64_t(dtype_row_bytes(dtype, inner)) * rows};
    data_size_ = (data_size_ + alignment_ - 1) / alignment_ * alignment_;
    e.offset = data_size_;
    data_size_ += e.n_bytes;
    tensors_.push_back(std::move(e));
    return tensors_.back().n_bytes;
}

void GgufWriter::write_raw(const void* data, size_t n) {
    if (n && std::fwrite(data, 1, n, file_) != n)
        raise(ErrorCode::Io, "{}: write failed after {} bytes ({})", path_, written_, std::strerror(errno));
    written_ += n;
}

void GgufWriter::pad_to(uint64_t multiple) {
    static const char zeros[64] = {};
    uint64_t n = (multiple - written_ % multiple) % multiple;
    while (n) {
        const size_t k = size_t(std::min<uint64_t>(n, sizeof(zeros)));
        write_raw(zeros, k);
        n -= k;
    }
}

void GgufWriter::begin_data() {
    check_open("begin_data() called twice or");
    std::string h;
    Serializer s(h);
    s.put<uint32_t>(kGgufMagic);
    s.put<uint32_t>(kGgufVersion);
    s.put<uint64_t>(tensors_.size());
    s.put<uint64_t>(kvs_.size());
    for (const auto& [key, v] : kvs_) {
        s.put_string(key);
        s.put<uint32_t>(uint32_t(v.type));
        s.value(key, v.type, v.array_type, v);
    }
    for (const TensorEntry& t : tensors_) {
        s.put_string(t.name);
        s.put<uint32_t>(uint32_t(t.shape.size()));
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) s.put<uint64_t>(uint64_t(*it));
        s.put<uint32_t>(uint32_t(dtype_traits(t.dtype).ggml_type));
        s.put<uint64_t>(t.offset);
    }
    write_raw(h.data(), h.size());
    pad_to(alignment_);
    header_size_ = written_;
    data_started_ = true;
    current_ = 0;
    current_done_ = 0;
}

void GgufWriter::append(const void* data, size_t n_bytes) {
    if (!data_started_ || finished_) raise(ErrorCode::InvalidArgument, "{}: append() outside begin_data()..finish()", path_);
    const auto* p = static_cast<const uint8_t*>(data);
    while (n_bytes > 0) {
        while (current_ < tensors_.size() && current_done_ == tensors_[current_].n_bytes) {
            current_++;
            current_done_ = 0;
        }
        if (current_ >= tensors_.size())
            raise(ErrorCode::InvalidArgument, "{}: {} bytes appended past the last tensor's data", path_, n_bytes);
        const TensorEntry& t = tensors_[current_];
        if (current_done_ == 0) pad_to(alignment_);  // the tensor starts at header + offset
        const uint64_t left = t.n_bytes - current_done_;
        if (n_bytes > left)
            raise(ErrorCode::InvalidArgument, "{}: tensor '{}' got {} bytes more than its {}", path_, t.name,
                  n_bytes - left, t.n_bytes);
        write_raw(p, n_bytes);
        current_done_ += n_bytes;
        p += n_bytes;
        n_bytes = 0;
    }
}

void GgufWriter::finish() {
    if (!data_started_) begin_data();
    if (finished_) return;
    while (current_ < tensors_.size() && current_done_ == tensors_[current_].n_bytes) {
        current_++;
        current_done_ = 0;
    }
    if (current_ < tensors_.size())
        raise(ErrorCode::InvalidArgument, "{}: tensor '{}' got {} of its {} bytes", path_, tensors_[current_].name,
              current_done_, tensors_[current_].n_bytes);
    finished_ = true;
    const bool ok = std::fflush(file_) == 0;
    const int rc = std::fclose(file_);
    file_ = nullptr;
    if (!ok || rc != 0) raise(ErrorCode::Io, "{}: write failed ({})", path_, std::strerror(errno));
    if (written_ != header_size_ + data_size_)
        raise(ErrorCode::Io, "{}: wrote {} bytes, expected {}", path_, written_, header_size_ + data_size_);
}

uint64_t GgufWriter::file_bytes() const { return header_size_ + data_size_; }

}  // namespace osprey::formats
