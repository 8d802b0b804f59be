#include "formats/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/json_util.h"

namespace osprey::formats {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // 100 MB, as the reference implementation
constexpr size_t kMaxDims = 8;
constexpr uint64_t kMaxDim = 1ull << 40;
constexpr uint64_t kMaxNumel = 1ull << 50;

struct StDType {
    const char* name;
    DType dtype;
    size_t size;
};

// The safetensors dtypes Osprey recognises. Others (BOOL, U16, U32, U64, F8_*) are rejected as unsupported.
constexpr StDType kStDTypes[] = {
    {"F32", DType::F32, 4}, {"F16", DType::F16, 2}, {"BF16", DType::BF16, 2}, {"F64", DType::F64, 8},
    {"I8", DType::I8, 1},   {"I16", DType::I16, 2}, {"I32", DType::I32, 4},   {"I64", DType::I64, 8},
    {"U8", DType::I8, 1},
};

const StDType* find_st_dtype(const std::string& name) {
    for (const StDType& d : kStDTypes)
        if (name == d.name) return &d;
    return nullptr;
}

uint64_t read_u64_le(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

}  // namespace

int64_t SafetensorsTensorInfo::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

Tensor SafetensorsTensorInfo::view() const {
    if (shape.size() > 4)
        raise(ErrorCode::Unsupported, "tensor '{}' has {} dimensions; Osprey tensors have at most 4", name, shape.size());
    if (st_dtype == "U8") raise(ErrorCode::Unsupported, "tensor '{}': unsupported tensor type U8", name);
    Tensor t;
    t.data = const_cast<uint8_t*>(data);
    t.dtype = dtype;
    t.device = Device::Cpu;
    if (shape.empty()) {
        t.n_dims = 1;
        t.shape[0] = 1;
    } else {
        t.n_dims = int(shape.size());
        for (size_t i = 0; i < shape.size(); i++) t.shape[i] = shape[i];
    }
    return t;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)), name_(path) {
    parse(file_->data(), file_->size());
}

SafetensorsFile::SafetensorsFile(const uint8_t* data, size_t n_bytes, std::string name) : name_(std::move(name)) {
    parse(data, n_bytes);
}

void SafetensorsFile::parse(const uint8_t* data, size_t n_bytes) {
    if (n_bytes < 8)
        raise(ErrorCode::InvalidFile, "{}: truncated: {} bytes, too short for the 8-byte header length (truncated "
              "download?)", name_, n_bytes);
    const uint64_t n_header = read_u64_le(data);
    if (n_header > kMaxHeaderBytes)
        raise(ErrorCode::InvalidFile, "{}: header length {} is over the {} byte limit; not a safetensors file?", name_,
              n_header, kMaxHeaderBytes);
    if (n_header > n_bytes - 8)
        raise(ErrorCode::InvalidFile, "{}: truncated: the header needs {} bytes after offset 8 but the file has {} "
              "(truncated download?)", name_, n_header, n_bytes);
    if (n_header < 2 || data[8] != '{')
        raise(ErrorCode::InvalidFile, "{}: header at offset 8 is not a JSON object; not a safetensors file?", name_);
    header_bytes_ = size_t(n_header);
    const uint8_t* data_section = data + 8 + n_header;
    const uint64_t n_data = n_bytes - 8 - n_header;

    const std::string hname = name_ + " header";
    const nlohmann::json header =
        parse_json_text(std::string_view(reinterpret_cast<const char*>(data + 8), size_t(n_header)), hname);
    if (!header.is_object()) raise(ErrorCode::InvalidFile, "{}: must be a JSON object", hname);

    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& key = it.key();
        const nlohmann::json& v = it.value();
        if (key == "__metadata__") {
            if (!v.is_object())
                raise(ErrorCode::InvalidFile, "{}: '__metadata__' must be an object, got {}", hname, json_kind(v));
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string())
                    raise(ErrorCode::InvalidFile, "{}: '__metadata__.{}' must be a string, got {}", hname, m.key(),
                          json_kind(m.value()));
                metadata_[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        if (!v.is_object())
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' must be an object, got {}", hname, key, json_kind(v));
        SafetensorsTensorInfo t;
        t.name = key;
        const std::string prefix = key + ".";
        const auto dtype_name = json_string(v, "dtype", hname, prefix);
        if (!dtype_name) raise(ErrorCode::InvalidFile, "{}: tensor '{}' has no 'dtype'", hname, key);
        const StDType* st = find_st_dtype(*dtype_name);
        if (!st)
            raise(ErrorCode::Unsupported, "{}: tensor '{}' has unsupported tensor type {}", name_, key, *dtype_name);
        t.dtype = st->dtype;
        t.st_dtype = st->name;

        auto shape_it = v.find("shape");
        if (shape_it == v.end() || !shape_it->is_array())
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' needs a 'shape' array", hname, key);
        if (shape_it->size() > kMaxDims)
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' has {} dimensions (at most {})", hname, key,
                  shape_it->size(), kMaxDims);
        uint64_t numel = 1;
        for (const nlohmann::json& d : *shape_it) {
            if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
                raise(ErrorCode::InvalidFile, "{}: tensor '{}' shape {} has a dimension that is not a non-negative "
                      "integer", hname, key, shape_it->dump());
            const uint64_t n = d.get<uint64_t>();
            if (n > kMaxDim || (n > 0 && numel > kMaxNumel / n))
                raise(ErrorCode::InvalidFile, "{}: tensor '{}' has absurd shape {}", hname, key, shape_it->dump());
            numel *= n;
            t.shape.push_back(int64_t(n));
        }

        auto off_it = v.find("data_offsets");
        if (off_it == v.end() || !off_it->is_array() || off_it->size() != 2 || !(*off_it)[0].is_number_unsigned() ||
            !(*off_it)[1].is_number_unsigned())
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' needs 'data_offsets' [begin, end] of non-negative integers",
                  hname, key);
        t.begin = (*off_it)[0].get<uint64_t>();
        t.end = (*off_it)[1].get<uint64_t>();
        if (t.begin > t.end)
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' data_offsets [{}, {}] end before they begin", name_, key,
                  t.begin, t.end);
        if (t.end > n_data)
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' data [{}, {}) ends at byte {} but the file has {} bytes "
                  "(truncated download?)", name_, key, t.begin, t.end, 8 + n_header + t.end, n_bytes);
        const uint64_t want = numel * st->size;
        if (t.end - t.begin != want)
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' ({} {}) needs {} bytes but data_offsets [{}, {}] hold {}",
                  name_, key, st->name, shape_it->dump(), want, t.begin, t.end, t.end - t.begin);
        t.n_bytes = size_t(want);
        t.data = data_section + t.begin;
        tensors_.push_back(std::move(t));
    }

    std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    for (size_t i = 0; i + 1 < tensors_.size(); i++) {
        const auto& a = tensors_[i];
        const auto& b = tensors_[i + 1];
        if (a.end > b.begin && a.n_bytes > 0 && b.n_bytes > 0)
            raise(ErrorCode::InvalidFile, "{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", name_, a.name, a.begin,
                  a.end, b.name, b.begin, b.end);
    }
    for (size_t i = 0; i < tensors_.size(); i++) tensor_index_.emplace(tensors_[i].name, i);
}

const SafetensorsTensorInfo* SafetensorsFile::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const char* safetensors_dtype_name(DType dtype) {
    for (const StDType& d : kStDTypes)
        if (d.dtype == dtype) return d.name;  // I8 is found before U8
    raise(ErrorCode::Unsupported, "safetensors cannot store {} tensors", dtype_name(dtype));
}

size_t SafetensorsTensorSpec::n_bytes() const {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    return size_t(numel) * size_t(dtype_traits(dtype).block_bytes);
}

void write_safetensors(const std::string& path, const std::vector<SafetensorsTensorSpec>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    SafetensorsWriter w(path, tensors, metadata);
    for (const SafetensorsTensorSpec& t : tensors) {
        const size_t n = t.n_bytes();
        if (n > 0 && !t.data) raise(ErrorCode::InvalidArgument, "write_safetensors: tensor '{}' has no data", t.name);
        w.append(t.data, n);
    }
    w.finish();
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<SafetensorsTensorSpec> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), tmp_path_(path + ".tmp") {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        nlohmann::ordered_json m = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) m[k] = v;
        header["__metadata__"] = m;
    }
    for (const SafetensorsTensorSpec& t : tensors) {
        if (t.name.empty() || t.name == "__metadata__" || header.contains(t.name))
            raise(ErrorCode::InvalidArgument, "safetensors writer: bad or duplicate tensor name '{}'", t.name);
        for (int64_t d : t.shape)
            if (d < 0) raise(ErrorCode::InvalidArgument, "safetensors writer: tensor '{}' has a negative dimension", t.name);
        const uint64_t n = t.n_bytes();
        header[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                          {"shape", t.shape},
                          {"data_offsets", {total_, total_ + n}}};
        total_ += n;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data section is 8-byte aligned, as safetensors does

    file_ = std::fopen(tmp_path_.c_str(), "wb");
    if (!file_) raise(ErrorCode::Io, "{}: cannot create ({})", tmp_path_, std::strerror(errno));
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
    if (std::fwrite(len, 1, 8, file_) != 8 || std::fwrite(text.data(), 1, text.size(), file_) != text.size())
        raise(ErrorCode::Io, "{}: write failed ({})", tmp_path_, std::strerror(errno));
}

SafetensorsWriter::~SafetensorsWriter() {
    if (file_) {
        std::fclose(file_);
        std::remove(tmp_path_.c_str());
    }
}

void SafetensorsWriter::append(const void* data, size_t n_bytes) {
    if (!file_) raise(ErrorCode::InvalidArgument, "{}: append after finish", path_);
    if (n_bytes > total_ - written_)
        raise(ErrorCode::InvalidArgument, "{}: {} bytes appended past the {} byte data section", path_, n_bytes, total_);
    if (n_bytes && std::fwrite(data, 1, n_bytes, file_) != n_bytes)
        raise(ErrorCode::Io, "{}: write failed ({}); disk full?", tmp_path_, std::strerror(errno));
    written_ += n_bytes;
}

void SafetensorsWriter::finish() {
    if (!file_) raise(ErrorCode::InvalidArgument, "{}: finish called twice", path_);
    if (written_ != total_)
        raise(ErrorCode::InvalidArgument, "{}: {} of {} data bytes written", path_, written_, total_);
    const bool ok = std::fflush(file_) == 0;
    const bool closed = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!ok || !closed) {
        std::remove(tmp_path_.c_str());
        raise(ErrorCode::Io, "{}: write failed ({}); disk full?", tmp_path_, std::strerror(errno));
    }
    if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
        std::remove(tmp_path_.c_str());
        raise(ErrorCode::Io, "{}: cannot rename to {} ({})", tmp_path_, path_, std::strerror(errno));
    }
}

}  // namespace osprey::formats
