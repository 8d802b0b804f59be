// SseParser: splits a Server-Sent Events byte stream into the payloads of its `data:` lines, fed in arbitrary pieces
// (a network read may end mid-line). Comment lines (":...") and other fields (event:, id:, retry:) are skipped; one
// space after the colon is dropped, as the SSE spec says. "[DONE]" is returned like any other payload.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace osprey::bench {

class SseParser {
  public:
    // Appends `bytes` and returns the payloads of the lines completed by them, in order.
    std::vector<std::string> feed(std::string_view bytes);
    // The payload of a last `data:` line that had no newline (end of stream), if any.
    std::vector<std::string> finish();

  private:
    void take_line(std::string_view line, std::vector<std::string>& out) const;
    std::string pending_;
};

}  // namespace osprey::bench
