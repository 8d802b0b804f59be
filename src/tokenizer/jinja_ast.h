// AST of a parsed Jinja2 template: expression and statement nodes.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace osprey::tokenizer::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
    enum class Kind {
        Const,     // value
        Name,      // name
        List,      // args = items
        Tuple,     // args = items
        DictLit,   // args = k0, v0, k1, v1, ...
        GetAttr,   // args[0] = object, name = attribute
        GetItem,   // args[0] = object, args[1] = key
        Slice,     // args[0] = object, args[1..3] = start/stop/step (nullptr when absent)
        Call,      // args[0] = callee, args[1..] = positional, kwargs
        Filter,    // args[0] = subject, args[1..] = positional, kwargs, name
        Test,      // args[0] = subject, args[1..] = positional, kwargs, name, negated
        Unary,     // name = "-", "+" or "not", args[0]
        Binary,    // name = operator (+ - * / // % ** ~ and or), args[0], args[1]
        Compare,   // args[0] first operand, ops[i] applies to args[i + 1]
        CondExpr,  // args[0] = test, args[1] = then, args[2] = else (nullptr: undefined)
    };
    Kind kind;
    size_t pos = 0;
    Value value;
    std::string name;
    std::vector<ExprPtr> args;
    std::vector<std::pair<std::string, ExprPtr>> kwargs;
    std::vector<std::string> ops;
    bool negated = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct MacroParam {
    std::string name;
    ExprPtr default_value;  // nullptr: required
};

struct Stmt {
    enum class Kind {
        Text,      // text
        Print,     // expr
        If,        // conditions[i] guards bodies[i]; else_body
        For,       // targets, expr = iterable, cond = optional filter, bodies[0], else_body
        Set,       // targets (a, b unpacking) or target + attr (namespace), expr
        SetBlock,  // targets[0], bodies[0], filters applied to the captured text
        Macro,     // targets[0] = name, params, bodies[0]
        CallBlock, // expr = call, params = caller's parameters, bodies[0] = caller body
        FilterBlock,  // filters, bodies[0]
        Break,
        Continue,
        Scope,     // bodies[0] rendered inline (generation blocks)
    };
    Kind kind;
    size_t pos = 0;
    std::string text;
    ExprPtr expr;
    ExprPtr cond;
    std::vector<ExprPtr> conditions;
    std::vector<Body> bodies;
    Body else_body;
    std::vector<std::string> targets;
    std::string attr;  // Set: `ns.attr = ...`
    std::vector<MacroParam> params;
    std::vector<ExprPtr> filters;  // Filter nodes whose args[0] is nullptr (the piped text)
};

}  // namespace osprey::tokenizer::jinja
