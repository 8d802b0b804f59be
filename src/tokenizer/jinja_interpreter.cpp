#include "tokenizer/jinja_interpreter.h"

#include "core/error.h"
#include "tokenizer/jinja_lexer.h"

namespace osprey::tokenizer::jinja {

// ---- Frame ----

const Value* Frame::lookup(const std::string& name) const {
    for (const Frame* f = this; f; f = f->parent.get())
        for (const auto& [k, v] : f->vars)
            if (k == name) return &v;
    return nullptr;
}

void Frame::set(const std::string& name, Value value) {
    for (auto& [k, v] : vars)
        if (k == name) {
            v = std::move(value);
            return;
        }
    vars.emplace_back(name, std::move(value));
}

// ---- bookkeeping ----

Interpreter::DepthGuard::DepthGuard(Interpreter& in) : in_(in) {
    if (++in_.eval_depth_ > in_.limits_.max_eval_depth) {
        --in_.eval_depth_;
        raise(ErrorCode::InvalidArgument, "chat template: evaluation nested deeper than {}", in_.limits_.max_eval_depth);
    }
}

void Interpreter::step() {
    if (++n_steps_ > limits_.max_steps)
        raise(ErrorCode::InvalidArgument, "chat template: rendering exceeded {} steps (runaway loop?)",
              limits_.max_steps);
}

void Interpreter::check_size(size_t n_bytes) const {
    if (n_bytes > limits_.max_output_bytes)
        raise(ErrorCode::InvalidArgument, "chat template: output exceeds {} bytes", limits_.max_output_bytes);
}

void Interpreter::append(std::string& out, const std::string& text) const {
    check_size(out.size() + text.size());
    out += text;
}

std::string Interpreter::render(const Body& body, const FramePtr& globals) {
    auto top = std::make_shared<Frame>();
    top->parent = globals;
    std::string out;
    auto break_cycles = [this] {
        for (auto& f : macro_frames_) f->vars.clear();
        for (auto& ns : namespaces_) ns.mutable_dict().clear();
        macro_frames_.clear();
        namespaces_.clear();
    };
    try {
        exec(body, top, out);  // a stray top-level break/continue just stops, as in a loop body
    } catch (...) {
        break_cycles();
        throw;
    }
    break_cycles();
    return out;
}

// ---- statements ----

Interpreter::Flow Interpreter::exec(const Body& body, const FramePtr& frame, std::string& out) {
    DepthGuard guard(*this);
    for (const auto& sp : body) {
        const Stmt& s = *sp;
        step();
        switch (s.kind) {
            case Stmt::Kind::Text: append(out, s.text); break;
            case Stmt::Kind::Print: append(out, eval(*s.expr, frame).str()); break;
            case Stmt::Kind::If: {
                bool done = false;
                for (size_t i = 0; i < s.conditions.size() && !done; ++i) {
                    if (eval(*s.conditions[i], frame).truthy()) {
                        done = true;
                        Flow f = exec(s.bodies[i], frame, out);
                        if (f != Flow::Normal) return f;
                    }
                }
                if (!done) {
                    Flow f = exec(s.else_body, frame, out);
                    if (f != Flow::Normal) return f;
                }
                break;
            }
            case Stmt::Kind::For: {
                Flow f = exec_for(s, frame, out);
                if (f != Flow::Normal) return f;
                break;
            }
            case Stmt::Kind::Set: exec_set(s, frame); break;
            case Stmt::Kind::SetBlock: {
                std::string captured;
                exec(s.bodies[0], frame, captured);
                Value v(std::move(captured));
                for (const auto& f : s.filters) v = eval_filter(*f, v, frame);
                frame->set(s.targets[0], std::move(v));
                break;
            }
            case Stmt::Kind::Macro: frame->set(s.targets[0], make_macro(s, frame, s.targets[0])); break;
            case Stmt::Kind::CallBlock: {
                const Expr& call = *s.expr;
                Value callee = eval(*call.args[0], frame);
                ValueList args;
                KwArgs kwargs;
                eval_args(call, 1, frame, args, kwargs);
                kwargs.emplace_back("caller", make_macro(s, frame, "caller"));
                append(out, this->call(callee, std::move(args), std::move(kwargs)).str());
                break;
            }
            case Stmt::Kind::FilterBlock: {
                std::string captured;
                exec(s.bodies[0], frame, captured);
                Value v(std::move(captured));
                for (const auto& f : s.filters) v = eval_filter(*f, v, frame);
                append(out, v.str());
                break;
            }
            case Stmt::Kind::Break: return Flow::Break;
            case Stmt::Kind::Continue: return Flow::Continue;
            case Stmt::Kind::Scope: {
                Flow f = exec(s.bodies[0], frame, out);
                if (f != Flow::Normal) return f;
                break;
            }
        }
    }
    return Flow::Normal;
}

static void bind_targets(Frame& frame, const std::vector<std::string>& targets, const Value& item) {
    if (targets.size() == 1) {
        frame.set(targets[0], item);
        return;
    }
    std::vector<Value> parts = iterate(item);
    if (parts.size() != targets.size())
        raise(ErrorCode::InvalidArgument, "chat template: cannot unpack {} values into {} names", parts.size(),
              targets.size());
    for (size_t i = 0; i < targets.size(); ++i) frame.set(targets[i], parts[i]);
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s, const FramePtr& frame, std::string& out) {
    Value iterable = eval(*s.expr, frame);
    std::vector<Value> items = iterate(iterable);
    if (s.cond) {
        std::vector<Value> kept;
        for (auto& item : items) {
            step();
            auto scope = std::make_shared<Frame>();
            scope->parent = frame;
            bind_targets(*scope, s.targets, item);
            if (eval(*s.cond, scope).truthy()) kept.push_back(std::move(item));
        }
        items = std::move(kept);
    }
    if (items.empty()) {
        exec(s.else_body, frame, out);
        return Flow::Normal;
    }
    auto n = static_cast<int64_t>(items.size());
    auto current = std::make_shared<int64_t>(0);
    Dict fields;
    for (const char* key : {"index", "index0", "revindex", "revindex0", "first", "last"}) fields.set(Value(key), Value());
    fields.set(Value("length"), Value(n));
    fields.set(Value("depth"), Value(int64_t{1}));
    fields.set(Value("depth0"), Value(int64_t{0}));
    fields.set(Value("previtem"), Value());
    fields.set(Value("nextitem"), Value());
    fields.set(Value("cycle"), Value::function("cycle", [current](Interpreter&, ValueList& args, KwArgs&) -> Value {
                   if (args.empty()) raise(ErrorCode::InvalidArgument, "chat template: no items for cycling given");
                   return args[static_cast<size_t>(*current) % args.size()];
               }));
    Value loop_value = Value::dict(std::move(fields));
    for (int64_t i = 0; i < n; ++i) {
        step();
        auto scope = std::make_shared<Frame>();
        scope->parent = frame;
        bind_targets(*scope, s.targets, items[static_cast<size_t>(i)]);
        Dict& loop = loop_value.mutable_dict();  // one object advanced in place, like jinja2's LoopContext
        *current = i;
        loop.value_at(0) = Value(i + 1);
        loop.value_at(1) = Value(i);
        loop.value_at(2) = Value(n - i);
        loop.value_at(3) = Value(n - i - 1);
        loop.value_at(4) = Value(i == 0);
        loop.value_at(5) = Value(i == n - 1);
        loop.value_at(9) = i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item");
        loop.value_at(10) = i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item");
        scope->set("loop", loop_value);
        Flow f = exec(s.bodies[0], scope, out);
        if (f == Flow::Break) break;
    }
    return Flow::Normal;
}

void Interpreter::exec_set(const Stmt& s, const FramePtr& frame) {
    Value v = eval(*s.expr, frame);
    if (!s.attr.empty()) {
        const Value* ns = frame->lookup(s.targets[0]);
        if (!ns || !ns->is_namespace())
            raise(ErrorCode::InvalidArgument, "chat template: cannot assign attribute on non-namespace object '{}'",
                  s.targets[0]);
        if (s.attr[0] == '_')
            raise(ErrorCode::InvalidArgument,
                  "chat template: cannot store underscore-prefixed attribute '{}' on a namespace", s.attr);
        ns->mutable_dict().set(Value(s.attr), std::move(v));
        return;
    }
    bind_targets(*frame, s.targets, v);
}

Value Interpreter::make_macro(const Stmt& s, const FramePtr& defining, const std::string& name) {
    const Stmt* macro = &s;
    FramePtr captured = defining;
    macro_frames_.push_back(defining);
    return Value::function(name, [macro, captured, name](Interpreter& in, ValueList& args, KwArgs& kwargs) -> Value {
        if (in.call_depth_ >= in.limits_.max_call_depth)
            raise(ErrorCode::InvalidArgument, "chat template: macro calls nested deeper than {}",
                  in.limits_.max_call_depth);
        auto scope = std::make_shared<Frame>();
        scope->parent = captured;
        const auto& params = macro->params;
        if (args.size() > params.size())
            raise(ErrorCode::InvalidArgument, "chat template: macro '{}' takes not more than {} argument(s)", name,
                  params.size());
        for (size_t i = 0; i < params.size(); ++i) {
            const Value* given = i < args.size() ? &args[i] : nullptr;
            for (const auto& [k, v] : kwargs)
                if (k == params[i].name) given = &v;
            if (given) scope->set(params[i].name, *given);
            else if (params[i].default_value) scope->set(params[i].name, in.eval(*params[i].default_value, scope));
            else scope->set(params[i].name, Value::undefined("parameter '" + params[i].name + "' was not provided"));
        }
        for (const auto& [k, v] : kwargs) {
            bool known = k == "caller";
            for (const auto& p : params) known = known || p.name == k;
            if (!known)
                raise(ErrorCode::InvalidArgument, "chat template: macro '{}' takes no keyword argument '{}'", name, k);
            if (k == "caller") scope->set("caller", v);
        }
        std::string out;
        ++in.call_depth_;
        try {
            in.exec(macro->bodies[0], scope, out);
        } catch (...) {
            --in.call_depth_;
            throw;
        }
        --in.call_depth_;
        return Value(std::move(out));
    });
}

// ---- expressions ----

void Interpreter::eval_args(const Expr& e, size_t first, const FramePtr& frame, ValueList& args, KwArgs& kwargs) {
    for (size_t i = first; i < e.args.size(); ++i) args.push_back(eval(*e.args[i], frame));
    for (const auto& [k, v] : e.kwargs) kwargs.emplace_back(k, eval(*v, frame));
}

Value Interpreter::call(const Value& callee, ValueList args, KwArgs kwargs) {
    step();
    if (callee.is_undefined()) throw_undefined(callee);
    if (!callee.is_callable())
        raise(ErrorCode::InvalidArgument, "chat template: '{}' object is not callable", callee.type_name());
    return callee.as_function()(*this, args, kwargs);
}

Value Interpreter::eval_filter(const Expr& e, const Value& subject, const FramePtr& frame) {
    ValueList args;
    KwArgs kwargs;
    eval_args(e, 1, frame, args, kwargs);
    return apply_filter(*this, e.name, subject, args, kwargs);
}

Value Interpreter::eval_binary(const Expr& e, const FramePtr& frame) {
    Value a = eval(*e.args[0], frame);
    if (e.name == "and") return a.truthy() ? eval(*e.args[1], frame) : a;
    if (e.name == "or") return a.truthy() ? a : eval(*e.args[1], frame);
    Value b = eval(*e.args[1], frame);
    return binary_op(e.name, a, b, limits_.max_output_bytes);
}

Value Interpreter::eval_compare(const Expr& e, const FramePtr& frame) {
    Value left = eval(*e.args[0], frame);
    for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.args[i + 1], frame);
        const std::string& op = e.ops[i];
        bool r;
        if (op == "==") r = values_equal(left, right);
        else if (op == "!=") r = !values_equal(left, right);
        else if (op == "in") r = contains(right, left);
        else if (op == "notin") r = !contains(right, left);
        else {
            if (left.is_undefined()) throw_undefined(left);
            if (right.is_undefined()) throw_undefined(right);
            int c = compare_values(left, right);
            r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
        }
        if (!r) return Value(false);
        left = std::move(right);
    }
    return Value(true);
}

Value Interpreter::eval(const Expr& e, const FramePtr& frame) {
    DepthGuard guard(*this);
    switch (e.kind) {
        case Expr::Kind::Const: return e.value;
        case Expr::Kind::Name: {
            const Value* v = frame->lookup(e.name);
            return v ? *v : Value::undefined("'" + e.name + "' is undefined");
        }
        case Expr::Kind::List:
        case Expr::Kind::Tuple: {
            ValueList items;
            for (const auto& a : e.args) items.push_back(eval(*a, frame));
            return Value::list(std::move(items), e.kind == Expr::Kind::Tuple);
        }
        case Expr::Kind::DictLit: {
            Dict d;
            for (size_t i = 0; i + 1 < e.args.size(); i += 2) d.set(eval(*e.args[i], frame), eval(*e.args[i + 1], frame));
            return Value::dict(std::move(d));
        }
        case Expr::Kind::GetAttr: return get_attr(eval(*e.args[0], frame), e.name);
        case Expr::Kind::GetItem: return get_item(eval(*e.args[0], frame), eval(*e.args[1], frame));
        case Expr::Kind::Slice: {
            Value obj = eval(*e.args[0], frame);
            Value parts[3];
            for (int i = 0; i < 3; ++i) parts[i] = e.args[1 + i] ? eval(*e.args[1 + i], frame) : Value::none();
            return slice(obj, parts[0], parts[1], parts[2]);
        }
        case Expr::Kind::Call: {
            Value callee = eval(*e.args[0], frame);
            ValueList args;
            KwArgs kwargs;
            eval_args(e, 1, frame, args, kwargs);
            return call(callee, std::move(args), std::move(kwargs));
        }
        case Expr::Kind::Filter: return eval_filter(e, eval(*e.args[0], frame), frame);
        case Expr::Kind::Test: {
            Value subject = eval(*e.args[0], frame);
            ValueList args;
            KwArgs kwargs;
            eval_args(e, 1, frame, args, kwargs);
            bool r = apply_test(*this, e.name, subject, args);
            return Value(e.negated ? !r : r);
        }
        case Expr::Kind::Unary: {
            Value v = eval(*e.args[0], frame);
            if (e.name == "not") return Value(!v.truthy());
            if (v.is_undefined()) throw_undefined(v);
            if (v.is_float()) return Value(e.name == "-" ? -v.as_float() : v.as_float());
            if (v.is_int()) {
                if (e.name == "+") return Value(v.as_int());
                if (v.as_int() == INT64_MIN) raise(ErrorCode::InvalidArgument, "chat template: integer overflow");
                return Value(-v.as_int());
            }
            raise(ErrorCode::InvalidArgument, "chat template: bad operand type for unary {}: '{}'", e.name,
                  v.type_name());
        }
        case Expr::Kind::Binary: return eval_binary(e, frame);
        case Expr::Kind::Compare: return eval_compare(e, frame);
        case Expr::Kind::CondExpr: {
            if (eval(*e.args[0], frame).truthy()) return eval(*e.args[1], frame);
            if (e.args[2]) return eval(*e.args[2], frame);
            return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
        }
    }
    return Value();
}

}  // namespace osprey::tokenizer::jinja
