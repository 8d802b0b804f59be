// Jinja interpreter snippets vs jinja2 (goldens from tests/golden/make_chat_template_goldens.py, rendered with
// transformers' sandboxed environment), plus limits: recursion, loop and output bounds, parse depth.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/jinja_interpreter.h"
#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_parser.h"

namespace osprey::tokenizer::jinja {
namespace {

using nlohmann::ordered_json;

std::string render_snippet(const std::string& text, const ordered_json& context = ordered_json::object(),
                           RenderLimits limits = {}) {
    std::string source = normalize_template_source(text);
    Parser parser(source, tokenize_template(source));
    Body body = parser.parse();
    auto globals = std::make_shared<Frame>();
    add_globals(*globals);
    for (const auto& [k, v] : context.items()) globals->set(k, Value::from_json(v));
    Interpreter interpreter(source, limits);
    return interpreter.render(body, globals);
}

ErrorCode error_code_of(const std::string& text, const ordered_json& context = ordered_json::object(),
                        std::string* message = nullptr, RenderLimits limits = {}) {
    try {
        render_snippet(text, context, limits);
    } catch (const Error& e) {
        if (message) *message = e.what();
        return e.code();
    }
    ADD_FAILURE() << "no error for: " << text;
    return ErrorCode::Internal;
}

std::vector<ordered_json> load_snippets() {
    std::ifstream in(std::string(OSPREY_SOURCE_DIR) + "/tests/golden/data/chat_templates/snippets.json");
    if (!in) return {};
    ordered_json doc = ordered_json::parse(in);
    return doc["snippets"].get<std::vector<ordered_json>>();
}

const std::vector<ordered_json>& snippets() {
    static const std::vector<ordered_json> cases = load_snippets();
    return cases;
}

class JinjaSnippet : public ::testing::TestWithParam<size_t> {};

TEST_P(JinjaSnippet, MatchesJinja2) {
    ASSERT_LT(GetParam(), snippets().size()) << "snippets.json missing: run tests/golden/make_chat_template_goldens.py";
    const ordered_json& c = snippets()[GetParam()];
    const std::string text = c["template"].get<std::string>();
    SCOPED_TRACE("template: " + text);
    if (c.contains("expected")) {
        EXPECT_EQ(render_snippet(text, c["context"]), c["expected"].get<std::string>());
        return;
    }
    std::string message;
    ErrorCode code = error_code_of(text, c["context"], &message);
    if (c["error"] == "syntax") EXPECT_EQ(code, ErrorCode::InvalidFile) << message;
    else EXPECT_EQ(code, ErrorCode::InvalidArgument) << message;
}

INSTANTIATE_TEST_SUITE_P(Golden, JinjaSnippet, ::testing::Range<size_t>(0, std::max<size_t>(snippets().size(), 1)));

TEST(JinjaSnippets, GoldenFileIsPresentAndLarge) { EXPECT_GE(snippets().size(), 80u); }

TEST(JinjaErrors, SyntaxErrorNamesLineAndColumn) {
    try {
        render_snippet("line one\nline two {{ (1 + }}");
        FAIL() << "expected a syntax error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidFile);
        EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    }
    try {
        render_snippet("ok\n\n  {% if x %}{% endfor %}");
        FAIL() << "expected a syntax error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidFile);
        EXPECT_NE(std::string(e.what()).find("line 3, column"), std::string::npos) << e.what();
    }
}

TEST(JinjaErrors, RaiseExceptionIsInvalidArgumentWithMessage) {
    std::string message;
    EXPECT_EQ(error_code_of("{{ raise_exception('roles must alternate') }}", ordered_json::object(), &message),
              ErrorCode::InvalidArgument);
    EXPECT_NE(message.find("roles must alternate"), std::string::npos);
}

TEST(JinjaLimits, InfiniteMacroRecursionIsBounded) {
    std::string message;
    EXPECT_EQ(error_code_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", ordered_json::object(), &message),
              ErrorCode::InvalidArgument);
    EXPECT_NE(message.find("nested deeper"), std::string::npos) << message;
}

TEST(JinjaLimits, HugeLoopsAreBounded) {
    // Three nested sandbox-sized ranges would run 10^15 iterations.
    std::string message;
    EXPECT_EQ(error_code_of("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                            ordered_json::object(), &message),
              ErrorCode::InvalidArgument);
    EXPECT_NE(message.find("steps"), std::string::npos) << message;
    EXPECT_EQ(error_code_of("{{ range(100001) | length }}"), ErrorCode::InvalidArgument);
}

TEST(JinjaLimits, OutputSizeIsBounded) {
    RenderLimits small;
    small.max_output_bytes = 1 << 16;
    EXPECT_EQ(error_code_of("{{ 'x' * 1000000000 }}", ordered_json::object(), nullptr, small), ErrorCode::InvalidArgument);
    EXPECT_EQ(error_code_of("{% for i in range(100000) %}0123456789{% endfor %}", ordered_json::object(), nullptr, small),
              ErrorCode::InvalidArgument);
    EXPECT_EQ(error_code_of("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                            "{% endfor %}", ordered_json::object(), nullptr, small),
              ErrorCode::InvalidArgument);
    EXPECT_EQ(render_snippet("{{ 'ab' * 3 }}", ordered_json::object(), small), "ababab");
    // Lists and per-character iteration are bounded by item count (memory), not just output bytes.
    EXPECT_EQ(error_code_of("{{ ([0] * 100000000) | length }}"), ErrorCode::InvalidArgument);
    EXPECT_EQ(error_code_of("{% set ns = namespace(l=[0]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}"
                            "{% endfor %}"),
              ErrorCode::InvalidArgument);
    EXPECT_EQ(error_code_of("{% for c in 'x' * 30000000 %}{% endfor %}"), ErrorCode::InvalidArgument);
}

TEST(JinjaLimits, DeeplyNestedExpressionIsASyntaxErrorNotACrash) {
    std::string deep = "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
    EXPECT_EQ(error_code_of(deep), ErrorCode::InvalidFile);
    std::string nots = "{{ ";
    for (int i = 0; i < 100000; ++i) nots += "not ";
    nots += "1 }}";
    EXPECT_EQ(error_code_of(nots), ErrorCode::InvalidFile);
    std::string lists = "{{ " + std::string(50000, '[') + std::string(50000, ']') + " }}";
    EXPECT_EQ(error_code_of(lists), ErrorCode::InvalidFile);
}

TEST(JinjaLimits, DeeplyNestedBlocksAreBounded) {
    std::string src;
    for (int i = 0; i < 50000; ++i) src += "{% if true %}";
    EXPECT_NE(error_code_of(src), ErrorCode::Internal);  // unclosed: a syntax error, and no stack overflow
}

TEST(JinjaGlobals, StrftimeNowFormatsTheCurrentTime) {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    std::string year = std::to_string(tm.tm_year + 1900);
    std::string out = render_snippet("{{ strftime_now('%Y') }}");
    // A year boundary may pass between the two clocks; accept the next year too.
    EXPECT_TRUE(out == year || out == std::to_string(tm.tm_year + 1901)) << out;
}

TEST(JinjaValue, PythonFloatRepr) {
    // Reference strings are Python's repr() of the same doubles.
    EXPECT_EQ(format_float(1.0), "1.0");
    EXPECT_EQ(format_float(0.1), "0.1");
    EXPECT_EQ(format_float(1e16), "1e+16");
    EXPECT_EQ(format_float(1e15), "1000000000000000.0");
    EXPECT_EQ(format_float(0.0001), "0.0001");
    EXPECT_EQ(format_float(0.00001), "1e-05");
    EXPECT_EQ(format_float(-2.5e-10), "-2.5e-10");
    EXPECT_EQ(format_float(123456789.125), "123456789.125");
    EXPECT_EQ(format_float(1.7976931348623157e308), "1.7976931348623157e+308");
    EXPECT_EQ(format_float(-0.0), "-0.0");
}

}  // namespace
}  // namespace osprey::tokenizer::jinja
