// ChatTemplate vs transformers' apply_chat_template, byte for byte, on real templates (SmolLM2 from its GGUF,
// Llama 3 and Qwen3 from ../shared tokenizer configs) and Mistral/Gemma/Llama-3.1-style templates.
// Goldens: tests/golden/make_chat_template_goldens.py -> tests/golden/data/chat_templates/templates.json.
#include "tokenizer/chat_template.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"

namespace osprey::tokenizer {
namespace {

using nlohmann::ordered_json;

const ordered_json& golden() {
    static const ordered_json doc = [] {
        std::ifstream in(std::string(OSPREY_SOURCE_DIR) + "/tests/golden/data/chat_templates/templates.json");
        return in ? ordered_json::parse(in) : ordered_json::object();
    }();
    return doc;
}

size_t n_cases() { return golden().contains("cases") ? golden()["cases"].size() : 0; }

std::string shared_dir() {
    const char* env = std::getenv("OSPREY_SHARED_DIR");
    return env ? env : OSPREY_SHARED_DIR;
}

// The template source, or "" if it lives in a shared/ file that is absent.
std::string template_source(const std::string& name) {
    const ordered_json& t = golden()["templates"][name];
    if (t.contains("text")) return t["text"].get<std::string>();
    std::ifstream in(shared_dir() + "/" + t["shared"].get<std::string>());
    if (!in) return "";
    return ordered_json::parse(in)["chat_template"].get<std::string>();
}

ChatTemplate make_template(const std::string& name) {
    const ordered_json& t = golden()["templates"][name];
    return ChatTemplate(template_source(name), t["bos_token"].get<std::string>(), t["eos_token"].get<std::string>());
}

class ChatTemplateGolden : public ::testing::TestWithParam<size_t> {};

TEST_P(ChatTemplateGolden, MatchesTransformers) {
    ASSERT_LT(GetParam(), n_cases()) << "templates.json missing: run tests/golden/make_chat_template_goldens.py";
    const ordered_json& c = golden()["cases"][GetParam()];
    const std::string name = c["template"].get<std::string>();
    SCOPED_TRACE(name + " / " + c["conversation"].get<std::string>() +
                 (c["add_generation_prompt"].get<bool>() ? " / generation prompt" : ""));
    if (template_source(name).empty()) GTEST_SKIP() << "template source for " << name << " not found under " << shared_dir();
    ChatTemplate tmpl = make_template(name);
    bool gen = c["add_generation_prompt"].get<bool>();
    if (c.contains("expected")) {
        EXPECT_EQ(tmpl.render(c["messages"], gen, c["extra"]), c["expected"].get<std::string>());
    } else {
        try {
            tmpl.render(c["messages"], gen, c["extra"]);
            FAIL() << "expected: " << c["expected_error"];
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
            EXPECT_NE(std::string(e.what()).find(c["expected_error"].get<std::string>()), std::string::npos) << e.what();
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Golden, ChatTemplateGolden, ::testing::Range<size_t>(0, std::max<size_t>(n_cases(), 1)));

TEST(ChatTemplate, GoldenCoversEveryRequiredTemplate) {
    ASSERT_GE(n_cases(), 60u);
    for (const char* name : {"smollm2", "llama3", "qwen3", "mistral_style", "gemma_style", "llama31_style"}) {
        size_t n = 0;
        for (const auto& c : golden()["cases"]) n += c["template"] == name;
        EXPECT_GE(n, 4u) << name;
    }
}

TEST(ChatTemplate, SyntaxErrorIsInvalidFileWithPosition) {
    try {
        ChatTemplate t("{% for m in messages %}\n{{ m.content }\n{% endfor %}", "", "");
        FAIL() << "expected a syntax error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidFile);
        EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    }
    try {
        ChatTemplate t("{% if messages %}never closed", "", "");
        FAIL() << "expected a syntax error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidFile);
        EXPECT_NE(std::string(e.what()).find("endif"), std::string::npos) << e.what();
    }
}

TEST(ChatTemplate, BadConversationsAreInvalidArgument) {
    ChatTemplate t("{% for m in messages %}{{ m.role }}:{{ m.content }}\n{% endfor %}", "", "");
    auto code = [&](const nlohmann::json& messages) {
        try {
            t.render(messages, false);
        } catch (const Error& e) {
            return e.code();
        }
        return ErrorCode::Internal;
    };
    EXPECT_EQ(code(nlohmann::json::array()), ErrorCode::InvalidArgument);
    EXPECT_EQ(code(nlohmann::json::object()), ErrorCode::InvalidArgument);
    EXPECT_EQ(code(nlohmann::json::array({"not an object"})), ErrorCode::InvalidArgument);
    nlohmann::json deep = nlohmann::json::parse(std::string(5000, '[') + std::string(5000, ']'));
    EXPECT_EQ(code(nlohmann::json::array({{{"role", "user"}, {"content", deep}}})), ErrorCode::InvalidArgument);
}

TEST(ChatTemplate, PlainJsonOverloadRendersAndDropsNulls) {
    ChatTemplate t("{{ bos_token }}{% for m in messages %}[{{ m.role }}|{{ m.name is defined }}]{{ m.content }}"
                   "{% endfor %}{% if add_generation_prompt %}{{ eos_token }}{% endif %}{{ tools is none }}",
                   "<s>", "</s>");
    nlohmann::json messages = nlohmann::json::array({{{"role", "user"}, {"content", "hi"}, {"name", nullptr}}});
    EXPECT_EQ(t.render(messages, true), "<s>[user|False]hi</s>True");
    EXPECT_EQ(t.render(messages, false, {{"tools", nlohmann::json::array({1})}}), "<s>[user|False]hiFalse");
}

TEST(ChatTemplate, EmptySpecialTokenIsUndefinedLikeNone) {
    ChatTemplate t("{{ bos_token is defined }}|{{ eos_token }}", "", "<eos>");
    EXPECT_EQ(t.render(nlohmann::json::array({{{"role", "user"}, {"content", "x"}}}), false), "False|<eos>");
}

TEST(ChatTemplate, RenderIsRepeatableAndTemplateIsReusable) {
    ChatTemplate t("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}",
                   "", "");
    nlohmann::json two = nlohmann::json::array({{{"role", "user"}, {"content", "a"}}, {{"role", "user"}, {"content", "b"}}});
    EXPECT_EQ(t.render(two, false), "2");
    EXPECT_EQ(t.render(two, false), "2");  // namespaces do not leak between renders
}

TEST(ChatTemplate, HostileTemplatesFailCleanly) {
    nlohmann::json one = nlohmann::json::array({{{"role", "user"}, {"content", "x"}}});
    for (const char* src : {"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
                            "{% for a in range(99999) %}{% for b in range(99999) %}{{ a }}{% endfor %}{% endfor %}",
                            "{% set ns = namespace(l=[]) %}{% for i in range(2000) %}{% set ns.l = [ns.l] %}{% endfor %}",
                            "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"}) {
        ChatTemplate t(src, "", "");
        try {
            t.render(one, false);
            FAIL() << "expected an error for " << src;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << src << ": " << e.what();
        }
    }
}

}  // namespace
}  // namespace osprey::tokenizer
