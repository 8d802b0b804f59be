#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "tokenizer/jinja_interpreter.h"
#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_parser.h"

namespace osprey::tokenizer {

namespace {

// transformers' _normalize_chat_messages (drop null-valued keys) and _alias_reasoning_fields.
nlohmann::ordered_json normalize_messages(const nlohmann::ordered_json& messages) {
    if (!messages.is_array())
        raise(ErrorCode::InvalidArgument, "chat template: messages must be a JSON array, got {}", messages.type_name());
    if (messages.empty())
        raise(ErrorCode::InvalidArgument, "Cannot apply chat template to an empty conversation. Provide at least one message.");
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& message : messages) {
        if (!message.is_object())
            raise(ErrorCode::InvalidArgument, "chat template: chat messages should be objects, got {}", message.dump());
        nlohmann::ordered_json clean = nlohmann::ordered_json::object();
        for (const auto& [k, v] : message.items())
            if (!v.is_null()) clean[k] = v;
        out.push_back(std::move(clean));
    }
    return out;
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token)
    : source_(jinja::normalize_template_source(source)),
      bos_token_(std::move(bos_token)),
      eos_token_(std::move(eos_token)) {
    jinja::Parser parser(source_, jinja::tokenize_template(source_));
    body_ = std::make_unique<jinja::Body>(parser.parse());
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::json& messages, bool add_generation_prompt,
                                 const nlohmann::json& extra) const {
    return render(nlohmann::ordered_json::parse(messages.dump()), add_generation_prompt,
                  nlohmann::ordered_json::parse(extra.dump()));
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra) const {
    using jinja::Value;
    if (!extra.is_object() && !extra.is_null())
        raise(ErrorCode::InvalidArgument, "chat template: extra variables must be a JSON object");
    auto globals = std::make_shared<jinja::Frame>();
    jinja::add_globals(*globals);

    jinja::ValueList chat;
    for (const auto& message : normalize_messages(messages)) {
        Value m = Value::from_json(message);
        static const char* const kReasoningFields[] = {"reasoning_content", "thinking", "reasoning"};
        const Value* reasoning = nullptr;
        for (const char* field : kReasoningFields)
            if ((reasoning = m.as_dict().find(std::string_view(field)))) break;
        if (reasoning) {
            jinja::Dict aliased;
            aliased.set(Value("thinking"), *reasoning);
            for (const auto& [k, v] : m.as_dict().items()) aliased.set(k, v);
            aliased.set(Value("reasoning_content"), *reasoning);
            m = Value::dict(std::move(aliased));
        }
        chat.push_back(std::move(m));
    }
    globals->set("messages", Value::list(std::move(chat)));
    globals->set("tools", Value::none());
    globals->set("documents", Value::none());
    globals->set("add_generation_prompt", Value(add_generation_prompt));
    if (!bos_token_.empty()) globals->set("bos_token", Value(bos_token_));
    if (!eos_token_.empty()) globals->set("eos_token", Value(eos_token_));
    if (extra.is_object())
        for (const auto& [k, v] : extra.items()) globals->set(k, Value::from_json(v));

    jinja::Interpreter interpreter(source_, jinja::RenderLimits{});
    return interpreter.render(*body_, globals);
}

}  // namespace osprey::tokenizer
