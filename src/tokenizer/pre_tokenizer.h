// PreTokenizer: splits normalised text into words before the BPE/SPM model sees them.
//
// A sequence of steps in the spirit of tokenizer.json's pre_tokenizer: regex Split (PCRE2, UTF + Unicode
// properties), Digits, ByteLevel (GPT-2 regex) and Metaspace. Each step splits every current piece further.
// Invalid UTF-8 never fails: PCRE2 runs with PCRE2_MATCH_INVALID_UTF, so invalid bytes end up in unmatched gaps.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace osprey::tokenizer {

// A compiled PCRE2 pattern (UTF, UCP, JIT when available). Throws Error(InvalidFile) on a bad pattern.
class Regex {
  public:
    explicit Regex(const std::string& pattern);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    // All non-overlapping matches as [begin, end) byte offsets, leftmost first.
    std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
    const std::string& pattern() const { return pattern_; }

  private:
    std::string pattern_;
    void* code_ = nullptr;  // pcre2_code_8*
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreTokenizerStep {
    enum class Kind { Split, ByteLevel, Metaspace } kind = Kind::Split;
    std::shared_ptr<Regex> regex;  // Split (also ByteLevel when use_regex)
    SplitBehavior behavior = SplitBehavior::Isolated;
    bool invert = false;
    bool add_prefix_space = false;         // ByteLevel
    std::string replacement = "\xE2\x96\x81";  // Metaspace: "▁"
    enum class Prepend { Always, First, Never } prepend = Prepend::Always;  // Metaspace
    bool metaspace_split = true;
};

// The GPT-2 pre-tokenizer regex (also tokenizer.json's ByteLevel use_regex).
extern const char* const kGpt2Pattern;

class PreTokenizer {
  public:
    void add_step(PreTokenizerStep step) { steps_.push_back(std::move(step)); }
    bool empty() const { return steps_.empty(); }
    // Splits one fragment. `first_fragment`: the fragment starts the input (Metaspace prepend_scheme "first").
    void split(std::string_view text, bool first_fragment, std::vector<std::string>& words) const;

    static std::shared_ptr<Regex> regex(const std::string& pattern);

  private:
    std::vector<PreTokenizerStep> steps_;
};

// Splits `text` by the matches of `re` with the given behaviour, appending the pieces to `out`.
void split_by_regex(std::string_view text, const Regex& re, SplitBehavior behavior, bool invert,
                    std::vector<std::string>& out);

}  // namespace osprey::tokenizer
