// GgufFile: a bounds-checked reader of GGUF v2/v3 files on top of a memory map.
//
// Every offset, count and size is validated against the file before use, so a truncated or corrupt file gives an
// Error(InvalidFile) that says what and where — never an out-of-range read. Tensor data stays in the map; a
// GgufTensorInfo's data pointer is a view into it (valid while the GgufFile lives).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace osprey::formats {

enum class GgufType : uint32_t {
    Uint8 = 0, Int8 = 1, Uint16 = 2, Int16 = 3, Uint32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, Uint64 = 10, Int64 = 11, Float64 = 12,
};

// A metadata value. Arrays hold their element type and the decoded elements; string arrays hold strings.
struct GgufValue {
    GgufType type = GgufType::Uint8;
    GgufType array_type = GgufType::Uint8;  // element type when type == Array
    std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>> value;

    bool is_array() const { return type == GgufType::Array; }
    // Typed accessors: throw Error(InvalidFile) when the value has another type (message names `key`).
    int64_t as_int(const std::string& key) const;       // any integer type
    double as_float(const std::string& key) const;      // any float or integer type
    bool as_bool(const std::string& key) const;
    const std::string& as_string(const std::string& key) const;
    const std::vector<GgufValue>& as_array(const std::string& key) const;
};

struct GgufTensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;  // outermost first (GGUF stores innermost first; this is reversed)
    uint64_t offset = 0;         // from the start of the data section
    size_t n_bytes = 0;
    const uint8_t* data = nullptr;

    Tensor view() const;  // a CPU Tensor view into the mapped file
};

class GgufFile {
  public:
    // Maps and parses the file. Throws Error(NotFound/Io/InvalidFile/Unsupported).
    explicit GgufFile(const std::string& path);
    // Parses a GGUF image held in memory (for tests and fuzzing); the bytes must outlive the GgufFile.
    GgufFile(const uint8_t* data, size_t n_bytes, std::string name = "<memory>");

    uint32_t version() const { return version_; }
    const std::string& path() const { return name_; }
    size_t alignment() const { return alignment_; }

    const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
    const GgufValue* find(const std::string& key) const;
    // Convenience lookups with defaults; throw Error(InvalidFile) if present with the wrong type.
    std::optional<int64_t> get_int(const std::string& key) const;
    std::optional<double> get_float(const std::string& key) const;
    std::optional<bool> get_bool(const std::string& key) const;
    std::optional<std::string> get_string(const std::string& key) const;
    std::vector<std::string> get_string_array(const std::string& key) const;  // empty when absent
    std::vector<float> get_float_array(const std::string& key) const;
    std::vector<int64_t> get_int_array(const std::string& key) const;

    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(const std::string& name) const;

  private:
    void parse(const uint8_t* data, size_t n_bytes);

    std::unique_ptr<MappedFile> file_;
    std::string name_;
    uint32_t version_ = 0;
    size_t alignment_ = 32;
    std::map<std::string, GgufValue> metadata_;
    std::vector<GgufTensorInfo> tensors_;
    std::map<std::string, size_t> tensor_index_;
};

}  // namespace osprey::formats
