// Value: the dynamic value of the Jinja2 interpreter that renders chat templates.
// It mirrors the Python objects jinja2 works on (None, bool, int, float, str, list/tuple, dict, callables,
// namespaces, Undefined) closely enough that printing, truthiness, comparison and JSON output match Python.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace osprey::tokenizer::jinja {

// Deepest nesting of lists/dicts a value may have (inputs and values built by templates).
constexpr int kMaxValueDepth = 512;
// Most items a list built while rendering may hold (a Value is ~100 bytes; this bounds memory, not output).
constexpr size_t kMaxSequenceItems = size_t{1} << 20;

enum class ValueKind { Undefined, None, Bool, Int, Float, String, List, Dict, Callable, Namespace };

class Value;
class Interpreter;

using ValueList = std::vector<Value>;
// Keyword arguments of a call, in call order.
using KwArgs = std::vector<std::pair<std::string, Value>>;
using NativeFunction = std::function<Value(Interpreter&, ValueList& args, KwArgs& kwargs)>;

class Dict;

class Value {
  public:
    Value() = default;  // Undefined
    static Value undefined(std::string hint = {});
    static Value none();
    Value(bool b);
    Value(int64_t i);
    Value(int i) : Value(static_cast<int64_t>(i)) {}
    Value(double f);
    Value(std::string s);
    Value(const char* s) : Value(std::string(s)) {}
    static Value list(ValueList items, bool is_tuple = false);
    static Value dict(Dict d);
    static Value namespace_(Dict d);
    static Value function(std::string name, NativeFunction fn);
    static Value from_json(const nlohmann::ordered_json& j);

    ValueKind kind() const { return kind_; }
    bool is_undefined() const { return kind_ == ValueKind::Undefined; }
    bool is_none() const { return kind_ == ValueKind::None; }
    bool is_bool() const { return kind_ == ValueKind::Bool; }
    bool is_int() const { return kind_ == ValueKind::Int || kind_ == ValueKind::Bool; }  // Python: bool is an int
    bool is_float() const { return kind_ == ValueKind::Float; }
    bool is_number() const { return is_int() || is_float(); }
    bool is_string() const { return kind_ == ValueKind::String; }
    bool is_list() const { return kind_ == ValueKind::List; }
    bool is_tuple() const { return kind_ == ValueKind::List && is_tuple_; }
    bool is_dict() const { return kind_ == ValueKind::Dict; }
    bool is_namespace() const { return kind_ == ValueKind::Namespace; }
    bool is_callable() const { return kind_ == ValueKind::Callable; }

    bool as_bool() const { return b_; }
    int64_t as_int() const { return kind_ == ValueKind::Bool ? (b_ ? 1 : 0) : i_; }
    double as_float() const { return is_float() ? f_ : static_cast<double>(as_int()); }
    const std::string& as_string() const { return s_; }
    const ValueList& as_list() const { return *list_; }
    const Dict& as_dict() const { return *dict_; }  // dicts and namespaces
    Dict& mutable_dict() const { return *dict_; }   // namespaces and loop objects (the sandbox is immutable otherwise)
    const NativeFunction& as_function() const { return *fn_; }
    const std::string& name() const { return s_; }  // callables: the name; undefined: what was missing

    bool truthy() const;
    int depth() const { return depth_; }
    // Python str(): what {{ value }} prints.
    std::string str() const;
    // Python repr(): used inside lists and dicts.
    std::string repr() const;
    const char* type_name() const;
    // json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=sort_keys); indent < 0 means None.
    std::string to_json(int indent = -1, bool sort_keys = false, std::string item_sep = "",
                        std::string key_sep = "") const;

  private:
    ValueKind kind_ = ValueKind::Undefined;
    bool is_tuple_ = false;
    int depth_ = 0;  // container nesting; bounded so printing/comparing never recurses too deep
    bool b_ = false;
    int64_t i_ = 0;
    double f_ = 0.0;
    std::string s_;
    std::shared_ptr<const ValueList> list_;
    std::shared_ptr<Dict> dict_;
    std::shared_ptr<const NativeFunction> fn_;
};

// Insertion-ordered dict (Python 3.7+ semantics). Chat-template dicts are small, so lookup is linear.
class Dict {
  public:
    const Value* find(const Value& key) const;
    Value* find(const Value& key);
    const Value* find(std::string_view key) const;
    void set(Value key, Value value);  // replaces in place, or appends
    const std::vector<std::pair<Value, Value>>& items() const { return items_; }
    size_t size() const { return items_.size(); }
    void clear() { items_.clear(); }
    Value& value_at(size_t i) { return items_[i].second; }

  private:
    std::vector<std::pair<Value, Value>> items_;
};

// Python == (numbers compare by value across int/float/bool; containers element-wise).
bool values_equal(const Value& a, const Value& b);
// Python <: returns -1/0/1; throws Error(InvalidArgument) for unorderable types.
int compare_values(const Value& a, const Value& b);

// Python float repr ("1.0", "1e+16", "0.30000000000000004", "inf", "nan").
std::string format_float(double f);
// Python repr() of a str.
std::string repr_string(std::string_view s);

// UTF-8 helpers (Python strings are code-point sequences).
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
void utf8_append(std::string& out, char32_t c);
bool is_py_space(char32_t c);

}  // namespace osprey::tokenizer::jinja
