// Parser: turns the lexer's tokens into the statement/expression AST, following jinja2's grammar and
// operator precedence. Syntax errors throw Error(InvalidFile) naming the line and column.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_lexer.h"

namespace osprey::tokenizer::jinja {

class Parser {
  public:
    Parser(const std::string& source, std::vector<Token> tokens) : source_(source), tokens_(std::move(tokens)) {}
    Body parse();

  private:
    // Statements.
    Body parse_body(const std::vector<std::string>& end_tags);
    StmtPtr parse_statement();
    StmtPtr parse_if(size_t pos);
    StmtPtr parse_for(size_t pos);
    StmtPtr parse_set(size_t pos);
    StmtPtr parse_macro(size_t pos);
    StmtPtr parse_call_block(size_t pos);
    StmtPtr parse_filter_block(size_t pos);
    void parse_params(std::vector<MacroParam>& params);
    std::vector<std::string> parse_targets();

    // Expressions, loosest first.
    ExprPtr parse_tuple(bool with_condexpr = true, bool explicit_parens = false,
                        const std::vector<std::string>& extra_end = {});
    ExprPtr parse_expression(bool with_condexpr = true);
    ExprPtr parse_condexpr();
    ExprPtr parse_or();
    ExprPtr parse_and();
    ExprPtr parse_not();
    ExprPtr parse_compare();
    ExprPtr parse_math1();
    ExprPtr parse_concat();
    ExprPtr parse_math2();
    ExprPtr parse_pow();
    ExprPtr parse_unary(bool with_filter);
    ExprPtr parse_primary();
    ExprPtr parse_postfix(ExprPtr node);
    ExprPtr parse_filter_expr(ExprPtr node);
    ExprPtr parse_subscript(ExprPtr node);
    ExprPtr parse_filter(ExprPtr node);
    ExprPtr parse_test(ExprPtr node);
    void parse_call_args(Expr& call);

    // Token stream.
    const Token& peek(size_t ahead = 0) const;
    const Token& next();
    bool at_op(const char* op) const;
    bool at_name(const char* name) const;
    bool skip_op(const char* op);
    bool skip_name(const char* name);
    void expect_op(const char* op);
    std::string expect_name();
    void expect_block_end();
    [[noreturn]] void fail(size_t pos, const std::string& what) const;
    [[noreturn]] void fail_unexpected(const std::string& expected) const;

    struct DepthGuard {
        explicit DepthGuard(Parser& p);
        ~DepthGuard() { --p_.depth_; }
        Parser& p_;
    };

    const std::string& source_;
    std::vector<Token> tokens_;
    size_t at_ = 0;
    int depth_ = 0;
};

}  // namespace osprey::tokenizer::jinja
