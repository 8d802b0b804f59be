#include "formats/safetensors_model.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/json_util.h"

namespace osprey::formats {

namespace fs = std::filesystem;

namespace {

// A shard name from the index must be a plain file name inside the folder (no paths, no "..").
bool is_plain_file_name(const std::string& s) {
    return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
           s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace

SafetensorsModel::SafetensorsModel(const std::string& path) {
    std::error_code ec;
    if (fs::is_regular_file(path, ec)) {
        dir_ = fs::path(path).parent_path().string();
        shards_.push_back(std::make_unique<SafetensorsFile>(path));
        for (const auto& t : shards_[0]->tensors()) tensors_.emplace(t.name, &t);
        return;
    }
    if (!fs::is_directory(path, ec))
        raise(ErrorCode::NotFound, "{}: no such model folder or .safetensors file", path);
    dir_ = path;
    const fs::path index_path = fs::path(path) / "model.safetensors.index.json";
    const fs::path single_path = fs::path(path) / "model.safetensors";
    if (!fs::exists(index_path, ec)) {
        if (!fs::exists(single_path, ec))
            raise(ErrorCode::NotFound, "{}: no model.safetensors or model.safetensors.index.json in this folder", path);
        shards_.push_back(std::make_unique<SafetensorsFile>(single_path.string()));
        for (const auto& t : shards_[0]->tensors()) tensors_.emplace(t.name, &t);
        return;
    }

    sharded_ = true;
    const std::string iname = index_path.string();
    const nlohmann::json index = parse_json_file(iname, iname, 64u << 20);
    if (!index.is_object()) raise(ErrorCode::InvalidFile, "{}: must be a JSON object", iname);
    auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object())
        raise(ErrorCode::InvalidFile, "{}: needs a 'weight_map' object {{tensor: shard file}}", iname);
    if (wm->empty()) raise(ErrorCode::InvalidFile, "{}: 'weight_map' is empty", iname);

    std::map<std::string, size_t> shard_of_file;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it.value().is_string())
            raise(ErrorCode::InvalidFile, "{}: weight_map['{}'] must be a file name string, got {}", iname, it.key(),
                  json_kind(it.value()));
        const std::string file = it.value().get<std::string>();
        if (!is_plain_file_name(file))
            raise(ErrorCode::InvalidFile, "{}: weight_map['{}'] = '{}' is not a file name in the model folder", iname,
                  it.key(), file);
        if (!shard_of_file.count(file)) {
            const fs::path shard_path = fs::path(path) / file;
            if (!fs::exists(shard_path, ec))
                raise(ErrorCode::NotFound, "{}: shard '{}' (holding '{}') is missing from {} (incomplete download?)",
                      iname, file, it.key(), path);
            shard_of_file.emplace(file, shards_.size());
            shards_.push_back(std::make_unique<SafetensorsFile>(shard_path.string()));
        }
        const SafetensorsFile& shard = *shards_[shard_of_file.at(file)];
        const SafetensorsTensorInfo* t = shard.find_tensor(it.key());
        if (!t)
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' is mapped to shard '{}' but that shard does not hold it",
                  iname, it.key(), file);
        tensors_.emplace(it.key(), t);
    }
}

const SafetensorsTensorInfo* SafetensorsModel::find_tensor(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : it->second;
}

const SafetensorsTensorInfo& SafetensorsModel::tensor(const std::string& name) const {
    const SafetensorsTensorInfo* t = find_tensor(name);
    if (!t) raise(ErrorCode::NotFound, "{}: the model has no tensor '{}'", dir_, name);
    return *t;
}

std::vector<std::string> SafetensorsModel::tensor_names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& [name, t] : tensors_) out.push_back(name);
    return out;
}

const std::map<std::string, std::string>& SafetensorsModel::metadata() const { return shards_.at(0)->metadata(); }

}  // namespace osprey::formats
