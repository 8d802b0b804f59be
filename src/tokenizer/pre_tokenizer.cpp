#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <map>
#include <mutex>

#include "core/error.h"

namespace osprey::tokenizer {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_offset, nullptr);
    if (code == nullptr) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof(msg));
        raise(ErrorCode::InvalidFile, "tokenizer pre-tokenizer regex does not compile at offset {}: {} (pattern: {})",
              err_offset, reinterpret_cast<const char*>(msg), pattern);
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional: falls back to the interpreter on failure
    code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> out;
    auto* code = static_cast<pcre2_code*>(code_);
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0;
    while (pos <= text.size()) {
        const int rc = pcre2_match(code, subject, text.size(), pos, 0, md, nullptr);
        if (rc < 0) break;  // no match (or a match-time error: the rest stays unmatched)
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t b = ov[0], e = ov[1];
        if (e == b) {  // empty match: step over one byte/character
            pos = b + 1;
            while (pos < text.size() && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) ++pos;
            continue;
        }
        out.emplace_back(b, e);
        pos = e;
    }
    pcre2_match_data_free(md);
    return out;
}

void split_by_regex(std::string_view text, const Regex& re, SplitBehavior behavior, bool invert,
                    std::vector<std::string>& out) {
    struct Seg {
        size_t b, e;
        bool match;
    };
    std::vector<Seg> segs;
    size_t prev = 0;
    for (auto [b, e] : re.find_all(text)) {
        if (b > prev) segs.push_back({prev, b, false});
        segs.push_back({b, e, true});
        prev = e;
    }
    if (prev < text.size()) segs.push_back({prev, text.size(), false});
    if (invert) {
        for (auto& s : segs) s.match = !s.match;
    }
    auto piece = [&](size_t b, size_t e) { return std::string(text.substr(b, e - b)); };
    switch (behavior) {
        case SplitBehavior::Removed:
            for (const auto& s : segs)
                if (!s.match) out.push_back(piece(s.b, s.e));
            break;
        case SplitBehavior::Isolated:
            for (const auto& s : segs) out.push_back(piece(s.b, s.e));
            break;
        case SplitBehavior::Contiguous: {
            size_t i = 0;
            while (i < segs.size()) {
                size_t j = i + 1;
                while (j < segs.size() && segs[j].match && segs[i].match && segs[j].b == segs[j - 1].e) ++j;
                out.push_back(piece(segs[i].b, segs[j - 1].e));
                i = j;
            }
            break;
        }
        case SplitBehavior::MergedWithPrevious: {
            size_t start = 0;
            bool open = false;
            for (const auto& s : segs) {
                if (!open) start = s.b;
                open = true;
                if (s.match) {
                    out.push_back(piece(start, s.e));
                    open = false;
                }
            }
            if (open) out.push_back(piece(start, text.size()));
            break;
        }
        case SplitBehavior::MergedWithNext: {
            size_t start = 0;
            for (size_t i = 0; i < segs.size(); ++i) {
                if (segs[i].match && segs[i].b > start) {
                    out.push_back(piece(start, segs[i].b));
                    start = segs[i].b;
                }
            }
            if (start < text.size()) out.push_back(piece(start, text.size()));
            break;
        }
    }
}

std::shared_ptr<Regex> PreTokenizer::regex(const std::string& pattern) {
    static std::mutex mu;
    static std::map<std::string, std::weak_ptr<Regex>> cache;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(pattern); it != cache.end()) {
        if (auto sp = it->second.lock()) return sp;
    }
    auto sp = std::make_shared<Regex>(pattern);
    cache[pattern] = sp;
    return sp;
}

void PreTokenizer::split(std::string_view text, bool first_fragment, std::vector<std::string>& words) const {
    std::vector<std::string> cur{std::string(text)};
    std::vector<std::string> next;
    for (const auto& step : steps_) {
        next.clear();
        for (size_t i = 0; i < cur.size(); ++i) {
            const std::string& p = cur[i];
            switch (step.kind) {
                case PreTokenizerStep::Kind::Split:
                    split_by_regex(p, *step.regex, step.behavior, step.invert, next);
                    break;
                case PreTokenizerStep::Kind::ByteLevel: {
                    std::string s = p;
                    if (step.add_prefix_space && i == 0 && (s.empty() || s[0] != ' ')) s.insert(s.begin(), ' ');
                    if (step.regex) {
                        split_by_regex(s, *step.regex, SplitBehavior::Isolated, false, next);
                    } else {
                        next.push_back(std::move(s));
                    }
                    break;
                }
                case PreTokenizerStep::Kind::Metaspace: {
                    std::string s;
                    for (char c : p) {
                        if (c == ' ') s += step.replacement;
                        else s.push_back(c);
                    }
                    const bool prepend = step.prepend == PreTokenizerStep::Prepend::Always ||
                                         (step.prepend == PreTokenizerStep::Prepend::First && first_fragment && i == 0);
                    if (prepend && s.compare(0, step.replacement.size(), step.replacement) != 0)
                        s.insert(0, step.replacement);
                    if (!step.metaspace_split) {
                        next.push_back(std::move(s));
                        break;
                    }
                    // Split before every replacement character (MergedWithNext).
                    size_t start = 0, pos = 0;
                    while ((pos = s.find(step.replacement, pos)) != std::string::npos) {
                        if (pos > start) {
                            next.push_back(s.substr(start, pos - start));
                            start = pos;
                        }
                        pos += step.replacement.size();
                    }
                    if (start < s.size()) next.push_back(s.substr(start));
                    break;
                }
            }
        }
        cur.swap(next);
    }
    for (auto& w : cur)
        if (!w.empty()) words.push_back(std::move(w));
}

}  // namespace osprey::tokenizer
