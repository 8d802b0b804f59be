// Python operators, subscripts, slices, attribute access and the str/dict/list methods templates call.
#include <cmath>

#include "core/error.h"
#include "tokenizer/jinja_interpreter.h"
#include "tokenizer/jinja_strings.h"

namespace osprey::tokenizer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& what) { raise(ErrorCode::InvalidArgument, "chat template: {}", what); }

[[noreturn]] void operand_error(const std::string& op, const Value& a, const Value& b) {
    type_error(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, a.type_name(), b.type_name()));
}

// Python ints are unbounded; ours are 64-bit, so overflow is an error rather than a wrong number.
template <typename Op>
int64_t checked(Op op, int64_t a, int64_t b) {
    int64_t r = 0;
    if (op(a, b, &r)) type_error("integer overflow");
    return r;
}
bool add_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool sub_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool mul_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

int64_t floor_div(int64_t a, int64_t b) {
    if (b == 0) type_error("integer division or modulo by zero");
    if (a == INT64_MIN && b == -1) type_error("integer overflow");
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

int64_t py_mod(int64_t a, int64_t b) {
    if (b == 0) type_error("integer division or modulo by zero");
    if (b == -1) return 0;
    int64_t r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
}

// Positional-or-keyword argument `index`/`name` of a method call.
const Value* arg(const ValueList& args, const KwArgs& kwargs, size_t index, const char* name) {
    if (index < args.size()) return &args[index];
    for (const auto& [k, v] : kwargs)
        if (k == name) return &v;
    return nullptr;
}

std::optional<std::string> opt_string(const Value* v, const char* method) {
    if (!v || v->is_none()) return std::nullopt;
    if (!v->is_string()) type_error(fmt::format("{}() argument must be str or None, not {}", method, v->type_name()));
    return v->as_string();
}

std::string need_string(const Value* v, const char* method) {
    if (!v || !v->is_string()) type_error(fmt::format("{}() needs a str argument", method));
    return v->as_string();
}

Value string_list(std::vector<std::string> parts) {
    ValueList out;
    out.reserve(parts.size());
    for (auto& p : parts) out.emplace_back(std::move(p));
    return Value::list(std::move(out));
}

bool affix_match(const std::string& s, const Value& affix, bool prefix) {
    auto one = [&](const Value& a) {
        if (!a.is_string()) type_error("startswith/endswith first arg must be str or a tuple of str");
        const std::string& x = a.as_string();
        if (x.size() > s.size()) return false;
        return prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
    };
    if (affix.is_list() && affix.is_tuple()) {
        for (const auto& a : affix.as_list())
            if (one(a)) return true;
        return false;
    }
    return one(affix);
}

Value string_method(const Value& self, const std::string& name, ValueList& args, KwArgs& kwargs) {
    const std::string& s = self.as_string();
    auto a0 = arg(args, kwargs, 0, name == "split" || name == "rsplit" ? "sep" : "chars");
    if (name == "strip") return Value(py_strip(s, opt_string(a0, "strip"), StripSide::Both));
    if (name == "lstrip") return Value(py_strip(s, opt_string(a0, "lstrip"), StripSide::Left));
    if (name == "rstrip") return Value(py_strip(s, opt_string(a0, "rstrip"), StripSide::Right));
    if (name == "split" || name == "rsplit") {
        auto sep = opt_string(a0, name.c_str());
        if (sep && sep->empty()) type_error("empty separator");
        const Value* m = arg(args, kwargs, 1, "maxsplit");
        long maxsplit = m ? static_cast<long>(m->as_int()) : -1;
        return string_list(py_split(s, sep, maxsplit, name == "rsplit"));
    }
    if (name == "splitlines") {
        const Value* k = arg(args, kwargs, 0, "keepends");
        return string_list(py_splitlines(s, k && k->truthy()));
    }
    if (name == "startswith" || name == "endswith") {
        if (args.empty()) type_error(name + "() takes at least 1 argument");
        return Value(affix_match(s, args[0], name == "startswith"));
    }
    if (name == "upper") return Value(py_upper(s));
    if (name == "lower") return Value(py_lower(s));
    if (name == "title") return Value(py_title(s));
    if (name == "capitalize") return Value(py_capitalize(s));
    if (name == "replace") {
        if (args.size() < 2) type_error("replace() takes at least 2 arguments");
        long count = args.size() > 2 ? static_cast<long>(args[2].as_int()) : -1;
        return Value(py_replace(s, need_string(&args[0], "replace"), need_string(&args[1], "replace"), count));
    }
    if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
        long r = py_find(s, need_string(args.empty() ? nullptr : &args[0], name.c_str()), name[0] == 'r');
        if (r < 0 && (name == "index" || name == "rindex")) type_error("substring not found");
        return Value(static_cast<int64_t>(r));
    }
    if (name == "count") return Value(static_cast<int64_t>(py_count(s, need_string(args.empty() ? nullptr : &args[0], "count"))));
    if (name == "join") {
        if (args.empty()) type_error("join() takes exactly one argument");
        std::string out;
        bool first = true;
        for (const auto& item : iterate(args[0])) {
            if (!item.is_string()) type_error(fmt::format("sequence item: expected str instance, {} found", item.type_name()));
            if (!first) out += s;
            first = false;
            out += item.as_string();
        }
        return Value(std::move(out));
    }
    if (name == "format") {
        // str.format: {} / {0} / {name} fields without format specs.
        std::string out;
        size_t auto_index = 0;
        for (size_t i = 0; i < s.size(); ++i) {
            char c = s[i];
            if (c == '{' && i + 1 < s.size() && s[i + 1] == '{') {
                out += '{';
                ++i;
            } else if (c == '}' && i + 1 < s.size() && s[i + 1] == '}') {
                out += '}';
                ++i;
            } else if (c == '{') {
                size_t close = s.find('}', i);
                if (close == std::string::npos) type_error("Single '{' encountered in format string");
                std::string field = s.substr(i + 1, close - i - 1);
                if (field.find_first_of(":!") != std::string::npos) type_error("format specs are not supported");
                const Value* v = nullptr;
                if (field.empty()) {
                    v = auto_index < args.size() ? &args[auto_index++] : nullptr;
                } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
                    size_t k = std::stoul(field);
                    v = k < args.size() ? &args[k] : nullptr;
                } else {
                    for (const auto& [k, kv] : kwargs)
                        if (k == field) v = &kv;
                }
                if (!v) type_error("format(): missing argument for '{" + field + "}'");
                out += v->str();
                i = close;
            } else {
                out += c;
            }
        }
        return Value(std::move(out));
    }
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "islower" ||
        name == "isupper") {
        std::u32string u = utf8_decode(s);
        if (u.empty()) return Value(false);
        bool cased = false;
        for (char32_t c : u) {
            bool digit = c >= '0' && c <= '9';
            bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0xC0;
            if (name == "isdigit" && !digit) return Value(false);
            if (name == "isalpha" && !alpha) return Value(false);
            if (name == "isalnum" && !digit && !alpha) return Value(false);
            if (name == "isspace" && !is_py_space(c)) return Value(false);
            std::string one = utf8_encode(std::u32string(1, c));
            if (name == "islower" && py_upper(one) != one) {
                cased = true;
                if (py_lower(one) != one) return Value(false);
            }
            if (name == "isupper" && py_lower(one) != one) {
                cased = true;
                if (py_upper(one) != one) return Value(false);
            }
        }
        return Value(name == "islower" || name == "isupper" ? cased : true);
    }
    type_error("'str' object has no attribute '" + name + "'");
}

Value dict_method(const Value& self, const std::string& name, ValueList& args, KwArgs& kwargs) {
    const Dict& d = self.as_dict();
    if (name == "items") {
        ValueList out;
        for (const auto& [k, v] : d.items()) out.push_back(Value::list({k, v}, true));
        return Value::list(std::move(out));
    }
    if (name == "keys" || name == "values") {
        ValueList out;
        for (const auto& [k, v] : d.items()) out.push_back(name == "keys" ? k : v);
        return Value::list(std::move(out));
    }
    if (name == "get") {
        if (args.empty()) type_error("get expected at least 1 argument");
        const Value* v = d.find(args[0]);
        if (v) return *v;
        return args.size() > 1 ? args[1] : Value::none();
    }
    type_error("'dict' object has no attribute '" + name + "'");
}

Value list_method(const Value& self, const std::string& name, ValueList& args, KwArgs&) {
    const ValueList& l = self.as_list();
    if (args.empty()) type_error(name + "() takes exactly one argument");
    int64_t n = 0;
    for (size_t i = 0; i < l.size(); ++i) {
        if (!values_equal(l[i], args[0])) continue;
        if (name == "index") return Value(static_cast<int64_t>(i));
        ++n;
    }
    if (name == "index") type_error("value is not in list");
    return Value(n);
}

bool is_string_method(const std::string& n) {
    static const char* const names[] = {"strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith",
                                         "endswith", "upper", "lower", "title", "capitalize", "replace", "find",
                                         "rfind", "index", "rindex", "count", "join", "format", "isdigit",
                                         "isalpha", "isalnum", "isspace", "islower", "isupper"};
    for (const char* x : names)
        if (n == x) return true;
    return false;
}

bool is_dict_method(const std::string& n) { return n == "items" || n == "keys" || n == "values" || n == "get"; }

bool is_unsafe_dict_method(const std::string& n) {
    return n == "pop" || n == "popitem" || n == "update" || n == "setdefault" || n == "clear" || n == "copy" ||
           n == "fromkeys";
}

Value bind(const Value& self, const std::string& name,
           Value (*method)(const Value&, const std::string&, ValueList&, KwArgs&)) {
    return Value::function(name, [self, name, method](Interpreter&, ValueList& args, KwArgs& kwargs) {
        return method(self, name, args, kwargs);
    });
}

Value unsafe(const Value& obj, const std::string& name) {
    return Value::undefined(fmt::format("access to attribute '{}' of '{}' object is unsafe", name, obj.type_name()));
}

std::string undefined_attr_hint(const Value& obj, const std::string& name) {
    return fmt::format("'{}' has no attribute '{}'", obj.is_dict() ? "dict object" : obj.type_name(), name);
}

int64_t clamp_index(int64_t i, int64_t n, bool negative_step) {
    if (i < 0) {
        i += n;
        if (i < 0) i = negative_step ? -1 : 0;
    } else if (i >= n) {
        i = negative_step ? n - 1 : n;
    }
    return i;
}

}  // namespace

void throw_undefined(const Value& v) {
    raise(ErrorCode::InvalidArgument, "chat template: {}", v.name().empty() ? "undefined value" : v.name());
}

std::vector<Value> iterate(const Value& v) {
    switch (v.kind()) {
        case ValueKind::Undefined: return {};
        case ValueKind::List: return v.as_list();
        case ValueKind::Dict: {
            std::vector<Value> keys;
            for (const auto& [k, e] : v.as_dict().items()) keys.push_back(k);
            return keys;
        }
        case ValueKind::String: {
            if (v.as_string().size() > kMaxSequenceItems) type_error("string too long to iterate over");
            std::vector<Value> chars;
            for (char32_t c : utf8_decode(v.as_string())) chars.emplace_back(utf8_encode(std::u32string(1, c)));
            return chars;
        }
        default: type_error(fmt::format("'{}' object is not iterable", v.type_name()));
    }
}

bool contains(const Value& container, const Value& item) {
    switch (container.kind()) {
        case ValueKind::Undefined: return false;
        case ValueKind::String:
            if (!item.is_string())
                type_error(fmt::format("'in <string>' requires string as left operand, not {}", item.type_name()));
            return container.as_string().find(item.as_string()) != std::string::npos;
        case ValueKind::List:
            for (const auto& e : container.as_list())
                if (values_equal(e, item)) return true;
            return false;
        case ValueKind::Dict:
        case ValueKind::Namespace: return container.as_dict().find(item) != nullptr;
        default: type_error(fmt::format("argument of type '{}' is not iterable", container.type_name()));
    }
}

Value binary_op(const std::string& op, const Value& a, const Value& b, size_t max_bytes) {
    if (op == "~") {
        std::string sa = a.str(), sb = b.str();
        if (sa.size() + sb.size() > max_bytes) type_error("string too long");
        return Value(sa + sb);
    }
    if (a.is_undefined()) throw_undefined(a);
    if (b.is_undefined()) throw_undefined(b);
    bool ints = a.is_int() && b.is_int();
    bool nums = a.is_number() && b.is_number();
    if (op == "+") {
        if (ints) return Value(checked(add_overflow, a.as_int(), b.as_int()));
        if (nums) return Value(a.as_float() + b.as_float());
        if (a.is_string() && b.is_string()) {
            if (a.as_string().size() + b.as_string().size() > max_bytes) type_error("string too long");
            return Value(a.as_string() + b.as_string());
        }
        if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
            if (a.as_list().size() + b.as_list().size() > kMaxSequenceItems) type_error("list too long");
            ValueList out = a.as_list();
            out.insert(out.end(), b.as_list().begin(), b.as_list().end());
            return Value::list(std::move(out), a.is_tuple());
        }
        operand_error(op, a, b);
    }
    if (op == "-") {
        if (ints) return Value(checked(sub_overflow, a.as_int(), b.as_int()));
        if (nums) return Value(a.as_float() - b.as_float());
        operand_error(op, a, b);
    }
    if (op == "*") {
        if (ints) return Value(checked(mul_overflow, a.as_int(), b.as_int()));
        if (nums) return Value(a.as_float() * b.as_float());
        const Value& seq = a.is_int() ? b : a;
        const Value& times = a.is_int() ? a : b;
        if (times.is_int() && (seq.is_string() || seq.is_list())) {
            int64_t n = std::max<int64_t>(0, times.as_int());
            size_t unit = seq.is_string() ? seq.as_string().size() : seq.as_list().size();
            size_t limit = seq.is_string() ? max_bytes : kMaxSequenceItems;
            if (unit != 0 && static_cast<uint64_t>(n) > limit / unit) type_error("repeated sequence too long");
            if (seq.is_string()) {
                std::string out;
                for (int64_t i = 0; i < n; ++i) out += seq.as_string();
                return Value(std::move(out));
            }
            ValueList out;
            for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
            return Value::list(std::move(out), seq.is_tuple());
        }
        operand_error(op, a, b);
    }
    if (op == "/") {
        if (!nums) operand_error(op, a, b);
        if (b.as_float() == 0.0) type_error("division by zero");
        return Value(a.as_float() / b.as_float());
    }
    if (op == "//") {
        if (ints) return Value(floor_div(a.as_int(), b.as_int()));
        if (!nums) operand_error(op, a, b);
        if (b.as_float() == 0.0) type_error("float floor division by zero");
        return Value(std::floor(a.as_float() / b.as_float()));
    }
    if (op == "%") {
        if (a.is_string()) return percent_format(a.as_string(), b);
        if (ints) return Value(py_mod(a.as_int(), b.as_int()));
        if (!nums) operand_error(op, a, b);
        double x = a.as_float(), y = b.as_float();
        if (y == 0.0) type_error("float modulo");
        double m = std::fmod(x, y);
        if (m != 0.0 && ((m < 0) != (y < 0))) m += y;
        return Value(m);
    }
    if (op == "**") {
        if (ints && b.as_int() >= 0) {
            int64_t base = a.as_int(), result = 1;
            for (int64_t e = b.as_int(); e > 0; --e) {
                result = checked(mul_overflow, result, base);
                if (result == 0 || result == 1) break;
                if (result == -1 && base == -1) {
                    result = (e - 1) % 2 == 0 ? -1 : 1;
                    break;
                }
            }
            return Value(result);
        }
        if (!nums) operand_error("** or pow()", a, b);
        return Value(std::pow(a.as_float(), b.as_float()));
    }
    type_error("unknown operator " + op);
}

Value get_attr(const Value& obj, const std::string& name) {
    switch (obj.kind()) {
        case ValueKind::Undefined: throw_undefined(obj);
        case ValueKind::String:
            if (is_string_method(name)) return bind(obj, name, string_method);
            break;
        case ValueKind::Dict:
            if (is_dict_method(name)) return bind(obj, name, dict_method);
            if (is_unsafe_dict_method(name)) return unsafe(obj, name);
            if (const Value* v = obj.as_dict().find(std::string_view(name))) return *v;
            break;
        case ValueKind::Namespace:
            if (const Value* v = obj.as_dict().find(std::string_view(name))) return *v;
            break;
        case ValueKind::List:
            if (name == "index" || name == "count") return bind(obj, name, list_method);
            if (name == "append" || name == "pop" || name == "extend" || name == "insert" || name == "remove" ||
                name == "sort" || name == "reverse" || name == "clear")
                return unsafe(obj, name);
            break;
        default: break;
    }
    return Value::undefined(undefined_attr_hint(obj, name));
}

Value get_item(const Value& obj, const Value& key) {
    switch (obj.kind()) {
        case ValueKind::Undefined: throw_undefined(obj);
        case ValueKind::Dict:
        case ValueKind::Namespace:
            if (const Value* v = obj.as_dict().find(key)) return *v;
            break;
        case ValueKind::List:
            if (key.is_int()) {
                auto n = static_cast<int64_t>(obj.as_list().size());
                int64_t i = key.as_int() < 0 ? key.as_int() + n : key.as_int();
                if (i >= 0 && i < n) return obj.as_list()[static_cast<size_t>(i)];
                return Value::undefined(fmt::format("{} object has no element {}", obj.type_name(), key.as_int()));
            }
            break;
        case ValueKind::String:
            if (key.is_int()) {
                std::u32string u = utf8_decode(obj.as_string());
                auto n = static_cast<int64_t>(u.size());
                int64_t i = key.as_int() < 0 ? key.as_int() + n : key.as_int();
                if (i >= 0 && i < n) return Value(utf8_encode(std::u32string(1, u[static_cast<size_t>(i)])));
                return Value::undefined(fmt::format("str object has no element {}", key.as_int()));
            }
            break;
        default: break;
    }
    if (key.is_string()) return get_attr(obj, key.as_string());
    return Value::undefined(fmt::format("{} object has no element {}", obj.type_name(), key.repr()));
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
    if (obj.is_undefined()) throw_undefined(obj);
    if (!obj.is_list() && !obj.is_string()) return Value::undefined(fmt::format("{} object is not subscriptable", obj.type_name()));
    auto as_index = [](const Value& v) {
        if (!v.is_none() && !v.is_int()) type_error("slice indices must be integers or None");
    };
    as_index(start);
    as_index(stop);
    as_index(step);
    int64_t st = step.is_none() ? 1 : step.as_int();
    if (st == 0) type_error("slice step cannot be zero");
    std::u32string u;
    int64_t n;
    if (obj.is_string()) {
        u = utf8_decode(obj.as_string());
        n = static_cast<int64_t>(u.size());
    } else {
        n = static_cast<int64_t>(obj.as_list().size());
    }
    int64_t b = start.is_none() ? (st < 0 ? n - 1 : 0) : clamp_index(start.as_int(), n, st < 0);
    int64_t e = stop.is_none() ? (st < 0 ? -1 : n) : clamp_index(stop.as_int(), n, st < 0);
    std::vector<size_t> picks;
    for (int64_t i = b; st > 0 ? i < e : i > e; i += st) picks.push_back(static_cast<size_t>(i));
    if (obj.is_string()) {
        std::u32string out;
        for (size_t i : picks) out.push_back(u[i]);
        return Value(utf8_encode(out));
    }
    ValueList out;
    for (size_t i : picks) out.push_back(obj.as_list()[i]);
    return Value::list(std::move(out), obj.is_tuple());
}

}  // namespace osprey::tokenizer::jinja
