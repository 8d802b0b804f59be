// TextStream: turns one sequence's sampled tokens into text deltas — incremental detokenization that never emits a
// broken UTF-8 sequence, and stop strings matched across token boundaries and never emitted. Text that could still
// turn out to be the start of a stop string is held back until it cannot.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/incremental_decoder.h"

namespace osprey::engine {

class TextStream {
  public:
    TextStream(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop_strings, bool skip_special);

    struct Delta {
        std::string text;       // text safe to emit now
        bool stopped = false;   // a stop string matched: the text up to it was emitted, generation must end
    };
    Delta push(int32_t token);
    // End of generation: whatever is still held back (an incomplete UTF-8 tail becomes U+FFFD).
    std::string finish();

  private:
    tokenizer::IncrementalDecoder decoder_;
    std::vector<std::string> stops_;
    size_t max_stop_len_ = 0;
    std::string held_;  // decoded text not yet emitted (a possible stop-string prefix)
    bool stopped_ = false;
};

}  // namespace osprey::engine
