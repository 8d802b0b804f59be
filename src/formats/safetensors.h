// SafetensorsFile: a bounds-checked reader of one .safetensors file on top of a memory map, and a streaming writer.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON
//   {"<tensor>": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}
// then the data section; offsets are relative to its start. Every field is validated before use (header length,
// JSON, dtype, shape, offsets inside the data section, size == numel * element size, no overlaps), so a corrupt or
// truncated file gives an Error(InvalidFile) that says what and where — never an out-of-range read.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace osprey::formats {

struct SafetensorsTensorInfo {
    std::string name;
    DType dtype = DType::F32;    // U8 tensors are stored as I8 (same size); st_dtype tells them apart
    std::string st_dtype;        // the dtype as the file spells it: "F32", "BF16", "U8", ...
    std::vector<int64_t> shape;  // outermost first, as in the file; {} for a scalar
    uint64_t begin = 0;          // byte range [begin, end) in the data section
    uint64_t end = 0;
    size_t n_bytes = 0;
    const uint8_t* data = nullptr;

    int64_t numel() const;
    // A CPU Tensor view into the mapped file (a scalar is viewed as shape {1}). Throws Error(Unsupported) for more
    // than 4 dimensions and for U8 (Osprey has no unsigned byte type).
    Tensor view() const;
};

class SafetensorsFile {
  public:
    // Maps and parses the file. Throws Error(NotFound/Io/InvalidFile/Unsupported).
    explicit SafetensorsFile(const std::string& path);
    // Parses an image held in memory (tests, fuzzing); the bytes must outlive the SafetensorsFile.
    SafetensorsFile(const uint8_t* data, size_t n_bytes, std::string name = "<memory>");

    const std::string& path() const { return name_; }
    size_t header_bytes() const { return header_bytes_; }  // the JSON header length N
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }  // in data-offset order
    const SafetensorsTensorInfo* find_tensor(const std::string& name) const;

  private:
    void parse(const uint8_t* data, size_t n_bytes);

    std::unique_ptr<MappedFile> file_;
    std::string name_;
    size_t header_bytes_ = 0;
    std::map<std::string, std::string> metadata_;
    std::vector<SafetensorsTensorInfo> tensors_;
    std::map<std::string, size_t> tensor_index_;
};

// "F32", "BF16", ... for the dtypes safetensors can store; throws Error(Unsupported) for quantized types.
const char* safetensors_dtype_name(DType dtype);

// What the writer needs to know of a tensor before its bytes: the header is written first.
struct SafetensorsTensorSpec {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;    // outermost first
    const void* data = nullptr;    // used by write_safetensors(); ignored by SafetensorsWriter
    size_t n_bytes() const;
};

// Writes a whole file at once (small files, tests). Tensors are laid out in the given order.
void write_safetensors(const std::string& path, const std::vector<SafetensorsTensorSpec>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Streaming writer for files larger than memory: the constructor writes the header, append() the tensors' bytes in
// order (any chunking), finish() checks every byte came and renames PATH.tmp to PATH. Destroyed unfinished, it
// removes the partial file. Throws Error(Io) on write failures, Error(InvalidArgument) on misuse.
class SafetensorsWriter {
  public:
    SafetensorsWriter(const std::string& path, std::vector<SafetensorsTensorSpec> tensors,
                      const std::map<std::string, std::string>& metadata = {});
    ~SafetensorsWriter();
    SafetensorsWriter(const SafetensorsWriter&) = delete;
    SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

    void append(const void* data, size_t n_bytes);
    void finish();
    uint64_t data_bytes() const { return total_; }  // size of the data section

  private:
    std::string path_;
    std::string tmp_path_;
    std::FILE* file_ = nullptr;
    uint64_t total_ = 0;
    uint64_t written_ = 0;
};

}  // namespace osprey::formats
