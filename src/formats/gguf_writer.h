// GgufWriter: writes a GGUF v3 file (the format GgufFile reads): metadata of every value type (arrays included),
// tensor infos, alignment padding, then the tensor data streamed in declaration order.
//
// Usage: add metadata and declare every tensor (name, type, shape), then begin_data() writes the header; append()
// the bytes of each tensor in the order declared (any number of calls per tensor: the writer pads to the
// alignment between tensors and checks each tensor gets exactly its size), then finish(). Only the header is held in
// memory, so a model of any size streams through one small buffer.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "formats/gguf.h"

namespace osprey::formats {

class GgufWriter {
  public:
    // Opens (truncates) `path`. `alignment`: a power of two; written as general.alignment when not 32.
    explicit GgufWriter(std::string path, uint32_t alignment = 32);
    ~GgufWriter();
    GgufWriter(const GgufWriter&) = delete;
    GgufWriter& operator=(const GgufWriter&) = delete;

    // ---- metadata (keys must be unique; before begin_data) ----
    void add(const std::string& key, GgufValue value);  // any value, arrays (of scalars or strings) included
    void add_u8(const std::string& key, uint8_t v);
    void add_i8(const std::string& key, int8_t v);
    void add_u16(const std::string& key, uint16_t v);
    void add_i16(const std::string& key, int16_t v);
    void add_u32(const std::string& key, uint32_t v);
    void add_i32(const std::string& key, int32_t v);
    void add_u64(const std::string& key, uint64_t v);
    void add_i64(const std::string& key, int64_t v);
    void add_f32(const std::string& key, float v);
    void add_f64(const std::string& key, double v);
    void add_bool(const std::string& key, bool v);
    void add_string(const std::string& key, std::string v);
    void add_string_array(const std::string& key, const std::vector<std::string>& v);
    void add_i32_array(const std::string& key, const std::vector<int32_t>& v);
    void add_f32_array(const std::string& key, const std::vector<float>& v);

    // ---- tensors ----
    // Declares a tensor; `shape` is outermost first (as GgufTensorInfo::shape), written innermost first.
    // Returns its size in bytes. The innermost dimension must be a multiple of the type's block size.
    uint64_t add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape);
    // Writes magic, counts, metadata and tensor infos, padded to the alignment. After this only append/finish.
    void begin_data();
    // The next bytes of tensor data (tensors in declaration order, a tensor may span calls and calls may not span
    // tensors). Throws Error(InvalidArgument) when more bytes come than the current tensor has left.
    void append(const void* data, size_t n_bytes);
    // Checks every tensor got its bytes, flushes and closes. Throws Error(Io) on a write failure.
    void finish();

    size_t n_tensors() const { return tensors_.size(); }
    uint64_t data_bytes() const { return data_size_; }  // the data section, padding included
    uint64_t file_bytes() const;                       // valid after begin_data()

  private:
    struct TensorEntry {
        std::string name;
        DType dtype;
        std::vector<int64_t> shape;  // outermost first
        uint64_t offset = 0;
        uint64_t n_bytes = 0;
    };
    void write_raw(const void* data, size_t n);
    void pad_to(uint64_t multiple);
    void check_open(const char* what) const;

    std::string path_;
    std::FILE* file_ = nullptr;
    uint32_t alignment_;
    std::vector<std::pair<std::string, GgufValue>> kvs_;
    std::vector<TensorEntry> tensors_;
    uint64_t data_size_ = 0;
    uint64_t header_size_ = 0;
    uint64_t written_ = 0;     // bytes written to the file so far
    size_t current_ = 0;       // tensor being appended
    uint64_t current_done_ = 0;
    bool data_started_ = false;
    bool finished_ = false;
};

}  // namespace osprey::formats
