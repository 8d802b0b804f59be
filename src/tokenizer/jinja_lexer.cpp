#include "tokenizer/jinja_lexer.h"

#include <cctype>
#include <cstring>

#include "core/error.h"
#include "tokenizer/jinja_value.h"

namespace osprey::tokenizer::jinja {

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Python str.rstrip() on UTF-8 text (strips Unicode whitespace too).
void rstrip_py(std::string& s) {
    std::u32string u = utf8_decode(s);
    size_t n = u.size();
    while (n > 0 && is_py_space(u[n - 1])) --n;
    if (n != u.size()) s = utf8_encode(std::u32string_view(u).substr(0, n));
}

size_t skip_py_space(const std::string& s, size_t pos) {
    while (pos < s.size()) {
        auto c = static_cast<unsigned char>(s[pos]);
        if (c < 0x80) {
            if (!is_ws(static_cast<char>(c)) && !(c >= 0x1C && c <= 0x1F)) break;
            ++pos;
            continue;
        }
        size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
        std::u32string u = utf8_decode(std::string_view(s).substr(pos, len));
        if (u.size() != 1 || !is_py_space(u[0])) break;
        pos += len;
    }
    return pos;
}

[[noreturn]] void syntax_error(const std::string& source, size_t pos, const std::string& what) {
    raise(ErrorCode::InvalidFile, "chat template syntax error at {}: {}", describe_position(source, pos), what);
}

// Python "unicode-escape" decoding of a string literal body (what jinja2 does with string tokens).
std::string unescape(const std::string& source, size_t pos, std::string_view body) {
    std::string out;
    for (size_t i = 0; i < body.size(); ++i) {
        char c = body[i];
        if (c != '\\' || i + 1 == body.size()) {
            out += c;
            continue;
        }
        char e = body[++i];
        auto hex = [&](size_t n) -> char32_t {
            char32_t v = 0;
            for (size_t k = 1; k <= n; ++k) {
                if (i + k >= body.size() || !std::isxdigit(static_cast<unsigned char>(body[i + k])))
                    syntax_error(source, pos, "truncated \\x/\\u escape in string literal");
                char h = body[i + k];
                v = v * 16 + static_cast<char32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0'
                                                                                               : (h | 0x20) - 'a' + 10);
            }
            i += n;
            return v;
        };
        switch (e) {
            case '\n': break;
            case '\\': out += '\\'; break;
            case '\'': out += '\''; break;
            case '"': out += '"'; break;
            case 'a': out += '\a'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'v': out += '\v'; break;
            case 'x': utf8_append(out, hex(2)); break;
            case 'u': utf8_append(out, hex(4)); break;
            case 'U': utf8_append(out, hex(8)); break;
            default:
                if (e >= '0' && e <= '7') {
                    char32_t v = static_cast<char32_t>(e - '0');
                    for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k)
                        v = v * 8 + static_cast<char32_t>(body[++i] - '0');
                    utf8_append(out, v);
                } else {
                    out += '\\';
                    out += e;
                }
        }
    }
    return out;
}

// Matches `{%[-+]?\s*NAME\s*` at pos followed by an end of block; returns the end position of the whole tag
// (after the trim rules) and the strip sign of the opener, or npos.
struct TagMatch {
    size_t end = std::string::npos;
    char open_sign = 0;
    bool ends_with_newline = false;
};

TagMatch match_named_tag(const std::string& s, size_t pos, std::string_view name, bool allow_trim_newline) {
    TagMatch m;
    if (s.compare(pos, 2, "{%") != 0) return m;
    size_t i = pos + 2;
    char sign = 0;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) sign = s[i++];
    while (i < s.size() && is_ws(s[i])) ++i;
    if (s.compare(i, name.size(), name) != 0) return m;
    i += name.size();
    if (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) return m;
    while (i < s.size() && is_ws(s[i])) ++i;
    if (s.compare(i, 3, "-%}") == 0) {
        i = skip_py_space(s, i + 3);
    } else if (allow_trim_newline && s.compare(i, 3, "+%}") == 0) {
        i += 3;
    } else if (s.compare(i, 2, "%}") == 0) {
        i += 2;
        if (allow_trim_newline && i < s.size() && s[i] == '\n') ++i;
    } else {
        return m;
    }
    m.end = i;
    m.open_sign = sign;
    m.ends_with_newline = i > 0 && s[i - 1] == '\n';
    return m;
}

// lstrip_blocks: drop the spaces/tabs between the last newline of `text` and a block/comment tag.
void lstrip_block(std::string& text, bool line_starting) {
    size_t l_pos = text.rfind('\n');
    l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
    if (l_pos == 0 && !line_starting) return;
    if (l_pos == text.size()) return;
    std::string tail = text.substr(l_pos);
    std::string stripped = tail;
    rstrip_py(stripped);
    if (stripped.empty()) text.resize(l_pos);
}

const char* const kOps2[] = {"//", "**", "==", "!=", "<=", ">="};
const char kOps1[] = "+-*/%~<>=()[]{},.:|;";

}  // namespace

std::string describe_position(const std::string& source, size_t pos) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < source.size(); ++i) {
        if (source[i] == '\n') {
            ++line;
            col = 1;
        } else if ((static_cast<unsigned char>(source[i]) & 0xC0) != 0x80) {
            ++col;
        }
    }
    return fmt::format("line {}, column {}", line, col);
}

std::string normalize_template_source(std::string_view source) {
    std::string out;
    out.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
        if (source[i] == '\r') {
            out += '\n';
            if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
        } else {
            out += source[i];
        }
    }
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

std::vector<Token> tokenize_template(const std::string& s) {
    std::vector<Token> tokens;
    size_t pos = 0;
    bool line_starting = true;
    auto emit_data = [&](std::string text, size_t at) {
        if (!text.empty()) tokens.push_back({TokenKind::Data, std::move(text), at});
    };
    while (pos < s.size()) {
        size_t tag = pos;
        while (true) {
            tag = s.find('{', tag);
            if (tag == std::string::npos || tag + 1 >= s.size()) {
                tag = std::string::npos;
                break;
            }
            char c = s[tag + 1];
            if (c == '{' || c == '%' || c == '#') break;
            ++tag;
        }
        if (tag == std::string::npos) {
            emit_data(s.substr(pos), pos);
            break;
        }
        std::string text = s.substr(pos, tag - pos);
        char kind = s[tag + 1];
        char sign = tag + 2 < s.size() && (s[tag + 2] == '-' || s[tag + 2] == '+') ? s[tag + 2] : 0;
        TagMatch raw = kind == '%' ? match_named_tag(s, tag, "raw", false) : TagMatch{};
        if (sign == '-') {
            rstrip_py(text);
        } else if (sign != '+' && kind != '{') {
            lstrip_block(text, line_starting);
        }
        emit_data(std::move(text), pos);

        if (raw.end != std::string::npos) {
            size_t body_start = raw.end;
            size_t search = body_start;
            while (true) {
                size_t cand = s.find("{%", search);
                if (cand == std::string::npos) syntax_error(s, tag, "missing end of raw directive");
                TagMatch end = match_named_tag(s, cand, "endraw", true);
                if (end.end == std::string::npos) {
                    search = cand + 2;
                    continue;
                }
                std::string body = s.substr(body_start, cand - body_start);
                if (end.open_sign == '-') rstrip_py(body);
                else if (end.open_sign != '+') lstrip_block(body, false);
                emit_data(std::move(body), body_start);
                pos = end.end;
                line_starting = end.ends_with_newline;
                break;
            }
            continue;
        }

        if (kind == '#') {
            size_t i = tag + 2;
            while (true) {
                size_t close = s.find("#}", i);
                if (close == std::string::npos) syntax_error(s, tag, "missing end of comment tag");
                if (close > tag + 2 && s[close - 1] == '-') {
                    pos = skip_py_space(s, close + 2);
                } else {
                    pos = close + 2;
                    bool keep = close > tag + 2 && s[close - 1] == '+';
                    if (!keep && pos < s.size() && s[pos] == '\n') ++pos;
                }
                break;
            }
            line_starting = pos > 0 && s[pos - 1] == '\n';
            continue;
        }

        bool is_block = kind == '%';
        tokens.push_back({is_block ? TokenKind::BlockBegin : TokenKind::VarBegin, "", tag});
        size_t i = tag + 2 + (sign ? 1 : 0);
        int depth = 0;  // open brackets: an end delimiter inside them does not close the tag
        const char* close = is_block ? "%}" : "}}";
        while (true) {
            while (i < s.size() && is_ws(s[i])) ++i;
            if (i >= s.size()) syntax_error(s, tag, is_block ? "unexpected end of template, expected '%}'"
                                                             : "unexpected end of template, expected '}}'");
            if (depth == 0) {
                bool minus = s.compare(i, 3, std::string("-") + close) == 0;
                bool plus = is_block && s.compare(i, 3, std::string("+") + close) == 0;
                if (minus || plus || s.compare(i, 2, close) == 0) {
                    tokens.push_back({is_block ? TokenKind::BlockEnd : TokenKind::VarEnd, "", i});
                    if (minus) {
                        i = skip_py_space(s, i + 3);
                    } else if (plus) {
                        i += 3;
                    } else {
                        i += 2;
                        if (is_block && i < s.size() && s[i] == '\n') ++i;
                    }
                    break;
                }
            }
            char c = s[i];
            size_t start = i;
            if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
                while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
                tokens.push_back({TokenKind::Name, s.substr(start, i - start), start});
            } else if (std::isdigit(static_cast<unsigned char>(c))) {
                auto digits = [&] {
                    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) ||
                                            (s[i] == '_' && i + 1 < s.size() &&
                                             std::isdigit(static_cast<unsigned char>(s[i + 1])))))
                        ++i;
                };
                digits();
                bool is_float = false;
                bool after_dot = start > 0 && s[start - 1] == '.';
                if (!after_dot && i + 1 < s.size() && s[i] == '.' &&
                    std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
                    ++i;
                    digits();
                    is_float = true;
                }
                if (!after_dot && i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
                    size_t j = i + 1;
                    if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
                    if (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) {
                        i = j;
                        digits();
                        is_float = true;
                    }
                }
                std::string num;
                for (size_t k = start; k < i; ++k)
                    if (s[k] != '_') num += s[k];
                tokens.push_back({is_float ? TokenKind::Float : TokenKind::Int, num, start});
            } else if (c == '\'' || c == '"') {
                ++i;
                while (i < s.size() && s[i] != c) i += s[i] == '\\' ? 2 : 1;
                if (i >= s.size()) syntax_error(s, start, "unterminated string literal");
                ++i;
                std::string_view body(s.data() + start + 1, i - start - 2);
                tokens.push_back({TokenKind::String, unescape(s, start, body), start});
            } else {
                std::string op;
                for (const char* o : kOps2)
                    if (s.compare(i, 2, o) == 0) op = o;
                if (op.empty() && std::strchr(kOps1, c) && c != 0) op = std::string(1, c);
                if (op.empty()) syntax_error(s, i, fmt::format("unexpected character '{}'", c));
                i += op.size();
                if (op == "(" || op == "[" || op == "{") ++depth;
                if ((op == ")" || op == "]" || op == "}") && depth > 0) --depth;
                tokens.push_back({TokenKind::Op, op, start});
            }
        }
        pos = i;
        line_starting = pos > 0 && s[pos - 1] == '\n';
    }
    tokens.push_back({TokenKind::Eof, "", s.size()});
    return tokens;
}

}  // namespace osprey::tokenizer::jinja
