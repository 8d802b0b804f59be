// Python printf-style string formatting: "%s and %d" % (a, b), "%(name)s" % mapping.
#include "core/error.h"
#include "tokenizer/jinja_interpreter.h"
#include "tokenizer/jinja_strings.h"

namespace osprey::tokenizer::jinja {

namespace {

[[noreturn]] void fail(const std::string& what) { raise(ErrorCode::InvalidArgument, "chat template: {}", what); }

std::string pad(std::string s, int width, bool left_align, char fill = ' ') {
    auto n = static_cast<int>(py_len(s));
    if (width <= n) return s;
    std::string padding(static_cast<size_t>(width - n), fill);
    return left_align ? s + padding : padding + s;
}

}  // namespace

Value percent_format(const std::string& format, const Value& args) {
    ValueList positional;
    const Dict* mapping = nullptr;
    if (args.is_tuple()) positional = args.as_list();
    else if (args.is_dict()) mapping = &args.as_dict();
    else positional.push_back(args);
    size_t next = 0;
    std::string out;
    for (size_t i = 0; i < format.size(); ++i) {
        if (format[i] != '%') {
            out += format[i];
            continue;
        }
        if (++i >= format.size()) fail("incomplete format");
        const Value* v = nullptr;
        if (format[i] == '(') {
            size_t close = format.find(')', i);
            if (close == std::string::npos || !mapping) fail("format requires a mapping");
            v = mapping->find(std::string_view(format).substr(i + 1, close - i - 1));
            if (!v) fail("format key not found");
            i = close + 1;
        }
        bool left = false, zero = false, plus = false, space = false, alt = false;
        for (; i < format.size(); ++i) {
            char c = format[i];
            if (c == '-') left = true;
            else if (c == '0') zero = true;
            else if (c == '+') plus = true;
            else if (c == ' ') space = true;
            else if (c == '#') alt = true;
            else break;
        }
        int width = 0, precision = -1;
        while (i < format.size() && std::isdigit(static_cast<unsigned char>(format[i])))
            width = std::min(width * 10 + (format[i++] - '0'), 4096);
        if (i < format.size() && format[i] == '.') {
            precision = 0;
            ++i;
            while (i < format.size() && std::isdigit(static_cast<unsigned char>(format[i])))
                precision = std::min(precision * 10 + (format[i++] - '0'), 512);
        }
        if (i >= format.size()) fail("incomplete format");
        char type = format[i];
        if (type == '%') {
            out += '%';
            continue;
        }
        if (!v) {
            if (mapping) v = &args;
        }
        if (!v) {
            if (next >= positional.size()) fail("not enough arguments for format string");
            v = &positional[next++];
        }
        std::string piece;
        switch (type) {
            case 's':
            case 'r':
            case 'a': {
                piece = type == 's' ? v->str() : v->repr();
                if (precision >= 0) {
                    std::u32string u = utf8_decode(piece);
                    if (u.size() > static_cast<size_t>(precision)) piece = utf8_encode(u.substr(0, static_cast<size_t>(precision)));
                }
                out += pad(piece, width, left);
                continue;
            }
            case 'd':
            case 'i':
            case 'u':
            case 'x':
            case 'X':
            case 'o': {
                if (!v->is_number()) fail(fmt::format("%{} format: a number is required, not {}", type, v->type_name()));
                int64_t n = v->is_float() ? static_cast<int64_t>(v->as_float()) : v->as_int();
                std::string digits;
                uint64_t mag = n < 0 ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
                if (type == 'x') digits = fmt::format("{:x}", mag);
                else if (type == 'X') digits = fmt::format("{:X}", mag);
                else if (type == 'o') digits = fmt::format("{:o}", mag);
                else digits = std::to_string(mag);
                if (alt && (type == 'x' || type == 'X' || type == 'o')) digits = std::string("0") + (type == 'o' ? 'o' : type) + digits;
                if (precision > static_cast<int>(digits.size())) digits = std::string(precision - digits.size(), '0') + digits;
                std::string sign = n < 0 ? "-" : plus ? "+" : space ? " " : "";
                if (zero && !left && width > static_cast<int>(sign.size() + digits.size()))
                    digits = std::string(width - sign.size() - digits.size(), '0') + digits;
                out += pad(sign + digits, width, left);
                continue;
            }
            case 'f':
            case 'F':
            case 'e':
            case 'E':
            case 'g':
            case 'G': {
                if (!v->is_number()) fail(fmt::format("must be real number, not {}", v->type_name()));
                std::string spec = "%";
                if (plus) spec += '+';
                if (space) spec += ' ';
                if (alt) spec += '#';
                if (zero && !left) spec += '0';
                if (left) spec += '-';
                spec += std::to_string(width) + "." + std::to_string(precision < 0 ? 6 : precision) + type;
                char buf[1024];
                std::snprintf(buf, sizeof(buf), spec.c_str(), v->as_float());
                out += buf;
                continue;
            }
            case 'c': {
                if (v->is_string()) piece = v->as_string();
                else if (v->is_int()) utf8_append(piece, static_cast<char32_t>(v->as_int()));
                else fail("%c requires int or char");
                out += pad(piece, width, left);
                continue;
            }
            default: fail(fmt::format("unsupported format character '{}'", type));
        }
    }
    if (!mapping && next < positional.size()) fail("not all arguments converted during string formatting");
    return Value(std::move(out));
}

}  // namespace osprey::tokenizer::jinja
