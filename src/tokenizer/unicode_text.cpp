#include "tokenizer/unicode_text.h"

#include <array>

#ifdef OSPREY_WITH_ICU
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#endif

namespace osprey::tokenizer {

size_t utf8_seq_len(uint8_t lead) {
    if (lead < 0x80) return 1;
    if ((lead & 0xE0) == 0xC0) return 2;
    if ((lead & 0xF0) == 0xE0) return 3;
    if ((lead & 0xF8) == 0xF0) return 4;
    return 1;
}

size_t utf8_valid_len(std::string_view s, size_t pos) {
    const auto b0 = static_cast<uint8_t>(s[pos]);
    if (b0 < 0x80) return 1;
    size_t n = 0;
    uint32_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        n = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        n = 3;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (pos + n > s.size()) return 0;
    const auto b1 = static_cast<uint8_t>(s[pos + 1]);
    if (b1 < lo || b1 > hi) return 0;
    for (size_t i = 2; i < n; ++i) {
        const auto b = static_cast<uint8_t>(s[pos + i]);
        if ((b & 0xC0) != 0x80) return 0;
    }
    return n;
}

bool is_valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_valid_len(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

size_t utf8_complete_prefix(std::string_view s) {
    // Only the last up-to-3 bytes can be an incomplete sequence.
    const size_t n = s.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        const size_t pos = n - back;
        const auto b = static_cast<uint8_t>(s[pos]);
        if ((b & 0xC0) == 0x80) continue;  // continuation: look further back
        const size_t want = utf8_seq_len(b);
        if (want <= back) return n;  // complete (or invalid lead, counted as complete)
        // A prefix of a sequence: hold it back only if the bytes so far could still become valid.
        if (b < 0xC2 || b > 0xF4) return n;
        if (back >= 2) {
            const auto b1 = static_cast<uint8_t>(s[pos + 1]);
            uint8_t lo = 0x80, hi = 0xBF;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
            if (b1 < lo || b1 > hi) return n;
        }
        return pos;
    }
    return n;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

uint32_t decode_utf8(std::string_view s, size_t pos, size_t n) {
    const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(s[pos + i])); };
    switch (n) {
        case 1: return b(0);
        case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
        case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
        default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    }
}

std::string sanitize_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_valid_len(s, i);
        if (n == 0) {
            out += "\xEF\xBF\xBD";
            ++i;
        } else {
            out.append(s.substr(i, n));
            i += n;
        }
    }
    return out;
}

namespace {

struct ByteTables {
    std::array<std::string, 256> to_unicode;
    std::array<int, 512> from_unicode{};  // every mapped codepoint is < 512
    ByteTables() {
        from_unicode.fill(-1);
        int extra = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            const uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + extra++);
            append_utf8(to_unicode[b], cp);
            from_unicode[cp] = b;
        }
    }
};

const ByteTables& byte_tables() {
    static const ByteTables tables;
    return tables;
}

}  // namespace

const std::string& byte_to_unicode(uint8_t byte) { return byte_tables().to_unicode[byte]; }

int unicode_to_byte(uint32_t cp) { return cp < 512 ? byte_tables().from_unicode[cp] : -1; }

bool nfc_available() {
#ifdef OSPREY_WITH_ICU
    return true;
#else
    return false;
#endif
}

std::string nfc_normalize(std::string_view s) {
#ifdef OSPREY_WITH_ICU
    // Fast path: pure ASCII is always NFC.
    bool ascii = true;
    for (char c : s) {
        if (static_cast<uint8_t>(c) >= 0x80) {
            ascii = false;
            break;
        }
    }
    if (ascii) return std::string(s);
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
    if (U_FAILURE(status)) return std::string(s);
    std::string out;
    out.reserve(s.size());
    auto flush_run = [&](size_t begin, size_t end) {
        if (begin == end) return;
        icu::UnicodeString u = icu::UnicodeString::fromUTF8(
            icu::StringPiece(s.data() + begin, static_cast<int32_t>(end - begin)));
        UErrorCode st = U_ZERO_ERROR;
        icu::UnicodeString n = nfc->normalize(u, st);
        if (U_FAILURE(st)) {
            out.append(s.substr(begin, end - begin));
        } else {
            n.toUTF8String(out);
        }
    };
    size_t run = 0;
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_valid_len(s, i);
        if (n == 0) {
            flush_run(run, i);
            out.push_back(s[i]);
            ++i;
            run = i;
        } else {
            i += n;
        }
    }
    flush_run(run, s.size());
    return out;
#else
    return std::string(s);
#endif
}

}  // namespace osprey::tokenizer
