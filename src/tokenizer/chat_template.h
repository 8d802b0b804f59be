// ChatTemplate: renders a model's own Jinja2 chat template (tokenizer_config.json `chat_template` or GGUF
// `tokenizer.chat_template`) byte-identically to Hugging Face transformers' apply_chat_template.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace osprey::tokenizer {

namespace jinja {
struct Stmt;
}

class ChatTemplate {
  public:
    // Parses once; an empty bos/eos token leaves that variable undefined (as transformers does for None).
    // throws osprey::Error(ErrorCode::InvalidFile, ...) with line/column on a syntax error.
    ChatTemplate(std::string source, std::string bos_token, std::string eos_token);
    ~ChatTemplate();
    ChatTemplate(ChatTemplate&&) noexcept;
    ChatTemplate& operator=(ChatTemplate&&) noexcept;

    // messages: JSON array of {"role", "content", optional "tool_calls", ...}; extra: more top-level variables
    // (e.g. tools, date_string, enable_thinking). Like transformers, keys whose value is null are dropped from
    // messages, reasoning fields are aliased (reasoning_content/thinking), and `tools`/`documents` default to
    // none. Throws Error(InvalidArgument) for raise_exception() or a bad conversation.
    std::string render(const nlohmann::json& messages, bool add_generation_prompt,
                       const nlohmann::json& extra = nlohmann::json::object()) const;
    // Same, keeping the key order of JSON objects as given. nlohmann::json stores object keys sorted, so use
    // this overload when the template prints whole objects (tool arguments | tojson) and key order matters.
    std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                       const nlohmann::ordered_json& extra) const;

    const std::string& source() const { return source_; }

  private:
    std::string source_;  // newline-normalized
    std::string bos_token_;
    std::string eos_token_;
    std::unique_ptr<std::vector<std::unique_ptr<jinja::Stmt>>> body_;
};

}  // namespace osprey::tokenizer
