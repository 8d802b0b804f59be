#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "tokenizer/jinja_interpreter.h"
#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_parser.h"

namespace osprey::tokenizer {

namespace {

// nlohmann::json -> ordered_json without dump/parse (which recurse without bound on hostile nesting).
nlohmann::ordered_json to_ordered(const nlohmann::json& j, int depth = 0) {
    if (depth > jinja::kMaxValueDepth)
        raise(ErrorCode::InvalidArgument, "chat template: JSON input nested deeper than {} levels", jinja::kMaxValueDepth);
    if (j.is_array()) {
        nlohmann::ordered_json out = nlohmann::ordered_json::array();
        for (const auto& e : j) out.push_back(to_ordered(e, depth + 1));
        return out;
    }
    if (j.is_object()) {
        nlohmann::ordered_json out = nlohmann::ordered_json::object();
        for (const auto& [k, e] : j.items()) out[k] = to_ordered(e, depth + 1);
        return out;
    }
    switch (j.type()) {
        case nlohmann::json::value_t::null: return nullptr;
        case nlohmann::json::value_t::boolean: return j.get<bool>();
        case nlohmann::json::value_t::number_integer: return j.get<int64_t>();
        case nlohmann::json::value_t::number_unsigned: return j.get<uint64_t>();
        case nlohmann::json::value_t::number_float: return j.get<double>();
        case nlohmann::json::value_t::string: return j.get<std::string>();
        default: raise(ErrorCode::InvalidArgument, "chat template: unsupported JSON value of type {}", j.type_name());
    }
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
    return render(to_ordered(messages), add_generation_prompt, to_ordered(extra));
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra) const {
    using jinja::Value;
    if (!extra.is_object() && !extra.is_null())
        raise(ErrorCode::InvalidArgument, "chat template: extra variables must be a JSON object");
    auto globals = std::make_shared<jinja::Frame>();
    jinja::add_globals(*globals);

    // transformers' _normalize_chat_messages (drop null-valued keys) and _alias_reasoning_fields.
    if (!messages.is_array())
        raise(ErrorCode::InvalidArgument, "chat template: messages must be a JSON array, got {}", messages.type_name());
    if (messages.empty())
        raise(ErrorCode::InvalidArgument,
              "Cannot apply chat template to an empty conversation. Provide at least one message.");
    jinja::ValueList chat;
    for (const auto& message : messages) {
        if (!message.is_object())
            raise(ErrorCode::InvalidArgument, "chat template: chat messages should be objects, got {}",
                  message.type_name());
        jinja::Dict fields;
        for (const auto& [k, v] : message.items())
            if (!v.is_null()) fields.set(Value(k), Value::from_json(v));
        static const char* const kReasoningFields[] = {"reasoning_content", "thinking", "reasoning"};
        const Value* reasoning = nullptr;
        for (const char* field : kReasoningFields)
            if ((reasoning = fields.find(std::string_view(field)))) break;
        if (reasoning) {
            jinja::Dict aliased;
            aliased.set(Value("thinking"), *reasoning);
            for (const auto& [k, v] : fields.items()) aliased.set(k, v);
            aliased.set(Value("reasoning_content"), *reasoning);
            fields = std::move(aliased);
        }
        chat.push_back(Value::dict(std::move(fields)));
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
