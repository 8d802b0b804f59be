// Interpreter: executes a parsed Jinja2 template the way jinja2's ImmutableSandboxedEnvironment does for
// transformers' chat templates (scoping, loops, macros, namespaces, Python operator semantics), with hard
// bounds on call depth, work and output size so that hostile templates cannot crash or exhaust the process.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_value.h"

namespace osprey::tokenizer::jinja {

// A variable scope: the template globals, the top level, a loop iteration or a macro call.
struct Frame {
    std::shared_ptr<Frame> parent;
    std::vector<std::pair<std::string, Value>> vars;

    const Value* lookup(const std::string& name) const;
    void set(const std::string& name, Value value);
};
using FramePtr = std::shared_ptr<Frame>;

struct RenderLimits {
    size_t max_output_bytes = size_t{32} << 20;  // any string built while rendering, and the result
    int max_call_depth = 128;                      // nested macro calls
    uint64_t max_steps = 2'000'000;                // statements, loop iterations and calls
    int max_eval_depth = 2000;                     // nested statement/expression evaluation (C++ stack)
};

class Interpreter {
  public:
    Interpreter(const std::string& source, RenderLimits limits) : source_(source), limits_(limits) {}

    // Renders the statements with `globals` as the outermost scope.
    std::string render(const Body& body, const FramePtr& globals);

    Value eval(const Expr& e, const FramePtr& frame);
    Value call(const Value& callee, ValueList args, KwArgs kwargs);
    void step();
    void check_size(size_t n_bytes) const;
    // Namespaces created while rendering; emptied afterwards, since one may hold itself (a shared_ptr cycle).
    void track_namespace(const Value& ns) { namespaces_.push_back(ns); }
    const RenderLimits& limits() const { return limits_; }

  private:
    enum class Flow { Normal, Break, Continue };
    Flow exec(const Body& body, const FramePtr& frame, std::string& out);
    Flow exec_for(const Stmt& s, const FramePtr& frame, std::string& out);
    void exec_set(const Stmt& s, const FramePtr& frame);
    Value make_macro(const Stmt& s, const FramePtr& frame, const std::string& name);
    Value eval_binary(const Expr& e, const FramePtr& frame);
    Value eval_compare(const Expr& e, const FramePtr& frame);
    Value eval_filter(const Expr& e, const Value& subject, const FramePtr& frame);
    void eval_args(const Expr& e, size_t first, const FramePtr& frame, ValueList& args, KwArgs& kwargs);
    void append(std::string& out, const std::string& text) const;

    const std::string& source_;
    RenderLimits limits_;
    uint64_t n_steps_ = 0;
    int call_depth_ = 0;
    int eval_depth_ = 0;
    // Frames that define macros: a macro captures its frame and the frame holds the macro, so both are
    // cleared after rendering to break the cycle.
    std::vector<FramePtr> macro_frames_;
    std::vector<Value> namespaces_;

    struct DepthGuard {
        explicit DepthGuard(Interpreter& in);
        ~DepthGuard() { --in_.eval_depth_; }
        Interpreter& in_;
    };
};

// Operators and attribute access with Python semantics (jinja_ops.cpp).
Value binary_op(const std::string& op, const Value& a, const Value& b, size_t max_bytes);
bool contains(const Value& container, const Value& item);
Value get_attr(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
std::vector<Value> iterate(const Value& v);  // the items a for loop sees; throws for non-iterables
[[noreturn]] void throw_undefined(const Value& v);

// Filters, tests and globals (jinja_builtins.cpp).
Value apply_filter(Interpreter& in, const std::string& name, const Value& subject, ValueList& args, KwArgs& kwargs);
bool apply_test(Interpreter& in, const std::string& name, const Value& subject, ValueList& args);
void add_globals(Frame& frame);

// Python "%" string formatting and str.format.
Value percent_format(const std::string& format, const Value& args);

}  // namespace osprey::tokenizer::jinja
