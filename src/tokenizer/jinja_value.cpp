#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "core/error.h"

namespace osprey::tokenizer::jinja {

// ---- UTF-8 ----

std::u32string utf8_decode(std::string_view s) {
    std::u32string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        int n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (n == 0 || i + n > s.size()) {  // invalid byte: keep it as U+FFFD so lengths stay sane
            out.push_back(0xFFFD);
            ++i;
            continue;
        }
        char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        out.push_back(cp);
        i += n;
    }
    return out;
}

void utf8_append(std::string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (c >> 12)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (c >> 18)));
        out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
}

std::string utf8_encode(std::u32string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : s) utf8_append(out, c);
    return out;
}

bool is_py_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// ---- Dict ----

const Value* Dict::find(const Value& key) const {
    for (const auto& [k, v] : items_)
        if (values_equal(k, key)) return &v;
    return nullptr;
}

Value* Dict::find(const Value& key) {
    for (auto& [k, v] : items_)
        if (values_equal(k, key)) return &v;
    return nullptr;
}

const Value* Dict::find(std::string_view key) const {
    for (const auto& [k, v] : items_)
        if (k.is_string() && k.as_string() == key) return &v;
    return nullptr;
}

void Dict::set(Value key, Value value) {
    if (Value* v = find(key)) {
        *v = std::move(value);
        return;
    }
    items_.emplace_back(std::move(key), std::move(value));
}

// ---- Value construction ----

Value Value::undefined(std::string hint) {
    Value v;
    v.s_ = std::move(hint);
    return v;
}

Value Value::none() {
    Value v;
    v.kind_ = ValueKind::None;
    return v;
}

Value::Value(bool b) : kind_(ValueKind::Bool), b_(b) {}
Value::Value(int64_t i) : kind_(ValueKind::Int), i_(i) {}
Value::Value(double f) : kind_(ValueKind::Float), f_(f) {}
Value::Value(std::string s) : kind_(ValueKind::String), s_(std::move(s)) {}

static int checked_depth(int child_depth) {
    if (child_depth + 1 > kMaxValueDepth)
        raise(ErrorCode::InvalidArgument, "chat template: value nested deeper than {} levels", kMaxValueDepth);
    return child_depth + 1;
}

Value Value::list(ValueList items, bool is_tuple) {
    Value v;
    int d = 0;
    for (const auto& item : items) d = std::max(d, item.depth_);
    v.depth_ = checked_depth(d);
    v.kind_ = ValueKind::List;
    v.is_tuple_ = is_tuple;
    v.list_ = std::make_shared<const ValueList>(std::move(items));
    return v;
}

Value Value::dict(Dict d) {
    Value v;
    int depth = 0;
    for (const auto& [k, e] : d.items()) depth = std::max({depth, k.depth_, e.depth_});
    v.depth_ = checked_depth(depth);
    v.kind_ = ValueKind::Dict;
    v.dict_ = std::make_shared<Dict>(std::move(d));
    return v;
}

Value Value::namespace_(Dict d) {
    Value v = dict(std::move(d));
    v.kind_ = ValueKind::Namespace;
    return v;
}

Value Value::function(std::string name, NativeFunction fn) {
    Value v;
    v.kind_ = ValueKind::Callable;
    v.s_ = std::move(name);
    v.fn_ = std::make_shared<const NativeFunction>(std::move(fn));
    return v;
}

namespace {

// Bounds recursion over values (namespaces are mutable, so they can even hold themselves).
struct RecursionGuard {
    RecursionGuard() {
        if (++depth > 2 * kMaxValueDepth) {
            --depth;
            raise(ErrorCode::InvalidArgument, "chat template: value nested too deeply (or recursive)");
        }
    }
    ~RecursionGuard() { --depth; }
    static thread_local int depth;
};
thread_local int RecursionGuard::depth = 0;

}  // namespace

Value Value::from_json(const nlohmann::ordered_json& j) {
    RecursionGuard guard;
    switch (j.type()) {
        case nlohmann::ordered_json::value_t::null: return none();
        case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
        case nlohmann::ordered_json::value_t::number_integer: return Value(j.get<int64_t>());
        case nlohmann::ordered_json::value_t::number_unsigned: {
            auto u = j.get<uint64_t>();
            if (u > static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
            return Value(static_cast<int64_t>(u));
        }
        case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
        case nlohmann::ordered_json::value_t::string: return Value(j.get<std::string>());
        case nlohmann::ordered_json::value_t::array: {
            ValueList items;
            items.reserve(j.size());
            for (const auto& e : j) items.push_back(from_json(e));
            return list(std::move(items));
        }
        case nlohmann::ordered_json::value_t::object: {
            Dict d;
            for (const auto& [k, e] : j.items()) d.set(Value(k), from_json(e));
            return dict(std::move(d));
        }
        default: raise(ErrorCode::InvalidArgument, "chat template: unsupported JSON value of type {}", j.type_name());
    }
}

// ---- Python semantics ----

bool Value::truthy() const {
    switch (kind_) {
        case ValueKind::Undefined:
        case ValueKind::None: return false;
        case ValueKind::Bool: return b_;
        case ValueKind::Int: return i_ != 0;
        case ValueKind::Float: return f_ != 0.0;
        case ValueKind::String: return !s_.empty();
        case ValueKind::List: return !list_->empty();
        case ValueKind::Dict: return dict_->size() != 0;
        case ValueKind::Callable:
        case ValueKind::Namespace: return true;
    }
    return false;
}

const char* Value::type_name() const {
    switch (kind_) {
        case ValueKind::Undefined: return "Undefined";
        case ValueKind::None: return "NoneType";
        case ValueKind::Bool: return "bool";
        case ValueKind::Int: return "int";
        case ValueKind::Float: return "float";
        case ValueKind::String: return "str";
        case ValueKind::List: return is_tuple_ ? "tuple" : "list";
        case ValueKind::Dict: return "dict";
        case ValueKind::Callable: return "function";
        case ValueKind::Namespace: return "Namespace";
    }
    return "?";
}

std::string format_float(double f) {
    if (std::isnan(f)) return "nan";
    if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
    if (f == 0.0) return std::signbit(f) ? "-0.0" : "0.0";
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::scientific);
    std::string sci(buf, res.ptr);  // "-d.ddde+XX"
    bool negative = sci[0] == '-';
    if (negative) sci.erase(0, 1);
    size_t e = sci.find('e');
    std::string digits = sci.substr(0, e);
    digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
    int exp = std::stoi(sci.substr(e + 1));
    std::string out = negative ? "-" : "";
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            if (static_cast<int>(digits.size()) <= exp + 1) {
                out += digits + std::string(exp + 1 - digits.size(), '0') + ".0";
            } else {
                out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
            }
        } else {
            out += "0." + std::string(-exp - 1, '0') + digits;
        }
        return out;
    }
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += exp < 0 ? "e-" : "e+";
    int a = std::abs(exp);
    if (a < 10) out += "0";
    out += std::to_string(a);
    return out;
}

std::string repr_string(std::string_view s) {
    bool has_single = s.find('\'') != std::string_view::npos;
    bool has_double = s.find('"') != std::string_view::npos;
    char quote = has_single && !has_double ? '"' : '\'';
    std::string out(1, quote);
    for (char32_t c : utf8_decode(s)) {
        if (c == static_cast<char32_t>(quote) || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0xA0) || c == 0xAD) {
            out += fmt::format("\\x{:02x}", static_cast<unsigned>(c));
        } else if (c == 0x2028 || c == 0x2029 || (c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) ||
                   (c >= 0x2060 && c <= 0x206F) || c == 0xFEFF || (c >= 0xD800 && c <= 0xDFFF)) {
            out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
            utf8_append(out, c);
        }
    }
    out += quote;
    return out;
}

std::string Value::str() const {
    switch (kind_) {
        case ValueKind::Undefined: return "";
        case ValueKind::String: return s_;
        default: return repr();
    }
}

std::string Value::repr() const {
    RecursionGuard guard;
    switch (kind_) {
        case ValueKind::Undefined: return "";
        case ValueKind::None: return "None";
        case ValueKind::Bool: return b_ ? "True" : "False";
        case ValueKind::Int: return std::to_string(i_);
        case ValueKind::Float: return format_float(f_);
        case ValueKind::String: return repr_string(s_);
        case ValueKind::List: {
            std::string out = is_tuple_ ? "(" : "[";
            for (size_t i = 0; i < list_->size(); ++i) {
                if (i) out += ", ";
                out += (*list_)[i].repr();
            }
            if (is_tuple_ && list_->size() == 1) out += ",";
            out += is_tuple_ ? ")" : "]";
            return out;
        }
        case ValueKind::Dict:
        case ValueKind::Namespace: {
            std::string out = kind_ == ValueKind::Namespace ? "<Namespace {" : "{";
            bool first = true;
            for (const auto& [k, v] : dict_->items()) {
                if (!first) out += ", ";
                first = false;
                out += k.repr() + ": " + v.repr();
            }
            out += kind_ == ValueKind::Namespace ? "}>" : "}";
            return out;
        }
        case ValueKind::Callable: return "<function " + s_ + ">";
    }
    return "";
}

static void json_string(std::string& out, std::string_view s) {
    out += '"';
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (u < 0x20) out += fmt::format("\\u{:04x}", u);
                else out += c;
        }
    }
    out += '"';
}

static std::string json_key(const Value& k) {
    switch (k.kind()) {
        case ValueKind::String: return k.as_string();
        case ValueKind::None: return "null";
        case ValueKind::Bool: return k.as_bool() ? "true" : "false";
        case ValueKind::Int: return std::to_string(k.as_int());
        case ValueKind::Float: return format_float(k.as_float());
        default: raise(ErrorCode::InvalidArgument, "tojson: keys must be str, int, float, bool or None, not {}",
                       k.type_name());
    }
}

static void json_dump(std::string& out, const Value& v, int indent, int level, bool sort_keys,
                      const std::string& item_sep, const std::string& key_sep) {
    RecursionGuard guard;
    auto newline = [&](int lvl) {
        if (indent < 0) return;
        out += '\n';
        out.append(static_cast<size_t>(indent) * lvl, ' ');
    };
    switch (v.kind()) {
        case ValueKind::None: out += "null"; return;
        case ValueKind::Bool: out += v.as_bool() ? "true" : "false"; return;
        case ValueKind::Int: out += std::to_string(v.as_int()); return;
        case ValueKind::Float: {
            double f = v.as_float();
            out += std::isnan(f) ? "NaN" : std::isinf(f) ? (f < 0 ? "-Infinity" : "Infinity") : format_float(f);
            return;
        }
        case ValueKind::String: json_string(out, v.as_string()); return;
        case ValueKind::List: {
            const auto& items = v.as_list();
            if (items.empty()) {
                out += "[]";
                return;
            }
            out += '[';
            for (size_t i = 0; i < items.size(); ++i) {
                if (i) out += item_sep;
                newline(level + 1);
                json_dump(out, items[i], indent, level + 1, sort_keys, item_sep, key_sep);
            }
            newline(level);
            out += ']';
            return;
        }
        case ValueKind::Dict: {
            std::vector<std::pair<std::string, const Value*>> entries;
            for (const auto& [k, e] : v.as_dict().items()) entries.emplace_back(json_key(k), &e);
            if (entries.empty()) {
                out += "{}";
                return;
            }
            if (sort_keys)
                std::stable_sort(entries.begin(), entries.end(),
                                 [](const auto& a, const auto& b) { return a.first < b.first; });
            out += '{';
            for (size_t i = 0; i < entries.size(); ++i) {
                if (i) out += item_sep;
                newline(level + 1);
                json_string(out, entries[i].first);
                out += key_sep;
                json_dump(out, *entries[i].second, indent, level + 1, sort_keys, item_sep, key_sep);
            }
            newline(level);
            out += '}';
            return;
        }
        default:
            raise(ErrorCode::InvalidArgument, "tojson: Object of type {} is not JSON serializable", v.type_name());
    }
}

std::string Value::to_json(int indent, bool sort_keys, std::string item_sep, std::string key_sep) const {
    if (item_sep.empty()) item_sep = indent < 0 ? ", " : ",";
    if (key_sep.empty()) key_sep = ": ";
    std::string out;
    json_dump(out, *this, indent, 0, sort_keys, item_sep, key_sep);
    return out;
}

bool values_equal(const Value& a, const Value& b) {
    RecursionGuard guard;
    if (a.is_number() && b.is_number()) {
        if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
        return a.as_int() == b.as_int();
    }
    if (a.kind() != b.kind()) return false;
    switch (a.kind()) {
        case ValueKind::Undefined:
        case ValueKind::None: return true;
        case ValueKind::String: return a.as_string() == b.as_string();
        case ValueKind::List: {
            if (a.is_tuple() != b.is_tuple()) return false;
            const auto& x = a.as_list();
            const auto& y = b.as_list();
            if (x.size() != y.size()) return false;
            for (size_t i = 0; i < x.size(); ++i)
                if (!values_equal(x[i], y[i])) return false;
            return true;
        }
        case ValueKind::Dict: {
            const auto& x = a.as_dict();
            const auto& y = b.as_dict();
            if (x.size() != y.size()) return false;
            for (const auto& [k, v] : x.items()) {
                const Value* w = y.find(k);
                if (!w || !values_equal(v, *w)) return false;
            }
            return true;
        }
        case ValueKind::Namespace: return &a.as_dict() == &b.as_dict();
        case ValueKind::Callable: return &a.as_function() == &b.as_function();
        default: return false;
    }
}

int compare_values(const Value& a, const Value& b) {
    RecursionGuard guard;
    if (a.is_number() && b.is_number()) {
        if (a.is_float() || b.is_float()) {
            double x = a.as_float(), y = b.as_float();
            return x < y ? -1 : x > y ? 1 : 0;
        }
        int64_t x = a.as_int(), y = b.as_int();
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.is_string() && b.is_string()) {
        int c = a.as_string().compare(b.as_string());  // UTF-8 byte order == code point order
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
        const auto& x = a.as_list();
        const auto& y = b.as_list();
        for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (values_equal(x[i], y[i])) continue;
            return compare_values(x[i], y[i]);
        }
        return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
    }
    raise(ErrorCode::InvalidArgument, "chat template: '<' not supported between instances of '{}' and '{}'",
          a.type_name(), b.type_name());
}

}  // namespace osprey::tokenizer::jinja
