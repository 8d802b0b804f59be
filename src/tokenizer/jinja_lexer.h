// Lexer: splits a Jinja2 template into data and tag tokens with the whitespace rules transformers uses
// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, `-`/`+` modifiers, comments, raw blocks).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace osprey::tokenizer::jinja {

enum class TokenKind { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
    TokenKind kind;
    std::string text;  // Data: the text; Name/Op: the spelling; String: the unescaped value; numbers: digits
    size_t pos;        // byte offset in the (newline-normalized) source
};

// Newline-normalizes the source (\r\n, \r -> \n) and drops one trailing newline, as jinja2 does.
std::string normalize_template_source(std::string_view source);

// Tokenizes a normalized source; throws Error(InvalidFile) with line/column on a lexical error.
std::vector<Token> tokenize_template(const std::string& source);

// "line L, column C" for a byte offset (both 1-based; columns count code points).
std::string describe_position(const std::string& source, size_t pos);

}  // namespace osprey::tokenizer::jinja
