#!/usr/bin/env python3
"""Golden outputs for Osprey's chat-template renderer (src/tokenizer/chat_template.*, jinja_*).

Renders real chat templates and small Jinja snippets with the same jinja2 environment Hugging Face
transformers uses for apply_chat_template, and writes JSON files that tests/unit/tokenizer/*_test.cpp
compare against byte for byte:

  tests/golden/data/chat_templates/templates.json  full chat templates x conversations
  tests/golden/data/chat_templates/snippets.json   interpreter snippets (syntax, filters, tests, errors)

If transformers is importable, its own compiler (_compile_jinja_template) and renderer
(render_jinja_template after _normalize_chat_messages, as apply_chat_template does) are used. Otherwise the
environment is replicated: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols]) with raise_exception/strftime_now/namespace globals and transformers' tojson.

Template sources: llama3 and qwen3 from ../shared/data/tokenizers/*/tokenizer_config.json (referenced by
path, not copied); SmolLM2's from the GGUF in the model cache (its text is stored in the golden file, the
GGUF is not in the repo); Mistral-, Gemma- and Llama-3.1-style templates written here.

Usage: python3 tests/golden/make_chat_template_goldens.py   (from the repo root)
"""

import json
import os
import sys
from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("OSPREY_SHARED_DIR", ROOT.parent / "shared"))
MODEL_CACHE = Path(os.environ.get("OSPREY_MODEL_CACHE", Path.home() / ".cache" / "osprey" / "models"))
OUT = ROOT / "tests" / "golden" / "data" / "chat_templates"

try:
    from transformers.utils.chat_template_utils import (
        _compile_jinja_template,
        _normalize_chat_messages,
        render_jinja_template,
    )

    HAVE_TRANSFORMERS = True
except Exception:  # noqa: BLE001 - any import problem means: replicate the environment
    HAVE_TRANSFORMERS = False


def compile_template(source):
    if HAVE_TRANSFORMERS:
        return _compile_jinja_template(source)
    from datetime import datetime

    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["dict"] = dict
    return env.from_string(source)


def apply_chat_template(source, messages, add_generation_prompt, bos_token, eos_token, extra):
    """What tokenizer.apply_chat_template(messages, tokenize=False, ...) returns for this template."""
    extra = dict(extra)
    tools = extra.pop("tools", None)
    special = {}
    if bos_token:
        special["bos_token"] = bos_token
    if eos_token:
        special["eos_token"] = eos_token
    if HAVE_TRANSFORMERS:
        chat = _normalize_chat_messages(messages)
        rendered, _ = render_jinja_template(
            conversations=[chat],
            tools=tools,
            documents=None,
            chat_template=source,
            add_generation_prompt=add_generation_prompt,
            **{**special, **extra},
        )
        return rendered[0]
    chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
    for i, m in enumerate(chat):
        reasoning = next((m[k] for k in ("reasoning_content", "thinking", "reasoning") if m.get(k) is not None), None)
        if reasoning is not None:
            chat[i] = {"thinking": reasoning, **m, "reasoning_content": reasoning}
    return compile_template(source).render(
        messages=chat, tools=tools, documents=None, add_generation_prompt=add_generation_prompt, **special, **extra
    )


# ---------------------------------------------------------------------------------------------------------
# Templates

MISTRAL_STYLE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

GEMMA_STYLE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# Llama-3.1 style: tools as JSON with indent, date string, macros, namespace, tool calls, ipython role.
LLAMA31_STYLE = """{{- bos_token }}
{#- This block extracts the system message, so we can slot it into the right place. #}
{%- macro header(role) -%}
<|start_header_id|>{{ role }}<|end_header_id|>

{% endmacro -%}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- header("system") }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none %}
    {{- "You have access to the following functions:\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- set ns = namespace(n_tool_calls=0, roles=[]) %}
{%- for message in messages %}
    {%- set ns.roles = ns.roles + [message.role] %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- header(message['role']) + message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set ns.n_tool_calls = ns.n_tool_calls + 1 %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- header('assistant') -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- header("ipython") }}
        {%- if message.content is mapping or message.content is iterable and message.content is not string %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- header('assistant') }}
{%- endif %}
{#- roles seen: {{ ns.roles | join(',') }} #}
"""


def shared_template(name):
    path = SHARED / "data" / "tokenizers" / name / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    return config["chat_template"], {"shared": f"data/tokenizers/{name}/tokenizer_config.json"}


def smollm2_template():
    from gguf import GGUFReader

    reader = GGUFReader(str(MODEL_CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    field = reader.fields["tokenizer.chat_template"]
    text = bytes(field.parts[field.data[0]]).decode("utf-8")
    return text, {"text": text}


# ---------------------------------------------------------------------------------------------------------
# Conversations

SYS_USER = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
USER_ONLY = [{"role": "user", "content": "Hello!"}]
MULTI_TURN = [
    {"role": "user", "content": "Hi, who are you?"},
    {"role": "assistant", "content": "I am a helpful assistant."},
    {"role": "user", "content": "Tell me a joke."},
]
UNICODE = [
    {"role": "system", "content": "Réponds en français. 日本語もOK。"},
    {"role": "user", "content": "  Ça va? 🦅🦅 emoji 👩‍👩‍👧 and ∑ math — “quotes”\u3000 "},
    {"role": "assistant", "content": "Très bien ! 🙂"},
    {"role": "user", "content": "Ελληνικά και русский язык."},
]
SPECIAL = [
    {"role": "user", "content": "Line one\nLine two\n\n\tTabbed {{ not a tag }} {% nor this %} {# nor #}"},
    {"role": "assistant", "content": "\n  Quotes ' \" and backslash \\ and <|im_end|> <|eot_id|> [INST] </s>\n"},
    {"role": "user", "content": "Trailing newline and spaces   \n\n"},
]
WITH_NONE = [{"role": "user", "content": "Keys that are null are dropped.", "name": None}]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city — «météo».",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "Current time", "parameters": {"type": "object", "properties": {}}},
}
TOOL_CONVERSATION = [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "What's the weather in Zürich and the time?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"unit": "celsius", "location": "Zürich"}}},
            {"type": "function", "function": {"name": "get_time", "arguments": "{\"tz\": \"CET\"}"}},
        ],
    },
    {"role": "tool", "content": "{\"temperature\": 21.5, \"sky\": \"sunny ☀\"}"},
    {"role": "tool", "content": "14:05"},
    {"role": "assistant", "content": "<think>\nThe tools answered.\n</think>\n\nIt is 21.5 °C and sunny in Zürich; the time is 14:05."},
    {"role": "user", "content": "Thanks!"},
]
THINKING = [
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "<think>\nSimple arithmetic.\n</think>\n\n4"},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "6", "reasoning_content": "Again simple."},
]
TRAILING_TOOL_CALL = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"location": "Paris"}}}],
    },
    {"role": "tool", "content": "rainy"},
]
GEMMA_PARTS = [
    {"role": "system", "content": [{"type": "text", "text": "Be brief. "}]},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Describe this. "}]},
]
BAD_ALTERNATION = [
    {"role": "user", "content": "one"},
    {"role": "user", "content": "two"},
]
LLAMA31_TOOLS = [
    {"role": "system", "content": "  Use tools.  "},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"location": "Oslo", "unit": "celsius"}}}]},
    {"role": "tool", "content": {"temperature": -3, "ok": True, "note": None}},
    {"role": "assistant", "content": "It is -3 °C in Oslo."},
]

BASIC = {"sys_user": SYS_USER, "user_only": USER_ONLY, "multi_turn": MULTI_TURN, "unicode": UNICODE, "special": SPECIAL}


def template_cases():
    templates = {}
    cases = []

    def add_template(name, loader, bos, eos):
        try:
            source, ref = loader()
        except Exception as e:  # noqa: BLE001
            print(f"skipping template {name}: {e}", file=sys.stderr)
            return None
        templates[name] = {**ref, "bos_token": bos, "eos_token": eos}
        return source

    def add_case(template, source, conv_name, messages, gen, extra=None):
        extra = extra or {}
        case = {"template": template, "conversation": conv_name, "messages": messages, "add_generation_prompt": gen, "extra": extra}
        t = templates[template]
        try:
            case["expected"] = apply_chat_template(source, messages, gen, t["bos_token"], t["eos_token"], extra)
        except jinja2.exceptions.TemplateError as e:
            case["expected_error"] = str(e)
        cases.append(case)

    sources = {
        "smollm2": add_template("smollm2", smollm2_template, "<|im_start|>", "<|im_end|>"),
        "llama3": add_template("llama3", lambda: shared_template("llama3"), "<|begin_of_text|>", "<|end_of_text|>"),
        "qwen3": add_template("qwen3", lambda: shared_template("qwen3"), "", "<|im_end|>"),
        "mistral_style": add_template("mistral_style", lambda: (MISTRAL_STYLE, {"text": MISTRAL_STYLE}), "<s>", "</s>"),
        "gemma_style": add_template("gemma_style", lambda: (GEMMA_STYLE, {"text": GEMMA_STYLE}), "<bos>", "<eos>"),
        "llama31_style": add_template("llama31_style", lambda: (LLAMA31_STYLE, {"text": LLAMA31_STYLE}), "<|begin_of_text|>", "<|eot_id|>"),
    }
    for name, source in sources.items():
        if source is None:
            continue
        convs = dict(BASIC)
        if name not in ("mistral_style", "gemma_style"):
            convs["with_none"] = WITH_NONE
        for conv_name, messages in convs.items():
            for gen in (False, True):
                add_case(name, source, conv_name, messages, gen)
    if sources["qwen3"]:
        s = sources["qwen3"]
        for gen in (False, True):
            add_case("qwen3", s, "tools", TOOL_CONVERSATION, gen, {"tools": [WEATHER_TOOL, TIME_TOOL]})
            add_case("qwen3", s, "tool_calls_no_tools", TOOL_CONVERSATION, gen)
            add_case("qwen3", s, "thinking", THINKING, gen)
            add_case("qwen3", s, "trailing_tool_call", TRAILING_TOOL_CALL, gen, {"tools": [WEATHER_TOOL]})
        add_case("qwen3", s, "no_thinking", USER_ONLY, True, {"enable_thinking": False})
        add_case("qwen3", s, "thinking_enabled", MULTI_TURN, True, {"enable_thinking": True})
    if sources["mistral_style"]:
        add_case("mistral_style", sources["mistral_style"], "bad_alternation", BAD_ALTERNATION, True)
        add_case("mistral_style", sources["mistral_style"], "bad_role", [{"role": "tool", "content": "x"}], True)
    if sources["gemma_style"]:
        add_case("gemma_style", sources["gemma_style"], "content_parts", GEMMA_PARTS, True)
        add_case("gemma_style", sources["gemma_style"], "bad_alternation", BAD_ALTERNATION, False)
    if sources["llama31_style"]:
        s = sources["llama31_style"]
        for gen in (False, True):
            add_case("llama31_style", s, "tools", LLAMA31_TOOLS, gen, {"tools": [WEATHER_TOOL], "date_string": "01 Jan 2025"})
        add_case("llama31_style", s, "two_tool_calls", [TOOL_CONVERSATION[1], TOOL_CONVERSATION[2]], True)
    return templates, cases


# ---------------------------------------------------------------------------------------------------------
# Snippets: (template, context). Expected output or error class comes from jinja2.

SNIPPETS = [
    # literals and printing
    ("{{ 'a\\tb\\n\\\\ \\'q\\' \\u00e9 \\x41' }}", {}),
    ('{{ "double \\"quoted\\"" }}|{{ \'adjacent\' "strings" }}', {}),
    ("{{ 1 }} {{ -2 }} {{ 1.0 }} {{ 2.50 }} {{ 1e3 }} {{ 1_000 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-7 }} {{ 123456789.125 }}", {}),
    ("{{ true }} {{ True }} {{ false }} {{ none }} {{ None }} {{ undefined_name }}|", {}),
    ("{{ [1, 'two', none, true, 1.5, [3]] }} {{ {'a': 1, 'b': 'x', 3: none} }} {{ (1, 'a') }} {{ (1,) }} {{ () }}", {}),
    ("{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'new\\nline', 'ünï', '\\x01'] }}", {}),
    ("{{ x }} {{ y }} {{ z }} {{ big }}", {"x": [1, {"k": "v"}], "y": {"nested": [True, None]}, "z": 3.0, "big": 12345678901234}),
    # arithmetic and operators
    ("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}", {}),
    ("{{ 1 + 2 * 3 - 4 }} {{ (1 + 2) * 3 }} {{ 'ab' * 3 }} {{ 3 * 'x' }} {{ [1] * 2 }} {{ [1] + [2] }} {{ 'a' ~ 1 ~ none ~ true }} {{ -x }} {{ +x }}", {"x": 5}),
    ("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 'abc' < 'abd' }} {{ [1,2] < [1,3] }} {{ true == 1 }} {{ none == none }}", {}),
    ("{{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ not 1 in [1] }} {{ 'x' in missing }}", {}),
    ("{{ 1 and 'yes' }}|{{ 0 and 'yes' }}|{{ '' or 'fallback' }}|{{ 'first' or 'second' }}|{{ not '' }}|{{ not [1] }}", {}),
    ("{{ 'a' if x else 'b' }} {{ 'a' if not x else 'b' }} {{ 'only' if false }}|{{ 1 if x > 3 else 2 if x > 1 else 3 }}", {"x": 2}),
    ("{{ -2|abs }} {{ -(2) }} {{ 2 * -1 }} {{ 10 - -1 }}", {}),
    # attribute / subscript / slicing
    ("{{ d.a }} {{ d['a'] }} {{ d.missing }}|{{ d['b'][1] }} {{ d.b.0 }} {{ l[-1] }} {{ l[10] }}|{{ s[0] }}{{ s[-1] }}", {"d": {"a": "A", "b": [1, 2]}, "l": [1, 2, 3], "s": "héllo"}),
    ("{{ l[1:] }} {{ l[:2] }} {{ l[::-1] }} {{ l[::2] }} {{ l[-2:] }} {{ l[1:-1] }} {{ s[::-1] }} {{ s[1:3] }} {{ l[5:] }} {{ l[3:0:-1] }}", {"l": [1, 2, 3, 4], "s": "añb😀c"}),
    ("{{ none.attr }}|{{ d.items is callable }}|{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 5) }} {{ d.keys() | list }} {{ d.values() | list }} {{ d['items'] }}", {"d": {"a": 1, "items": "x"}}),
    ("{{ missing.attr }}", {}),
    ("{{ missing + 'x' }}", {}),
    ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", {"d": {"z": 1, "a": 2, "m": 3}}),
    # statements
    ("{% if x == 1 %}one{% elif x == 2 %}two{% else %}other{% endif %}", {"x": 2}),
    ("{% if not x %}empty{% endif %}{% if x is defined %}def{% endif %}{% if y is undefined %}undef{% endif %}", {"x": []}),
    ("{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }} {% endfor %}", {"xs": ["a", "b", "c"]}),
    ("{% for x in xs %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}|{{ loop.cycle('odd', 'even') }} {% endfor %}", {"xs": [1, 2, 3]}),
    ("{% for x in xs if x % 2 == 0 %}{{ x }}({{ loop.index }}/{{ loop.length }}){% else %}none{% endfor %}", {"xs": [1, 2, 3, 4, 6]}),
    ("{% for x in xs %}{{ x }}{% else %}empty{% endfor %}|{% for x in [] %}{% else %}E{% endfor %}", {"xs": []}),
    ("{% for x in xs %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}", {"xs": [0, 1, 2, 3, 4]}),
    ("{% for row in rows %}{% for c in row %}{{ loop.index }}{{ c }}{% endfor %}/{{ loop.index }} {% endfor %}", {"rows": [["a", "b"], ["c"]]}),
    ("{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }} {% endfor %}{% for (a, b) in [[5, 6]] %}{{ a * b }}{% endfor %}", {}),
    ("{% for c in 'añ😀' %}[{{ c }}]{% endfor %}{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(1, 10, 3) %}{{ i }}{% endfor %}{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}", {}),
    ("{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = 5 %}{{ x }}{% endfor %}{{ x }}", {}),
    ("{% set ns = namespace(total=0, items=[]) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.total }} {{ ns.items }}", {}),
    ("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 1, 2 %}{{ t }}{% set s %}captured {{ a }}{% endset %}[{{ s }}]{% set u | upper %}up{% endset %}{{ u }}", {}),
    ("{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(name='Cy', punct='.') }}", {}),
    ("{% macro outer(x) %}<{{ inner(x) }}>{% endmacro %}{% macro inner(y) %}{{ y * 2 }}{% endmacro %}{{ outer(21) }}", {}),
    ("{% macro m() %}{{ y }}{% endmacro %}{% set y = 3 %}{{ m() }}", {}),
    ("{% macro render(item) %}{% if item is mapping %}{% for k, v in item.items() %}{{ k }}:{{ render(v) }} {% endfor %}{% else %}{{ item }}{% endif %}{% endmacro %}{{ render({'a': {'b': 1}, 'c': 2}) }}", {}),
    ("{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inside{% endcall %}", {}),
    ("{% filter upper %}shout {{ 'this' }}{% endfilter %}", {}),
    ("{% raw %}{{ not rendered }} {% if %}{% endraw %}", {}),
    ("{{ 'x' }}{# a comment #}{{ 'y' }}", {}),
    # whitespace control
    ("a  {{- ' b ' -}}  c\n  {%- if true -%}  d  {%- endif -%}  e", {}),
    ("<ul>\n  {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n  {% endfor %}\n</ul>\n", {}),
    ("  {% if true %}\n  kept indent\n  {% endif %}\n  {# comment line #}\nend\n\n", {}),
    ("x  {%+ if true %}y{% endif +%}\nz {{ 'v' }}\n{% if true %}  w{% endif %}", {}),
    ("line\n    {% raw %}  raw  {% endraw %}\nnext", {}),
    ("{% for i in [1,2] -%}\n  {{ i }}\n{%- endfor %}\n", {}),
    ("a\r\nb\r\n{% if true %}\r\nc{% endif %}\r\n", {}),
    # tests
    ("{{ x is string }} {{ x is number }} {{ 1 is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ true is boolean }} {{ true is number }} {{ none is none }} {{ x is not none }}", {"x": "s"}),
    ("{{ d is mapping }} {{ l is mapping }} {{ l is iterable }} {{ s is iterable }} {{ 3 is iterable }} {{ l is sequence }} {{ d is sequence }} {{ m is iterable }} {{ m is sequence }}", {"d": {}, "l": [], "s": "x"}),
    ("{{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 2 is eq 2 }} {{ 'a' is in 'abc' }} {{ none is sameas none }} {{ 'abc' is lower }} {{ 'ABC' is upper }}", {}),
    ("{{ range is callable }} {{ x is defined }} {{ d.k is defined }} {{ d.z is defined }} {{ 1 is gt 0 }} {{ 1 is lt 0 }} {{ 2 is ge 2 }}", {"x": None, "d": {"k": 1}}),
    # filters
    ("[{{ '  pad  ' | trim }}] [{{ 'xxhixx' | trim('x') }}] {{ 'MiXeD' | upper }} {{ 'MiXeD' | lower }} {{ 'hello world' | capitalize }} {{ 'hello wORLD-foo (bar' | title }}", {}),
    ("{{ l | length }} {{ 'héllo' | length }} {{ d | count }} {{ l | first }} {{ l | last }} {{ 'abc' | first }} {{ [] | first }}| {{ missing | length }}", {"l": [3, 1, 2], "d": {"a": 1}}),
    ("{{ l | join(', ') }} {{ l | join }} {{ [1, none, 'x'] | join('-') }} {{ users | join(', ', attribute='name') }}", {"l": ["a", "b"], "users": [{"name": "x"}, {"name": "y"}]}),
    ("{{ missing | default('dflt') }} {{ '' | default('dflt') }} {{ '' | default('dflt', true) }} {{ none | d('n') }} {{ x | default('no') }}", {"x": 0}),
    ("{{ d | tojson }} {{ l | tojson }} {{ s | tojson }} {{ 1.0 | tojson }} {{ none | tojson }} {{ true | tojson }} {{ {} | tojson }} {{ [] | tojson }}", {"d": {"b": 1, "a": [1, 2.5, None, True, "x"]}, "l": ["é", "<tag>&", "\"q\"", "\n\t\u0001"], "s": "日本"}),
    ("{{ d | tojson(indent=2) }}\n{{ d | tojson(indent=4, sort_keys=true) }}\n{{ [] | tojson(indent=2) }}{{ [[]] | tojson(indent=2) }}", {"d": {"z": {"y": [1, {"x": []}]}, "a": {}}}),
    ("{{ d | tojson(separators=(',', ':')) }} {{ 'é' | tojson(ensure_ascii=true) }} {{ '😀' | tojson(ensure_ascii=true) }}", {"d": {"a": [1, 2]}}),
    ("{{ 'a-b' | list }} {{ d | list }} {{ d | items | list }} {{ (d | items | first)[1] }} {{ missing | items | list }}", {"d": {"k": "v", "k2": 2}}),
    ("{{ users | selectattr('active') | map(attribute='name') | list }} {{ users | rejectattr('active') | map(attribute='name') | join }} {{ users | selectattr('role', 'equalto', 'admin') | list | length }} {{ users | selectattr('role', 'eq', 'user') | map(attribute='name') | first }}", {"users": [{"name": "a", "active": True, "role": "admin"}, {"name": "b", "active": False, "role": "user"}, {"name": "c", "active": True, "role": "user"}]}),
    ("{{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('even') | list }} {{ [0, 1, '', 'a'] | select | list }} {{ ['a', 'B'] | map('upper') | list }} {{ users | map(attribute='x', default='?') | list }} {{ users | map(attribute='n.0') | list }}", {"users": [{"x": 1, "n": [7]}, {"n": [8]}]}),
    ("{{ 'aaa' | replace('a', 'b') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 12 | string }} {{ [1] | string }} {{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '2.5' | float }} {{ 'x' | float }} {{ 3 | float }}", {}),
    ("{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 1.23456 | round(3) }} {{ 2.1 | round(0, 'ceil') }} {{ 2.9 | round(method='floor') }} {{ 3 | round }} {{ -1.5 | round }}", {}),
    ("{{ ['b', 'A', 'a', 'c'] | sort }} {{ ['b', 'A', 'a', 'c'] | sort(case_sensitive=true) }} {{ [3, 1, 2] | sort(reverse=true) }} {{ users | sort(attribute='age') | map(attribute='n') | join }} {{ ['a', 'A', 'b', 'a'] | unique | list }} {{ [1, 2] | reverse | list }} {{ 'abc' | reverse }}", {"users": [{"n": "x", "age": 30}, {"n": "y", "age": 20}]}),
    ("{{ '<b>&\"\\'' | escape }} {{ '<i>' | e }} {{ '<s>' | safe }} {{ 3 | abs }} {{ [1, 2, 3] | sum }} {{ [1, 5, 2] | max }} {{ ['b', 'a'] | min }} {{ 'hi' | center(6) }}| {{ 'one two  three' | wordcount }}", {}),
    ("{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}|{{ 'x' | indent(first=true) }}", {}),
    ("{{ {'b': 2, 'a': 1} | dictsort }} {{ {'b': 1, 'a': 2} | dictsort(by='value') }} {{ d | attr('items') is callable }} {{ '%s-%s' | format('a', 1) }}", {"d": {}}),
    # string methods
    ("[{{ '  x  '.strip() }}][{{ '  x  '.lstrip() }}][{{ '  x  '.rstrip() }}][{{ '\\n\\nx\\n'.strip('\\n') }}][{{ 'xyhixy'.strip('xy') }}][{{ '\\u3000x\\u00a0'.strip() }}]", {}),
    ("{{ 'a,b,,c'.split(',') }} {{ '  a  b c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'x</think>y</think>z'.split('</think>')[-1] }} {{ 'l1\\nl2\\r\\nl3'.splitlines() }}", {}),
    ("{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'Hello World'.upper() }} {{ 'Hello'.lower() }} {{ 'they\\'re 1st'.title() }} {{ 'hELLO'.capitalize() }}", {}),
    ("{{ 'a-b-c'.replace('-', '+') }} {{ 'a-b-c'.replace('-', '', 1) }} {{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'banana'.count('a') }} {{ ', '.join(['x', 'y']) }} {{ '{} and {}'.format('a', 2) }} {{ '{0}{1}{0}'.format('x', 'y') }} {{ '{n}!'.format(n='hi') }}", {}),
    ("{{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ ' '.isspace() }} {{ 'abc'.islower() }} {{ 'ABC'.isupper() }} {{ 'Ünïcödé'.upper() }} {{ 'ΑΒΓ'.lower() }} {{ 'Привет'.upper() }}", {}),
    ("{{ '%s is %d years, %.2f%%' % ('Ann', 30, 99.5) }} {{ '%05d|%-4s|%4s|%x' % (42, 'ab', 'cd', 255) }} {{ '%(a)s-%(b)s' % {'a': 1, 'b': 2} }} {{ 'single %s' % 'x' }} {{ '%r' % 'q' }}", {}),
    ("{{ l.index(2) }} {{ l.count(1) }}", {"l": [1, 2, 1]}),
    # globals
    ("{% set d = dict(a=1, b='x') %}{{ d }} {{ dict([('k', 'v')]) }} {{ namespace(a=1).a }}", {}),
    ("{{ raise_exception('custom failure') }}", {}),
    ("{% macro m(a, b=a ~ '!') %}{{ b }}{% endmacro %}{{ m('x') }}{{ m('y', 'z') }}{% macro c2() %}<{{ caller('arg') }}>{% endmacro %}{% call(v) c2() %}got {{ v }}{% endcall %}", {}),
    ("{{ msgs | selectattr('role', 'in', ['user', 'assistant']) | map(attribute='role') | join(',') }} {{ msgs | map(attribute='role') | unique | list }} {{ msgs | rejectattr('content') | list | length }}", {"msgs": [{"role": "system", "content": "s"}, {"role": "user", "content": ""}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}]}),
    ("{{ 'a' < 'B' }} {{ 'é' > 'z' }} {{ '%s' | format(none) }} {{ [1, 'a'] == [1, 'a'] }} {{ {'a': 1} == {'a': 1.0} }} {{ (1, 2) == [1, 2] }} {{ 'x' ~ [1] }}", {}),
    ("{% for m in messages %}{% if loop.first and m.role != 'system' %}[default system]{% endif %}{{ m.role | upper }}: {{ m.content | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}", {"messages": [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo\n"}]}),
    # errors
    ("{% set ns = namespace(_private=1) %}", {}),
    ("{% set ns = namespace() %}{% set ns._private = 1 %}", {}),
    ("{% if %}", {}),
    ("{% for x in %}{% endfor %}", {}),
    ("{% if true %}unclosed", {}),
    ("{{ 'unterminated }}", {}),
    ("hello {{ x + }}", {}),
    ("{% endfor %}", {}),
    ("{% unknown_tag %}", {}),
    ("line1\nline2 {{ (1 + }}", {}),
    ("{# unclosed comment", {}),
    ("{{ 1 + 'a' }}", {}),
    ("{{ 1 // 0 }}", {}),
    ("{{ l.append(1) }}", {"l": [1]}),
    ("{% set x = 1 %}{% set x.attr = 2 %}", {}),
    ("{{ range(1000000) | length }}", {}),
    ("{{ 3 < 'a' }}", {}),
    ("{% for x in 5 %}{% endfor %}", {}),
]


# transformers' own environment adds the {% generation %} tag (AssistantTracker); the replica does not.
TRANSFORMERS_ONLY_SNIPPETS = [
    ("{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}[{{ m.content }}]{% endif %}{% endfor %}",
     {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
]


def snippet_cases():
    out = []
    for source, context in SNIPPETS + (TRANSFORMERS_ONLY_SNIPPETS if HAVE_TRANSFORMERS else []):
        case = {"template": source, "context": context}
        try:
            template = compile_template(source)
        except jinja2.exceptions.TemplateSyntaxError as e:
            case["error"] = "syntax"
            case["message"] = str(e)
            out.append(case)
            continue
        try:
            case["expected"] = template.render(**context)
        except Exception as e:  # noqa: BLE001 - any runtime failure: UndefinedError, TypeError, SecurityError...
            case["error"] = "runtime"
            case["message"] = f"{type(e).__name__}: {e}"
        out.append(case)
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    templates, cases = template_cases()
    with open(OUT / "templates.json", "w", encoding="utf-8") as f:
        json.dump({"renderer": "transformers" if HAVE_TRANSFORMERS else "jinja2 replica",
                   "jinja2": jinja2.__version__, "templates": templates, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    snippets = snippet_cases()
    with open(OUT / "snippets.json", "w", encoding="utf-8") as f:
        json.dump({"jinja2": jinja2.__version__, "snippets": snippets}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum("expected_error" in c for c in cases)
    print(f"{len(cases)} template cases ({n_err} errors), {len(snippets)} snippets "
          f"({sum('error' in s for s in snippets)} errors); renderer: "
          f"{'transformers' if HAVE_TRANSFORMERS else 'jinja2 replica'}")


if __name__ == "__main__":
    main()
