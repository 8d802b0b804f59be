#include "tokenizer/jinja_parser.h"

#include <algorithm>

#include "core/error.h"

namespace osprey::tokenizer::jinja {

namespace {

constexpr int kMaxParseDepth = 400;  // nested blocks + expression levels; keeps recursion shallow

ExprPtr make_expr(Expr::Kind kind, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
}

StmtPtr make_stmt(Stmt::Kind kind, size_t pos) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->pos = pos;
    return s;
}

std::string describe(const Token& t) {
    switch (t.kind) {
        case TokenKind::Data: return "template data";
        case TokenKind::VarBegin: return "'{{'";
        case TokenKind::VarEnd: return "end of print statement";
        case TokenKind::BlockBegin: return "'{%'";
        case TokenKind::BlockEnd: return "end of statement block";
        case TokenKind::Name: return "'" + t.text + "'";
        case TokenKind::String: return "string";
        case TokenKind::Int: return "integer";
        case TokenKind::Float: return "float";
        case TokenKind::Op: return "'" + t.text + "'";
        case TokenKind::Eof: return "end of template";
    }
    return "?";
}

}  // namespace

Parser::DepthGuard::DepthGuard(Parser& p) : p_(p) {
    if (++p_.depth_ > kMaxParseDepth) p_.fail(p_.peek().pos, "expression nested too deeply");
}

// ---- token stream ----

const Token& Parser::peek(size_t ahead) const { return tokens_[std::min(at_ + ahead, tokens_.size() - 1)]; }

const Token& Parser::next() {
    const Token& t = tokens_[at_];
    if (at_ + 1 < tokens_.size()) ++at_;
    return t;
}

bool Parser::at_op(const char* op) const { return peek().kind == TokenKind::Op && peek().text == op; }
bool Parser::at_name(const char* name) const { return peek().kind == TokenKind::Name && peek().text == name; }

bool Parser::skip_op(const char* op) {
    if (!at_op(op)) return false;
    next();
    return true;
}

bool Parser::skip_name(const char* name) {
    if (!at_name(name)) return false;
    next();
    return true;
}

void Parser::expect_op(const char* op) {
    if (!skip_op(op)) fail_unexpected(std::string("'") + op + "'");
}

std::string Parser::expect_name() {
    if (peek().kind != TokenKind::Name) fail_unexpected("a name");
    return next().text;
}

void Parser::expect_block_end() {
    if (peek().kind != TokenKind::BlockEnd) fail_unexpected("end of statement block");
    next();
}

void Parser::fail(size_t pos, const std::string& what) const {
    raise(ErrorCode::InvalidFile, "chat template syntax error at {}: {}", describe_position(source_, pos), what);
}

void Parser::fail_unexpected(const std::string& expected) const {
    fail(peek().pos, fmt::format("expected {}, got {}", expected, describe(peek())));
}

// ---- statements ----

Body Parser::parse() {
    Body body = parse_body({});
    if (peek().kind != TokenKind::Eof) fail(peek().pos, "unexpected '" + peek().text + "'");
    return body;
}

Body Parser::parse_body(const std::vector<std::string>& end_tags) {
    Body body;
    while (true) {
        const Token& t = peek();
        if (t.kind == TokenKind::Eof) {
            if (!end_tags.empty()) {
                std::string names;
                for (const auto& n : end_tags) names += (names.empty() ? "'" : " or '") + n + "'";
                fail(t.pos, "unexpected end of template, expected " + names);
            }
            return body;
        }
        if (t.kind == TokenKind::Data) {
            auto s = make_stmt(Stmt::Kind::Text, t.pos);
            s->text = t.text;
            body.push_back(std::move(s));
            next();
        } else if (t.kind == TokenKind::VarBegin) {
            next();
            auto s = make_stmt(Stmt::Kind::Print, t.pos);
            s->expr = parse_tuple();
            if (peek().kind != TokenKind::VarEnd) fail_unexpected("end of print statement");
            next();
            body.push_back(std::move(s));
        } else if (t.kind == TokenKind::BlockBegin) {
            const Token& name = peek(1);
            if (name.kind == TokenKind::Name &&
                std::find(end_tags.begin(), end_tags.end(), name.text) != end_tags.end()) {
                next();  // leave the stream at the end tag's name
                return body;
            }
            next();
            body.push_back(parse_statement());
        } else {
            fail_unexpected("template data or a tag");
        }
    }
}

StmtPtr Parser::parse_statement() {
    DepthGuard guard(*this);
    const Token& t = peek();
    if (t.kind != TokenKind::Name) fail_unexpected("a statement name");
    std::string name = next().text;
    size_t pos = t.pos;
    if (name == "if") return parse_if(pos);
    if (name == "for") return parse_for(pos);
    if (name == "set") return parse_set(pos);
    if (name == "macro") return parse_macro(pos);
    if (name == "call") return parse_call_block(pos);
    if (name == "filter") return parse_filter_block(pos);
    if (name == "break" || name == "continue") {
        expect_block_end();
        return make_stmt(name == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, pos);
    }
    if (name == "generation") {
        expect_block_end();
        auto s = make_stmt(Stmt::Kind::Scope, pos);
        s->bodies.push_back(parse_body({"endgeneration"}));
        next();
        expect_block_end();
        return s;
    }
    fail(pos, "unknown or unsupported tag '" + name + "'");
}

StmtPtr Parser::parse_if(size_t pos) {
    auto s = make_stmt(Stmt::Kind::If, pos);
    s->conditions.push_back(parse_tuple(false));
    expect_block_end();
    while (true) {
        s->bodies.push_back(parse_body({"elif", "else", "endif"}));
        std::string tag = next().text;
        if (tag == "elif") {
            s->conditions.push_back(parse_tuple(false));
            expect_block_end();
        } else if (tag == "else") {
            expect_block_end();
            s->else_body = parse_body({"endif"});
            next();
            expect_block_end();
            return s;
        } else {
            expect_block_end();
            return s;
        }
    }
}

std::vector<std::string> Parser::parse_targets() {
    std::vector<std::string> targets;
    bool parens = skip_op("(");
    do {
        if (parens && at_op(")")) break;
        targets.push_back(expect_name());
    } while (skip_op(","));
    if (parens) expect_op(")");
    return targets;
}

StmtPtr Parser::parse_for(size_t pos) {
    auto s = make_stmt(Stmt::Kind::For, pos);
    s->targets = parse_targets();
    if (!skip_name("in")) fail_unexpected("'in'");
    s->expr = parse_tuple(false, false, {"recursive", "if"});
    if (skip_name("if")) s->cond = parse_expression();
    if (at_name("recursive")) fail(peek().pos, "recursive for loops are not supported");
    expect_block_end();
    s->bodies.push_back(parse_body({"endfor", "else"}));
    if (next().text == "else") {
        expect_block_end();
        s->else_body = parse_body({"endfor"});
        next();
    }
    expect_block_end();
    return s;
}

StmtPtr Parser::parse_set(size_t pos) {
    auto s = make_stmt(Stmt::Kind::Set, pos);
    if (peek().kind == TokenKind::Name && peek(1).kind == TokenKind::Op && peek(1).text == ".") {
        s->targets.push_back(next().text);
        next();
        s->attr = expect_name();
    } else {
        s->targets = parse_targets();
    }
    if (skip_op("=")) {
        s->expr = parse_tuple();
        expect_block_end();
        return s;
    }
    if (s->targets.size() != 1 || !s->attr.empty()) fail_unexpected("'='");
    s->kind = Stmt::Kind::SetBlock;
    while (skip_op("|")) s->filters.push_back(parse_filter(nullptr));
    expect_block_end();
    s->bodies.push_back(parse_body({"endset"}));
    next();
    expect_block_end();
    return s;
}

void Parser::parse_params(std::vector<MacroParam>& params) {
    expect_op("(");
    while (!at_op(")")) {
        if (!params.empty()) expect_op(",");
        if (at_op(")")) break;
        MacroParam p;
        p.name = expect_name();
        if (skip_op("=")) p.default_value = parse_expression();
        else if (!params.empty() && params.back().default_value)
            fail(peek().pos, "non-default argument follows default argument");
        params.push_back(std::move(p));
    }
    expect_op(")");
}

StmtPtr Parser::parse_macro(size_t pos) {
    auto s = make_stmt(Stmt::Kind::Macro, pos);
    s->targets.push_back(expect_name());
    parse_params(s->params);
    expect_block_end();
    s->bodies.push_back(parse_body({"endmacro"}));
    next();
    expect_block_end();
    return s;
}

StmtPtr Parser::parse_call_block(size_t pos) {
    auto s = make_stmt(Stmt::Kind::CallBlock, pos);
    if (at_op("(")) parse_params(s->params);
    s->expr = parse_expression();
    if (s->expr->kind != Expr::Kind::Call) fail(s->expr->pos, "expected call");
    expect_block_end();
    s->bodies.push_back(parse_body({"endcall"}));
    next();
    expect_block_end();
    return s;
}

StmtPtr Parser::parse_filter_block(size_t pos) {
    auto s = make_stmt(Stmt::Kind::FilterBlock, pos);
    do {
        s->filters.push_back(parse_filter(nullptr));
    } while (skip_op("|"));
    expect_block_end();
    s->bodies.push_back(parse_body({"endfilter"}));
    next();
    expect_block_end();
    return s;
}

// ---- expressions ----

ExprPtr Parser::parse_tuple(bool with_condexpr, bool explicit_parens, const std::vector<std::string>& extra_end) {
    size_t pos = peek().pos;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    auto at_end = [&] {
        const Token& t = peek();
        if (t.kind == TokenKind::VarEnd || t.kind == TokenKind::BlockEnd || t.kind == TokenKind::Eof) return true;
        if (t.kind == TokenKind::Op && t.text == ")") return true;
        return t.kind == TokenKind::Name && std::find(extra_end.begin(), extra_end.end(), t.text) != extra_end.end();
    };
    while (true) {
        if (!items.empty()) expect_op(",");
        if (at_end()) break;
        items.push_back(parse_expression(with_condexpr));
        if (at_op(",")) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (!items.empty()) return std::move(items[0]);
        if (!explicit_parens) fail_unexpected("an expression");
    }
    auto t = make_expr(Expr::Kind::Tuple, pos);
    t->args = std::move(items);
    return t;
}

ExprPtr Parser::parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

ExprPtr Parser::parse_condexpr() {
    DepthGuard guard(*this);
    size_t pos = peek().pos;
    ExprPtr expr1 = parse_or();
    while (skip_name("if")) {
        ExprPtr expr2 = parse_or();
        ExprPtr expr3 = skip_name("else") ? parse_condexpr() : nullptr;
        auto c = make_expr(Expr::Kind::CondExpr, pos);
        c->args.push_back(std::move(expr2));
        c->args.push_back(std::move(expr1));
        c->args.push_back(std::move(expr3));
        expr1 = std::move(c);
    }
    return expr1;
}

static ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r) {
    auto b = make_expr(Expr::Kind::Binary, l->pos);
    b->name = op;
    b->args.push_back(std::move(l));
    b->args.push_back(std::move(r));
    return b;
}

ExprPtr Parser::parse_or() {
    ExprPtr left = parse_and();
    while (skip_name("or")) left = binary("or", std::move(left), parse_and());
    return left;
}

ExprPtr Parser::parse_and() {
    ExprPtr left = parse_not();
    while (skip_name("and")) left = binary("and", std::move(left), parse_not());
    return left;
}

ExprPtr Parser::parse_not() {
    DepthGuard guard(*this);
    if (at_name("not")) {
        auto u = make_expr(Expr::Kind::Unary, next().pos);
        u->name = "not";
        u->args.push_back(parse_not());
        return u;
    }
    return parse_compare();
}

ExprPtr Parser::parse_compare() {
    size_t pos = peek().pos;
    ExprPtr first = parse_math1();
    auto cmp = make_expr(Expr::Kind::Compare, pos);
    while (true) {
        const Token& t = peek();
        if (t.kind == TokenKind::Op &&
            (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == "<=" || t.text == ">" || t.text == ">=")) {
            cmp->ops.push_back(next().text);
        } else if (at_name("in")) {
            next();
            cmp->ops.push_back("in");
        } else if (at_name("not") && peek(1).kind == TokenKind::Name && peek(1).text == "in") {
            next();
            next();
            cmp->ops.push_back("notin");
        } else {
            break;
        }
        cmp->args.push_back(parse_math1());
    }
    if (cmp->ops.empty()) return first;
    cmp->args.insert(cmp->args.begin(), std::move(first));
    return cmp;
}

ExprPtr Parser::parse_math1() {
    ExprPtr left = parse_concat();
    while (at_op("+") || at_op("-")) {
        std::string op = next().text;
        left = binary(op, std::move(left), parse_concat());
    }
    return left;
}

ExprPtr Parser::parse_concat() {
    ExprPtr left = parse_math2();
    while (skip_op("~")) left = binary("~", std::move(left), parse_math2());
    return left;
}

ExprPtr Parser::parse_math2() {
    ExprPtr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
        std::string op = next().text;
        left = binary(op, std::move(left), parse_pow());
    }
    return left;
}

ExprPtr Parser::parse_pow() {
    ExprPtr left = parse_unary(true);
    while (skip_op("**")) left = binary("**", std::move(left), parse_unary(true));
    return left;
}

ExprPtr Parser::parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr node;
    if (at_op("-") || at_op("+")) {
        node = make_expr(Expr::Kind::Unary, peek().pos);
        node->name = next().text;
        node->args.push_back(parse_unary(false));
    } else {
        node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
}

ExprPtr Parser::parse_primary() {
    DepthGuard guard(*this);
    const Token& t = peek();
    size_t pos = t.pos;
    switch (t.kind) {
        case TokenKind::Name: {
            std::string n = next().text;
            auto e = make_expr(Expr::Kind::Const, pos);
            if (n == "true" || n == "True") e->value = Value(true);
            else if (n == "false" || n == "False") e->value = Value(false);
            else if (n == "none" || n == "None") e->value = Value::none();
            else {
                e->kind = Expr::Kind::Name;
                e->name = n;
            }
            return e;
        }
        case TokenKind::String: {
            std::string s;
            while (peek().kind == TokenKind::String) s += next().text;
            auto e = make_expr(Expr::Kind::Const, pos);
            e->value = Value(std::move(s));
            return e;
        }
        case TokenKind::Int:
        case TokenKind::Float: {
            auto e = make_expr(Expr::Kind::Const, pos);
            const std::string& text = next().text;
            try {
                if (t.kind == TokenKind::Int) e->value = Value(static_cast<int64_t>(std::stoll(text)));
                else e->value = Value(std::stod(text));
            } catch (const std::exception&) {
                fail(pos, "number literal out of range: " + text);
            }
            return e;
        }
        case TokenKind::Op: {
            if (t.text == "(") {
                next();
                ExprPtr e = parse_tuple(true, true);
                expect_op(")");
                return e;
            }
            if (t.text == "[") {
                next();
                auto e = make_expr(Expr::Kind::List, pos);
                while (!at_op("]")) {
                    if (!e->args.empty()) expect_op(",");
                    if (at_op("]")) break;
                    e->args.push_back(parse_expression());
                }
                expect_op("]");
                return e;
            }
            if (t.text == "{") {
                next();
                auto e = make_expr(Expr::Kind::DictLit, pos);
                while (!at_op("}")) {
                    if (!e->args.empty()) expect_op(",");
                    if (at_op("}")) break;
                    e->args.push_back(parse_expression());
                    expect_op(":");
                    e->args.push_back(parse_expression());
                }
                expect_op("}");
                return e;
            }
            break;
        }
        default: break;
    }
    fail(pos, "unexpected " + describe(t));
}

ExprPtr Parser::parse_postfix(ExprPtr node) {
    while (true) {
        if (at_op(".")) {
            size_t pos = next().pos;
            if (peek().kind == TokenKind::Name) {
                auto e = make_expr(Expr::Kind::GetAttr, pos);
                e->name = next().text;
                e->args.push_back(std::move(node));
                node = std::move(e);
            } else if (peek().kind == TokenKind::Int) {
                auto e = make_expr(Expr::Kind::GetItem, pos);
                auto key = make_expr(Expr::Kind::Const, peek().pos);
                key->value = Value(static_cast<int64_t>(std::stoll(next().text)));
                e->args.push_back(std::move(node));
                e->args.push_back(std::move(key));
                node = std::move(e);
            } else {
                fail_unexpected("an attribute name");
            }
        } else if (at_op("[")) {
            node = parse_subscript(std::move(node));
        } else if (at_op("(")) {
            auto call = make_expr(Expr::Kind::Call, peek().pos);
            call->args.push_back(std::move(node));
            parse_call_args(*call);
            node = std::move(call);
        } else {
            return node;
        }
    }
}

ExprPtr Parser::parse_filter_expr(ExprPtr node) {
    while (true) {
        if (at_op("|")) {
            next();
            node = parse_filter(std::move(node));
        } else if (at_name("is")) {
            node = parse_test(std::move(node));
        } else if (at_op("(")) {
            auto call = make_expr(Expr::Kind::Call, peek().pos);
            call->args.push_back(std::move(node));
            parse_call_args(*call);
            node = std::move(call);
        } else {
            return node;
        }
    }
}

ExprPtr Parser::parse_subscript(ExprPtr node) {
    size_t pos = next().pos;  // '['
    std::vector<ExprPtr> parts;
    bool is_slice = false;
    ExprPtr slice_parts[3];
    // Only one subscript form is common: x[i] or x[a:b:c].
    ExprPtr first;
    if (!at_op(":")) first = parse_expression();
    if (at_op(":")) {
        is_slice = true;
        next();
        slice_parts[0] = std::move(first);
        if (!at_op("]") && !at_op(":")) slice_parts[1] = parse_expression();
        if (skip_op(":"))
            if (!at_op("]")) slice_parts[2] = parse_expression();
    } else if (at_op(",")) {
        auto tuple = make_expr(Expr::Kind::Tuple, pos);
        tuple->args.push_back(std::move(first));
        while (skip_op(",")) {
            if (at_op("]")) break;
            tuple->args.push_back(parse_expression());
        }
        first = std::move(tuple);
    }
    expect_op("]");
    auto e = make_expr(is_slice ? Expr::Kind::Slice : Expr::Kind::GetItem, pos);
    e->args.push_back(std::move(node));
    if (is_slice) {
        for (auto& p : slice_parts) e->args.push_back(std::move(p));
    } else {
        e->args.push_back(std::move(first));
    }
    return e;
}

void Parser::parse_call_args(Expr& call) {
    expect_op("(");
    bool first = true;
    while (!at_op(")")) {
        if (!first) expect_op(",");
        first = false;
        if (at_op(")")) break;
        if (at_op("*") || at_op("**")) fail(peek().pos, "*args and **kwargs in calls are not supported");
        if (peek().kind == TokenKind::Name && peek(1).kind == TokenKind::Op && peek(1).text == "=") {
            std::string key = next().text;
            next();
            call.kwargs.emplace_back(key, parse_expression());
        } else {
            if (!call.kwargs.empty()) fail(peek().pos, "positional argument follows keyword argument");
            call.args.push_back(parse_expression());
        }
    }
    expect_op(")");
}

ExprPtr Parser::parse_filter(ExprPtr node) {
    auto f = make_expr(Expr::Kind::Filter, peek().pos);
    f->name = expect_name();
    while (at_op(".") && peek(1).kind == TokenKind::Name) {
        next();
        f->name += "." + next().text;
    }
    f->args.push_back(std::move(node));
    if (at_op("(")) parse_call_args(*f);
    return f;
}

ExprPtr Parser::parse_test(ExprPtr node) {
    auto t = make_expr(Expr::Kind::Test, next().pos);  // 'is'
    t->negated = skip_name("not");
    t->name = expect_name();
    while (at_op(".") && peek(1).kind == TokenKind::Name) {
        next();
        t->name += "." + next().text;
    }
    t->args.push_back(std::move(node));
    const Token& c = peek();
    if (at_op("(")) {
        parse_call_args(*t);
    } else if ((c.kind == TokenKind::Name || c.kind == TokenKind::String || c.kind == TokenKind::Int ||
                c.kind == TokenKind::Float || (c.kind == TokenKind::Op && (c.text == "[" || c.text == "{"))) &&
               !(c.kind == TokenKind::Name && (c.text == "else" || c.text == "or" || c.text == "and"))) {
        if (c.kind == TokenKind::Name && c.text == "is") fail(c.pos, "You cannot chain multiple tests with is");
        t->args.push_back(parse_postfix(parse_primary()));
    }
    return t;
}

}  // namespace osprey::tokenizer::jinja
