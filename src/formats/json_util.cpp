#include "formats/json_util.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <limits>

#include "core/error.h"

namespace osprey::formats {

namespace {

// Largest nesting depth of [ and { outside strings. Stops early once max_depth is exceeded.
int json_depth(std::string_view text, int max_depth) {
    int depth = 0, worst = 0;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); i++) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > worst) worst = depth;
            if (worst > max_depth) return worst;
        } else if (c == ']' || c == '}') depth--;
    }
    return worst;
}

const nlohmann::json* member(const nlohmann::json& obj, const char* key) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

[[noreturn]] void wrong_type(const std::string& name, const std::string& prefix, const char* key, const char* want,
                             const nlohmann::json& v) {
    raise(ErrorCode::InvalidFile, "{}: '{}{}' must be {}, got {}", name, prefix, key, want, json_kind(v));
}

}  // namespace

std::string json_kind(const nlohmann::json& v) {
    switch (v.type()) {
        case nlohmann::json::value_t::null: return "null";
        case nlohmann::json::value_t::object: return "object";
        case nlohmann::json::value_t::array: return "array";
        case nlohmann::json::value_t::string: return "string";
        case nlohmann::json::value_t::boolean: return "boolean";
        case nlohmann::json::value_t::number_integer:
        case nlohmann::json::value_t::number_unsigned: return "integer";
        case nlohmann::json::value_t::number_float: return "number";
        default: return "binary";
    }
}

nlohmann::json parse_json_text(std::string_view text, const std::string& name, int max_depth) {
    if (json_depth(text, max_depth) > max_depth)
        raise(ErrorCode::InvalidFile, "{}: malformed JSON: nested deeper than {} levels", name, max_depth);
    try {
        return nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::exception& e) {
        // nlohmann's message already says where ("syntax error while parsing value - ... at line 3, column 5").
        std::string msg = e.what();
        if (auto p = msg.find("] "); msg.rfind("[json.exception", 0) == 0 && p != std::string::npos) msg = msg.substr(p + 2);
        raise(ErrorCode::InvalidFile, "{}: malformed JSON: {}", name, msg);
    }
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        const int err = errno;
        raise(err == ENOENT ? ErrorCode::NotFound : ErrorCode::Io, "{}: cannot open ({})", path, std::strerror(err));
    }
    std::string text;
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        text.append(buf, n);
        if (text.size() > max_bytes) {
            std::fclose(f);
            raise(ErrorCode::InvalidFile, "{}: larger than {} bytes; not a config file?", path, max_bytes);
        }
    }
    const bool failed = std::ferror(f);
    std::fclose(f);
    if (failed) raise(ErrorCode::Io, "{}: read error", path);
    return text;
}

nlohmann::json parse_json_file(const std::string& path, const std::string& name, size_t max_bytes) {
    return parse_json_text(read_text_file(path, max_bytes), name);
}

// The value as an int64; `what` names it in the error ("'eos_token_id[2]'").
static int64_t to_int(const nlohmann::json& v, const std::string& name, const std::string& what) {
    if (v.is_number_unsigned()) {
        const uint64_t u = v.get<uint64_t>();
        if (u > uint64_t(std::numeric_limits<int64_t>::max()))
            raise(ErrorCode::InvalidFile, "{}: '{}' = {} is out of range", name, what, u);
        return int64_t(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
        // Accept integral floats (4096.0), as Python's json would round-trip them.
        const double d = v.get<double>();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
    }
    raise(ErrorCode::InvalidFile, "{}: '{}' must be an integer, got {}", name, what, json_kind(v));
}

std::optional<int64_t> json_int(const nlohmann::json& obj, const char* key, const std::string& name,
                                const std::string& prefix) {
    const nlohmann::json* v = member(obj, key);
    if (!v) return std::nullopt;
    return to_int(*v, name, prefix + key);
}

std::optional<double> json_number(const nlohmann::json& obj, const char* key, const std::string& name,
                                  const std::string& prefix) {
    const nlohmann::json* v = member(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_number()) wrong_type(name, prefix, key, "a number", *v);
    return v->get<double>();
}

std::optional<bool> json_bool(const nlohmann::json& obj, const char* key, const std::string& name,
                              const std::string& prefix) {
    const nlohmann::json* v = member(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) wrong_type(name, prefix, key, "a boolean", *v);
    return v->get<bool>();
}

std::optional<std::string> json_string(const nlohmann::json& obj, const char* key, const std::string& name,
                                       const std::string& prefix) {
    const nlohmann::json* v = member(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_string()) wrong_type(name, prefix, key, "a string", *v);
    return v->get<std::string>();
}

std::vector<int64_t> json_int_or_list(const nlohmann::json& obj, const char* key, const std::string& name,
                                      const std::string& prefix) {
    std::vector<int64_t> out;
    const nlohmann::json* v = member(obj, key);
    if (!v) return out;
    if (v->is_array()) {
        for (size_t i = 0; i < v->size(); i++) out.push_back(to_int((*v)[i], name, fmt::format("{}{}[{}]", prefix, key, i)));
        return out;
    }
    if (!v->is_number()) wrong_type(name, prefix, key, "an integer or a list of integers", *v);
    out.push_back(*json_int(obj, key, name, prefix));
    return out;
}

}  // namespace osprey::formats
