// Helpers shared by the JSON-based formats (safetensors header, config.json, index.json): parsing with a clear
// Error(InvalidFile) instead of nlohmann's exceptions, a nesting-depth guard, and typed field access whose errors
// name the file and the key ("config.json: 'num_hidden_layers' must be an integer, got string").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace osprey::formats {

// Parses `text` as one JSON document. Throws Error(InvalidFile) "<name>: malformed JSON: ..." on syntax errors and
// on nesting deeper than max_depth (checked before parsing: deep nesting would recurse in nlohmann's destructor).
nlohmann::json parse_json_text(std::string_view text, const std::string& name, int max_depth = 64);
// Reads a whole file (Error NotFound/Io) and parses it; max_bytes guards against absurd files.
nlohmann::json parse_json_file(const std::string& path, const std::string& name, size_t max_bytes = 256u << 20);
std::string read_text_file(const std::string& path, size_t max_bytes = 256u << 20);

// "string", "integer", "number", "boolean", "null", "array", "object".
std::string json_kind(const nlohmann::json& v);

// Typed access to obj[key]; absent or null -> nullopt; present with the wrong type -> Error(InvalidFile).
// `name` is the file name used in messages; `key` may be a dotted path for nested objects ("rope_scaling.factor").
std::optional<int64_t> json_int(const nlohmann::json& obj, const char* key, const std::string& name,
                                const std::string& path_prefix = "");
std::optional<double> json_number(const nlohmann::json& obj, const char* key, const std::string& name,
                                  const std::string& path_prefix = "");
std::optional<bool> json_bool(const nlohmann::json& obj, const char* key, const std::string& name,
                              const std::string& path_prefix = "");
std::optional<std::string> json_string(const nlohmann::json& obj, const char* key, const std::string& name,
                                       const std::string& path_prefix = "");
// An integer or a list of integers (eos_token_id); absent/null -> empty.
std::vector<int64_t> json_int_or_list(const nlohmann::json& obj, const char* key, const std::string& name,
                                      const std::string& path_prefix = "");

}  // namespace osprey::formats
