#include "tokenizer/jinja_strings.h"

#include <algorithm>

#include "tokenizer/jinja_value.h"

namespace osprey::tokenizer::jinja {

namespace {

char32_t to_lower(char32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) ||
        (c >= 0x410 && c <= 0x42F))
        return c + 0x20;
    if (c >= 0x400 && c <= 0x40F) return c + 0x50;
    return c;
}

char32_t to_upper(char32_t c) {
    if (c >= 'a' && c <= 'z') return c - 32;
    if ((c >= 0xE0 && c <= 0xFE && c != 0xF7) || (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) ||
        (c >= 0x430 && c <= 0x44F))
        return c - 0x20;
    if (c >= 0x450 && c <= 0x45F) return c - 0x50;
    return c;
}

bool is_cased(char32_t c) { return to_lower(c) != c || to_upper(c) != c; }

}  // namespace

std::string py_strip(std::string_view s, const std::optional<std::string>& chars, StripSide side) {
    std::u32string u = utf8_decode(s);
    std::u32string set = chars ? utf8_decode(*chars) : std::u32string();
    auto strip_it = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : is_py_space(c); };
    size_t b = 0, e = u.size();
    if (side != StripSide::Right)
        while (b < e && strip_it(u[b])) ++b;
    if (side != StripSide::Left)
        while (e > b && strip_it(u[e - 1])) --e;
    return utf8_encode(std::u32string_view(u).substr(b, e - b));
}

std::string py_lower(std::string_view s) {
    std::u32string u = utf8_decode(s);
    for (auto& c : u) c = to_lower(c);
    return utf8_encode(u);
}

std::string py_upper(std::string_view s) {
    std::u32string u = utf8_decode(s);
    for (auto& c : u) c = to_upper(c);
    return utf8_encode(u);
}

std::string py_title(std::string_view s) {
    std::u32string u = utf8_decode(s);
    bool prev_cased = false;
    for (auto& c : u) {
        char32_t orig = c;
        c = prev_cased ? to_lower(c) : to_upper(c);
        prev_cased = is_cased(orig);
    }
    return utf8_encode(u);
}

std::string py_capitalize(std::string_view s) {
    std::u32string u = utf8_decode(s);
    for (size_t i = 0; i < u.size(); ++i) u[i] = i == 0 ? to_upper(u[i]) : to_lower(u[i]);
    return utf8_encode(u);
}

std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep, long maxsplit,
                                  bool from_right) {
    std::vector<std::string> out;
    if (sep) {
        if (sep->empty()) return {std::string(s)};  // Python raises "empty separator"; callers check first
        if (!from_right) {
            size_t pos = 0;
            while (maxsplit < 0 || static_cast<long>(out.size()) < maxsplit) {
                size_t hit = s.find(*sep, pos);
                if (hit == std::string_view::npos) break;
                out.emplace_back(s.substr(pos, hit - pos));
                pos = hit + sep->size();
            }
            out.emplace_back(s.substr(pos));
        } else {
            size_t end = s.size();
            while (maxsplit < 0 || static_cast<long>(out.size()) < maxsplit) {
                if (end < sep->size()) break;
                size_t hit = s.rfind(*sep, end - sep->size());
                if (hit == std::string_view::npos) break;
                out.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
                end = hit;
            }
            out.emplace_back(s.substr(0, end));
            std::reverse(out.begin(), out.end());
        }
        return out;
    }
    std::u32string u = utf8_decode(s);
    if (!from_right) {
        size_t i = 0;
        while (true) {
            while (i < u.size() && is_py_space(u[i])) ++i;
            if (i >= u.size()) break;
            if (maxsplit >= 0 && static_cast<long>(out.size()) >= maxsplit) {
                size_t e = u.size();
                while (e > i && is_py_space(u[e - 1])) --e;
                out.push_back(utf8_encode(std::u32string_view(u).substr(i, e - i)));
                break;
            }
            size_t j = i;
            while (j < u.size() && !is_py_space(u[j])) ++j;
            out.push_back(utf8_encode(std::u32string_view(u).substr(i, j - i)));
            i = j;
        }
    } else {
        size_t i = u.size();
        while (true) {
            while (i > 0 && is_py_space(u[i - 1])) --i;
            if (i == 0) break;
            if (maxsplit >= 0 && static_cast<long>(out.size()) >= maxsplit) {
                size_t b = 0;
                while (b < i && is_py_space(u[b])) ++b;
                out.push_back(utf8_encode(std::u32string_view(u).substr(b, i - b)));
                break;
            }
            size_t j = i;
            while (j > 0 && !is_py_space(u[j - 1])) --j;
            out.push_back(utf8_encode(std::u32string_view(u).substr(j, i - j)));
            i = j;
        }
        std::reverse(out.begin(), out.end());
    }
    return out;
}

std::vector<std::string> py_splitlines(std::string_view s, bool keepends) {
    std::u32string u = utf8_decode(s);
    std::vector<std::string> out;
    size_t start = 0, i = 0;
    auto is_break = [](char32_t c) {
        return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
               c == 0x85 || c == 0x2028 || c == 0x2029;
    };
    while (i < u.size()) {
        if (!is_break(u[i])) {
            ++i;
            continue;
        }
        size_t eol = i;
        size_t next = i + 1;
        if (u[i] == '\r' && next < u.size() && u[next] == '\n') ++next;
        out.push_back(utf8_encode(std::u32string_view(u).substr(start, (keepends ? next : eol) - start)));
        start = i = next;
    }
    if (start < u.size()) out.push_back(utf8_encode(std::u32string_view(u).substr(start)));
    return out;
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view replacement, long count) {
    std::string out;
    if (old.empty()) {  // Python inserts the replacement between code points
        std::u32string u = utf8_decode(s);
        long n = 0;
        for (size_t i = 0; i <= u.size(); ++i) {
            if (count < 0 || n < count) {
                out += replacement;
                ++n;
            }
            if (i < u.size()) utf8_append(out, u[i]);
        }
        return out;
    }
    size_t pos = 0;
    long n = 0;
    while (count < 0 || n < count) {
        size_t hit = s.find(old, pos);
        if (hit == std::string_view::npos) break;
        out.append(s.substr(pos, hit - pos));
        out.append(replacement);
        pos = hit + old.size();
        ++n;
    }
    out.append(s.substr(pos));
    return out;
}

size_t py_len(std::string_view s) {
    size_t n = 0;
    for (char c : s)
        if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
    return n;
}

long py_count(std::string_view s, std::string_view sub) {
    if (sub.empty()) return static_cast<long>(py_len(s)) + 1;
    long n = 0;
    for (size_t pos = s.find(sub); pos != std::string_view::npos; pos = s.find(sub, pos + sub.size())) ++n;
    return n;
}

long py_find(std::string_view s, std::string_view sub, bool from_right) {
    size_t hit = from_right ? s.rfind(sub) : s.find(sub);
    if (hit == std::string_view::npos) return -1;
    return static_cast<long>(py_len(s.substr(0, hit)));
}

}  // namespace osprey::tokenizer::jinja
