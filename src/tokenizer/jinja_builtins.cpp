// jinja2's built-in filters and tests, transformers' globals (raise_exception, strftime_now, namespace, dict)
// and Python %-formatting.
#include <algorithm>
#include <cmath>
#include <ctime>

#include "core/error.h"
#include "tokenizer/jinja_interpreter.h"
#include "tokenizer/jinja_strings.h"

namespace osprey::tokenizer::jinja {

namespace {

constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

[[noreturn]] void fail(const std::string& what) { raise(ErrorCode::InvalidArgument, "chat template: {}", what); }

// Argument `index` (positional) or `name` (keyword) of a filter call, or nullptr.
const Value* param(const ValueList& args, const KwArgs& kwargs, size_t index, const char* name) {
    if (index < args.size()) return &args[index];
    for (const auto& [k, v] : kwargs)
        if (k == name) return &v;
    return nullptr;
}

bool flag(const ValueList& args, const KwArgs& kwargs, size_t index, const char* name) {
    const Value* v = param(args, kwargs, index, name);
    return v && v->truthy();
}

// Follows a dotted attribute path ("a.b", "items.0") the way jinja2's make_attrgetter does.
Value attribute_path(const Value& item, const std::string& path) {
    Value v = item;
    size_t start = 0;
    while (start <= path.size()) {
        size_t dot = path.find('.', start);
        std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
        v = numeric ? get_item(v, Value(static_cast<int64_t>(std::stoll(part)))) : get_item(v, Value(part));
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    return v;
}

Value length_of(const Value& v) {
    switch (v.kind()) {
        case ValueKind::Undefined: return Value(int64_t{0});
        case ValueKind::String: return Value(static_cast<int64_t>(py_len(v.as_string())));
        case ValueKind::List: return Value(static_cast<int64_t>(v.as_list().size()));
        case ValueKind::Dict: return Value(static_cast<int64_t>(v.as_dict().size()));
        default: fail(fmt::format("object of type '{}' has no len()", v.type_name()));
    }
}

// Sort key: strings fold case unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
    if (!case_sensitive && v.is_string()) return Value(py_lower(v.as_string()));
    return v;
}

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&#34;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

std::string ascii_json(const std::string& s) {  // ensure_ascii=True: escape non-ASCII as \uXXXX
    std::string out;
    for (char32_t c : utf8_decode(s)) {
        if (c < 0x80) {
            out += static_cast<char>(c);
        } else if (c < 0x10000) {
            out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
            char32_t v = c - 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", static_cast<unsigned>(0xD800 + (v >> 10)),
                               static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
        }
    }
    return out;
}

// Python int(str): optional sign, digits, underscores between digits, surrounding whitespace.
bool parse_int(const std::string& text, int base, int64_t& out) {
    std::string s = py_strip(text, std::nullopt, StripSide::Both);
    if (s.empty()) return false;
    size_t i = 0;
    bool neg = false;
    if (s[0] == '+' || s[0] == '-') {
        neg = s[0] == '-';
        ++i;
    }
    if (i >= s.size()) return false;
    std::string digits;
    for (; i < s.size(); ++i) {
        if (s[i] == '_' && !digits.empty() && i + 1 < s.size() && s[i + 1] != '_') continue;
        digits += s[i];
    }
    try {
        size_t used = 0;
        long long v = std::stoll(digits, &used, base);
        if (used != digits.size() || digits[0] == '+' || digits[0] == '-' || std::isspace(static_cast<unsigned char>(digits[0])))
            return false;
        out = neg ? -v : v;
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

bool parse_float(const std::string& text, double& out) {
    std::string s = py_strip(text, std::nullopt, StripSide::Both);
    std::string lower = py_lower(s);
    if (lower == "inf" || lower == "+inf" || lower == "infinity" || lower == "+infinity") return out = INFINITY, true;
    if (lower == "-inf" || lower == "-infinity") return out = -INFINITY, true;
    if (lower == "nan" || lower == "+nan" || lower == "-nan") return out = NAN, true;
    if (s.empty() || lower.find_first_of("xp") != std::string::npos) return false;
    try {
        size_t used = 0;
        out = std::stod(s, &used);
        return used == s.size();
    } catch (const std::exception&) {
        return false;
    }
}

double py_round(double x, int64_t ndigits) {
    if (!std::isfinite(x)) return x;
    if (ndigits == 0) return std::nearbyint(x);  // round-half-even, like Python
    if (ndigits > 300 || ndigits < -300) return ndigits > 0 ? x : 0.0 * x;
    if (ndigits > 0) {  // correctly rounded decimal, like Python's round()
        char buf[512];
        std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(ndigits), x);
        return std::strtod(buf, nullptr);
    }
    double p = std::pow(10.0, static_cast<double>(-ndigits));
    return std::nearbyint(x / p) * p;
}

std::string indent_text(const std::string& s, const std::string& indention, bool first, bool blank) {
    std::vector<std::string> lines = py_splitlines(s + "\n", false);
    std::string rv;
    if (blank) {
        for (size_t i = 0; i < lines.size(); ++i) {
            if (i) rv.append("\n").append(indention);
            rv.append(lines[i]);
        }
    } else {
        rv = lines.empty() ? "" : lines[0];
        for (size_t i = 1; i < lines.size(); ++i) {
            rv.append("\n");
            if (!lines[i].empty()) rv.append(indention).append(lines[i]);
        }
    }
    return first ? indention + rv : rv;
}

std::string jinja_title(const std::string& s) {
    std::u32string u = utf8_decode(s);
    auto is_sep = [](char32_t c) { return is_py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<'; };
    std::string out;
    size_t i = 0;
    while (i < u.size()) {
        size_t j = i;
        bool sep = is_sep(u[i]);
        while (j < u.size() && is_sep(u[j]) == sep) ++j;
        std::string chunk = utf8_encode(std::u32string_view(u).substr(i, j - i));
        std::string head = utf8_encode(std::u32string_view(u).substr(i, 1));
        out += py_upper(head) + py_lower(chunk.substr(head.size()));
        i = j;
    }
    return out;
}

Value select_filter(Interpreter& in, const std::string& name, const Value& seq, ValueList& args, KwArgs& kwargs) {
    bool by_attr = name == "selectattr" || name == "rejectattr";
    bool keep_if = name == "select" || name == "selectattr";
    size_t at = 0;
    std::string attr;
    if (by_attr) {
        if (args.empty() || !args[0].is_string()) fail(name + " needs an attribute name");
        attr = args[0].as_string();
        at = 1;
    }
    std::string test = at < args.size() ? args[at].str() : "";
    ValueList test_args(args.begin() + static_cast<long>(std::min(args.size(), at + 1)), args.end());
    ValueList out;
    for (const auto& item : iterate(seq)) {
        in.step();
        Value subject = by_attr ? attribute_path(item, attr) : item;
        bool r = test.empty() ? subject.truthy() : apply_test(in, test, subject, test_args);
        if (r == keep_if) out.push_back(item);
    }
    return Value::list(std::move(out));
}

Value map_filter(Interpreter& in, const Value& seq, ValueList& args, KwArgs& kwargs) {
    ValueList out;
    const Value* attribute = param({}, kwargs, 0, "attribute");
    if (attribute) {
        const Value* dflt = param({}, kwargs, 0, "default");
        for (const auto& item : iterate(seq)) {
            Value v = attribute_path(item, attribute->str());
            out.push_back(v.is_undefined() && dflt ? *dflt : v);
        }
        return Value::list(std::move(out));
    }
    if (args.empty()) fail("map() needs a filter name or attribute=");
    std::string filter = args[0].str();
    ValueList rest(args.begin() + 1, args.end());
    for (const auto& item : iterate(seq)) {
        ValueList a = rest;
        KwArgs k = kwargs;
        out.push_back(apply_filter(in, filter, item, a, k));
    }
    return Value::list(std::move(out));
}

Value sort_filter(const Value& seq, ValueList& args, KwArgs& kwargs) {
    bool reverse = flag(args, kwargs, 0, "reverse");
    bool case_sensitive = flag(args, kwargs, 1, "case_sensitive");
    const Value* attribute = param(args, kwargs, 2, "attribute");
    ValueList items = iterate(seq);
    std::vector<std::pair<Value, Value>> keyed;
    for (auto& item : items)
        keyed.emplace_back(sort_key(attribute ? attribute_path(item, attribute->str()) : item, case_sensitive), item);
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
        return reverse ? compare_values(b.first, a.first) < 0 : compare_values(a.first, b.first) < 0;
    });
    ValueList out;
    for (auto& [k, v] : keyed) out.push_back(std::move(v));
    return Value::list(std::move(out));
}

}  // namespace

Value apply_filter(Interpreter& in, const std::string& name, const Value& v, ValueList& args, KwArgs& kwargs) {
    if (name == "default" || name == "d") {
        const Value* dflt = param(args, kwargs, 0, "default_value");
        bool boolean = flag(args, kwargs, 1, "boolean");
        if (v.is_undefined() || (boolean && !v.truthy())) return dflt ? *dflt : Value(std::string());
        return v;
    }
    if (name == "length" || name == "count") return length_of(v);
    if (name == "trim") {
        const Value* chars = param(args, kwargs, 0, "chars");
        return Value(py_strip(v.str(), chars && !chars->is_none() ? std::optional(chars->str()) : std::nullopt,
                              StripSide::Both));
    }
    if (name == "upper") return Value(py_upper(v.str()));
    if (name == "lower") return Value(py_lower(v.str()));
    if (name == "capitalize") return Value(py_capitalize(v.str()));
    if (name == "title") return Value(jinja_title(v.str()));
    if (name == "string" || name == "safe") return Value(v.str());
    if (name == "escape" || name == "e" || name == "forceescape") return Value(html_escape(v.str()));
    if (name == "first" || name == "last") {
        ValueList items = iterate(v);
        if (items.empty()) return Value::undefined(fmt::format("No {} item, sequence was empty.", name));
        return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
        const Value* sep = param(args, kwargs, 0, "d");
        const Value* attribute = param(args, kwargs, 1, "attribute");
        std::string out;
        bool first = true;
        for (const auto& item : iterate(v)) {
            if (!first) out += sep ? sep->str() : "";
            first = false;
            out += (attribute ? attribute_path(item, attribute->str()) : item).str();
            in.check_size(out.size());
        }
        return Value(std::move(out));
    }
    if (name == "tojson") {
        const Value* ensure_ascii = param(args, kwargs, 0, "ensure_ascii");
        const Value* indent = param(args, kwargs, 1, "indent");
        const Value* separators = param(args, kwargs, 2, "separators");
        bool sort_keys = flag(args, kwargs, 3, "sort_keys");
        std::string item_sep, key_sep;
        if (separators && separators->is_list() && separators->as_list().size() == 2) {
            item_sep = separators->as_list()[0].str();
            key_sep = separators->as_list()[1].str();
        }
        int ind = indent && !indent->is_none() ? static_cast<int>(std::clamp<int64_t>(indent->as_int(), 0, 64)) : -1;
        std::string out = v.to_json(ind, sort_keys, item_sep, key_sep);
        return Value(ensure_ascii && ensure_ascii->truthy() ? ascii_json(out) : out);
    }
    if (name == "list") return Value::list(iterate(v));
    if (name == "items") {
        if (v.is_undefined()) return Value::list({});
        if (!v.is_dict()) fail("items(): can only get item pairs from a mapping");
        ValueList out;
        for (const auto& [k, e] : v.as_dict().items()) out.push_back(Value::list({k, e}, true));
        return Value::list(std::move(out));
    }
    if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject")
        return select_filter(in, name, v, args, kwargs);
    if (name == "map") return map_filter(in, v, args, kwargs);
    if (name == "replace") {
        if (args.size() < 2) fail("replace filter needs old and new");
        const Value* count = param(args, kwargs, 2, "count");
        return Value(py_replace(v.str(), args[0].str(), args[1].str(),
                                count && !count->is_none() ? static_cast<long>(count->as_int()) : -1));
    }
    if (name == "int") {
        const Value* dflt = param(args, kwargs, 0, "default");
        const Value* base = param(args, kwargs, 1, "base");
        Value fallback = dflt ? *dflt : Value(int64_t{0});
        if (v.is_int()) return Value(v.as_int());
        if (v.is_float()) return std::isfinite(v.as_float()) ? Value(static_cast<int64_t>(v.as_float())) : fallback;
        if (v.is_string()) {
            int64_t i;
            if (parse_int(v.as_string(), base ? static_cast<int>(base->as_int()) : 10, i)) return Value(i);
            double f;
            if (parse_float(v.as_string(), f) && std::isfinite(f)) return Value(static_cast<int64_t>(f));
        }
        return fallback;
    }
    if (name == "float") {
        const Value* dflt = param(args, kwargs, 0, "default");
        if (v.is_number()) return Value(v.as_float());
        double f;
        if (v.is_string() && parse_float(v.as_string(), f)) return Value(f);
        return dflt ? *dflt : Value(0.0);
    }
    if (name == "round") {
        const Value* precision = param(args, kwargs, 0, "precision");
        const Value* method = param(args, kwargs, 1, "method");
        int64_t p = precision ? precision->as_int() : 0;
        std::string m = method ? method->str() : "common";
        if (m != "common" && m != "ceil" && m != "floor") fail("method must be common, ceil or floor");
        if (!v.is_number()) fail(fmt::format("type {} doesn't define __round__", v.type_name()));
        if (m == "common") return v.is_float() ? Value(py_round(v.as_float(), p)) : Value(v.as_int());
        double scale = std::pow(10.0, static_cast<double>(p));
        double x = v.as_float() * scale;
        return Value((m == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
    }
    if (name == "abs") {
        if (v.is_float()) return Value(std::fabs(v.as_float()));
        if (v.is_int()) return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
        fail(fmt::format("bad operand type for abs(): '{}'", v.type_name()));
    }
    if (name == "unique") {
        bool case_sensitive = flag(args, kwargs, 0, "case_sensitive");
        const Value* attribute = param(args, kwargs, 1, "attribute");
        ValueList out, seen;
        for (const auto& item : iterate(v)) {
            Value key = sort_key(attribute ? attribute_path(item, attribute->str()) : item, case_sensitive);
            if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return values_equal(s, key); })) {
                seen.push_back(key);
                out.push_back(item);
            }
        }
        return Value::list(std::move(out));
    }
    if (name == "reverse") {
        if (v.is_string()) {
            std::u32string u = utf8_decode(v.as_string());
            std::reverse(u.begin(), u.end());
            return Value(utf8_encode(u));
        }
        ValueList items = iterate(v);
        std::reverse(items.begin(), items.end());
        return Value::list(std::move(items));
    }
    if (name == "sort") return sort_filter(v, args, kwargs);
    if (name == "dictsort") {
        if (!v.is_dict()) fail("dictsort: value is not a dict");
        bool case_sensitive = flag(args, kwargs, 0, "case_sensitive");
        const Value* by = param(args, kwargs, 1, "by");
        bool reverse = flag(args, kwargs, 2, "reverse");
        size_t pos = by && by->str() == "value" ? 1 : 0;
        std::vector<std::pair<Value, Value>> entries(v.as_dict().items().begin(), v.as_dict().items().end());
        std::stable_sort(entries.begin(), entries.end(), [&](const auto& a, const auto& b) {
            Value ka = sort_key(pos ? a.second : a.first, case_sensitive);
            Value kb = sort_key(pos ? b.second : b.first, case_sensitive);
            return reverse ? compare_values(kb, ka) < 0 : compare_values(ka, kb) < 0;
        });
        ValueList out;
        for (auto& [k, e] : entries) out.push_back(Value::list({k, e}, true));
        return Value::list(std::move(out));
    }
    if (name == "indent") {
        const Value* width = param(args, kwargs, 0, "width");
        std::string indention = width && width->is_string() ? width->as_string()
                                                            : std::string(width ? std::clamp<int64_t>(width->as_int(), 0, 1024) : 4, ' ');
        return Value(indent_text(v.str(), indention, flag(args, kwargs, 1, "first"), flag(args, kwargs, 2, "blank")));
    }
    if (name == "center") {
        const Value* width = param(args, kwargs, 0, "width");
        int64_t w = width ? std::min<int64_t>(width->as_int(), 1 << 20) : 80;
        std::string s = v.str();
        auto n = static_cast<int64_t>(py_len(s));
        if (w <= n) return Value(s);
        int64_t pad = w - n, left = pad / 2 + (pad & w & 1);
        return Value(std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(pad - left), ' '));
    }
    if (name == "wordcount") {
        int64_t n = 0;
        bool in_word = false;
        for (char32_t c : utf8_decode(v.str())) {
            bool w = c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0xC0;
            if (w && !in_word) ++n;
            in_word = w;
        }
        return Value(n);
    }
    if (name == "sum") {
        const Value* attribute = param(args, kwargs, 0, "attribute");
        const Value* start = param(args, kwargs, 1, "start");
        Value total = start ? *start : Value(int64_t{0});
        for (const auto& item : iterate(v))
            total = binary_op("+", total, attribute ? attribute_path(item, attribute->str()) : item,
                              in.limits().max_output_bytes);
        return total;
    }
    if (name == "min" || name == "max") {
        bool case_sensitive = flag(args, kwargs, 0, "case_sensitive");
        const Value* attribute = param(args, kwargs, 1, "attribute");
        ValueList items = iterate(v);
        if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
        size_t best = 0;
        for (size_t i = 1; i < items.size(); ++i) {
            Value a = sort_key(attribute ? attribute_path(items[i], attribute->str()) : items[i], case_sensitive);
            Value b = sort_key(attribute ? attribute_path(items[best], attribute->str()) : items[best], case_sensitive);
            int c = compare_values(a, b);
            if (name == "min" ? c < 0 : c > 0) best = i;
        }
        return items[best];
    }
    if (name == "attr") {
        if (args.empty()) fail("attr filter needs a name");
        if (v.is_dict() && !(args[0].str() == "items" || args[0].str() == "keys" || args[0].str() == "values" || args[0].str() == "get"))
            return Value::undefined(fmt::format("'dict object' has no attribute '{}'", args[0].str()));
        return get_attr(v, args[0].str());
    }
    if (name == "format") {
        if (!kwargs.empty()) {
            Dict d;
            for (const auto& [k, e] : kwargs) d.set(Value(k), e);
            return percent_format(v.str(), Value::dict(std::move(d)));
        }
        return percent_format(v.str(), Value::list(args, true));
    }
    fail("no filter named '" + name + "'");
}

bool apply_test(Interpreter& in, const std::string& name, const Value& v, ValueList& args) {
    auto need_arg = [&]() -> const Value& {
        if (args.empty()) fail("test '" + name + "' needs an argument");
        return args[0];
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "boolean") return v.is_bool();
    if (name == "true") return v.is_bool() && v.as_bool();
    if (name == "false") return v.is_bool() && !v.as_bool();
    if (name == "integer") return v.kind() == ValueKind::Int;
    if (name == "float") return v.is_float();
    if (name == "number") return v.is_number();
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_dict();
    if (name == "sequence") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
    if (name == "iterable") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
    if (name == "callable") return v.is_callable();
    if (name == "odd" || name == "even") {
        if (!v.is_int()) fail("odd/even test needs an integer");
        return (v.as_int() % 2 != 0) == (name == "odd");
    }
    if (name == "divisibleby") {
        const Value& n = need_arg();
        if (!v.is_int() || !n.is_int() || n.as_int() == 0) fail("divisibleby needs non-zero integers");
        return v.as_int() % n.as_int() == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return values_equal(v, need_arg());
    if (name == "ne" || name == "!=") return !values_equal(v, need_arg());
    if (name == "lt" || name == "lessthan" || name == "<") return compare_values(v, need_arg()) < 0;
    if (name == "le" || name == "<=") return compare_values(v, need_arg()) <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return compare_values(v, need_arg()) > 0;
    if (name == "ge" || name == ">=") return compare_values(v, need_arg()) >= 0;
    if (name == "in") return contains(need_arg(), v);
    if (name == "sameas") {
        const Value& o = need_arg();
        if (v.kind() != o.kind()) return false;
        if (v.is_none() || v.is_bool() || v.is_int() || v.is_string()) return values_equal(v, o);
        return false;
    }
    if (name == "lower") return py_lower(v.str()) == v.str() && py_upper(v.str()) != v.str();
    if (name == "upper") return py_upper(v.str()) == v.str() && py_lower(v.str()) != v.str();
    if (name == "escaped") return false;
    (void)in;
    fail("no test named '" + name + "'");
}

void add_globals(Frame& frame) {
    frame.set("range", Value::function("range", [](Interpreter&, ValueList& args, KwArgs&) -> Value {
        if (args.empty() || args.size() > 3) fail("range expected 1 to 3 arguments");
        for (const auto& a : args)
            if (!a.is_int()) fail(fmt::format("'{}' object cannot be interpreted as an integer", a.type_name()));
        int64_t start = args.size() > 1 ? args[0].as_int() : 0;
        int64_t stop = args.size() > 1 ? args[1].as_int() : args[0].as_int();
        int64_t step = args.size() > 2 ? args[2].as_int() : 1;
        if (step == 0) fail("range() arg 3 must not be zero");
        double n = std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step));
        if (n > static_cast<double>(kMaxRange))
            fail(fmt::format("Range too big. The sandbox blocks ranges larger than MAX_RANGE ({}).", kMaxRange));
        ValueList out;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
        return Value::list(std::move(out));
    }));
    auto make_dict = [](ValueList& args, KwArgs& kwargs) {
        Dict d;
        if (!args.empty()) {
            if (args[0].is_dict()) {
                for (const auto& [k, v] : args[0].as_dict().items()) d.set(k, v);
            } else {
                for (const auto& pair : iterate(args[0])) {
                    auto kv = iterate(pair);
                    if (kv.size() != 2) fail("dictionary update sequence element has wrong length");
                    d.set(kv[0], kv[1]);
                }
            }
        }
        for (const auto& [k, v] : kwargs) d.set(Value(k), v);
        return d;
    };
    frame.set("dict", Value::function("dict", [make_dict](Interpreter&, ValueList& args, KwArgs& kwargs) {
        return Value::dict(make_dict(args, kwargs));
    }));
    frame.set("namespace", Value::function("namespace", [make_dict](Interpreter& in, ValueList& args, KwArgs& kwargs) {
        Dict d = make_dict(args, kwargs);
        for (const auto& [k, v] : d.items())
            if (k.is_string() && !k.as_string().empty() && k.as_string()[0] == '_')
                fail("Chat templates cannot store underscore-prefixed attributes on a namespace");
        Value ns = Value::namespace_(std::move(d));
        in.track_namespace(ns);
        return ns;
    }));
    frame.set("raise_exception", Value::function("raise_exception", [](Interpreter&, ValueList& args, KwArgs&) -> Value {
        raise(ErrorCode::InvalidArgument, "chat template raised an exception: {}", args.empty() ? "" : args[0].str());
    }));
    frame.set("strftime_now", Value::function("strftime_now", [](Interpreter&, ValueList& args, KwArgs&) -> Value {
        if (args.empty() || !args[0].is_string()) fail("strftime_now needs a format string");
        std::time_t now = std::time(nullptr);
        std::tm tm{};
        localtime_r(&now, &tm);
        char buf[512];
        size_t n = std::strftime(buf, sizeof(buf), args[0].as_string().c_str(), &tm);
        return Value(std::string(buf, n));
    }));
}

}  // namespace osprey::tokenizer::jinja
