// SafetensorsModel: the weights of a Hugging Face model folder — one model.safetensors, or shards listed by
// model.safetensors.index.json ({"weight_map": {tensor: shard file}}) — behind one find_tensor(name).
// Every shard the index references must exist and hold the tensors mapped to it; shards are memory-mapped.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "formats/safetensors.h"

namespace osprey::formats {

class SafetensorsModel {
  public:
    // `path` is a model folder or a single .safetensors file. Throws Error(NotFound/InvalidFile/Unsupported/Io).
    explicit SafetensorsModel(const std::string& path);

    const std::string& dir() const { return dir_; }
    size_t n_shards() const { return shards_.size(); }
    const SafetensorsFile& shard(size_t i) const { return *shards_[i]; }
    bool is_sharded() const { return sharded_; }

    const SafetensorsTensorInfo* find_tensor(const std::string& name) const;  // nullptr when absent
    const SafetensorsTensorInfo& tensor(const std::string& name) const;       // throws Error(NotFound)
    std::vector<std::string> tensor_names() const;                            // sorted
    const std::map<std::string, std::string>& metadata() const;               // of the first shard

  private:
    std::string dir_;
    bool sharded_ = false;
    std::vector<std::unique_ptr<SafetensorsFile>> shards_;
    std::map<std::string, const SafetensorsTensorInfo*> tensors_;
};

}  // namespace osprey::formats
