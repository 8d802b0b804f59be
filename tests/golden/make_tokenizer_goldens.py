#!/usr/bin/env python3
"""Writes tests/golden/data/tokenizer/hf_goldens.json: Hugging Face token ids for SmolLM2 and Gemma 3.

The reference is independent of Osprey: transformers builds each tokenizer from the model's GGUF file
(AutoTokenizer.from_pretrained(dir, gguf_file=name), i.e. transformers' GGUF->tokenizers converter: SmolLM2 becomes
a byte-level BPE with the GGUF merges, Gemma 3 a `tokenizers` BPE with byte_fallback whose merges transformers
derives from the GGUF scores, with a Replace ' '->'▁' normalizer and the GGUF user-defined tokens as added tokens).

One correction: transformers' converter gives every GGUF "gpt2" tokenizer the plain GPT-2 ByteLevel pre-tokenizer
and ignores tokenizer.ggml.pre. SmolLM2's GGUF says pre = "smollm", whose published tokenizer.json pre-tokenizer is
Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)] (llama.cpp's "smollm"
pre-type is the same: \p{N} isolated, then the GPT-2 regex). We set that pre-tokenizer on the converted tokenizer,
so the reference is SmolLM2's real tokenization (it differs from the bare conversion e.g. on " ①②③").
Osprey's C++ test (tests/unit/tokenizer/hf_golden_test.cpp) loads the same GGUF files and must reproduce the ids.

Usage: python3 tests/golden/make_tokenizer_goldens.py [MODEL_DIR]
MODEL_DIR defaults to $OSPREY_MODEL_CACHE or ~/.cache/osprey/models (scripts/fetch_models.sh fills it).
"""
import json
import os
import sys

from tokenizers import pre_tokenizers
from transformers import AutoTokenizer

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}

TEXTS = [
    # plain and accented Latin
    "Hello world",
    " Hello World!",
    "The quick brown fox jumps over the lazy dog.",
    "Café déjà vu, naïve façade, São Paulo, Zürich, Ångström, Øresund, œuvre, straße.",
    "I'm sure you'll see we've done it; they'd say it's 'fine'. DON'T SHOUT, I'LL HEAR.",
    # multilingual
    "你好，世界！这是一个测试句子，用来检查中文分词。",
    "日本語のテキスト：東京は大きな都市です。カタカナとひらがな。",
    "مرحبا بالعالم، هذه جملة اختبار باللغة العربية.",
    "नमस्ते दुनिया, यह हिंदी में एक परीक्षण वाक्य है।",
    "Привет, мир! Это тестовое предложение на русском языке.",
    "Ελληνικά: Γειά σου Κόσμε. 한국어: 안녕하세요 세계. ไทย: สวัสดีชาวโลก",
    # emoji, ZWJ sequences, skin tones, flags
    "Emoji: 😀 😂 🤖 🚀 ❤️ 👍🏽 👋🏿",
    "Family: 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 🧑🏻‍💻 and flags 🇫🇷🇯🇵",
    "😀😀😀🎉🎉",
    # code
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <vector>\n\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) {\n\t\tx *= 2;\n\t}\n\treturn 0;\n}\n",
    "const x = {a: 1, 'b': [2, 3], \"c\": null}; // comment\n/* block */ x?.a ?? 42;",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    # whitespace-heavy
    "two  spaces   three    four",
    "\ttab\t\tand\ttabs\t",
    "windows\r\nline\r\nendings\r\n",
    "trailing spaces   \nnext line  ",
    "\n\n\nmany\n\n\n\n\nnewlines\n\n",
    "   leading spaces",
    " ",
    "\n",
    "    \n    \n\t\n",
    # numbers
    "3.14159 2,718 1e-10 0x1F 1234567890 007 -42 +17 50%",
    "Year 2024, version 1.2.3, phone 555-0123, 1/2 + 3/4 = 5/4",
    "١٢٣ ४५६ 七八九 ①②③",
    # special-token-looking text (parsed as specials when the tokenizer has them)
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<s> </s> <unk> <bos> <eos> <|endoftext|> <pad> [INST] <<SYS>>",
    "<|im_start|not a token|> <|im_end <im_end> <start_of_turn",
    # mixed punctuation and symbols
    "Punctuation!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}",
    "Math: ∑ᵢ xᵢ² ≤ ∞, α β γ δ, √2 ≈ 1.414, ∀x∃y, → ⇒ ↔",
    "URL https://example.com/path?q=1&r=two#frag and e-mail someone@example.org",
    "Mixed: Hello世界123abc😀\tend",
]


def long_text():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "eval",
                        "wikitext-2-raw-test.txt")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read(4000)
    return None


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "OSPREY_MODEL_CACHE", os.path.expanduser("~/.cache/osprey/models"))
    texts = list(TEXTS)
    lt = long_text()
    if lt:
        texts.append(lt)
    out = {"generator": "tests/golden/make_tokenizer_goldens.py (transformers GGUF tokenizer conversion)",
           "texts": texts, "models": {}}
    for name, fname in MODELS.items():
        tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=fname)
        if name == "smollm2":
            tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ])
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        with_special = tok("Hello world", add_special_tokens=True)["input_ids"]
        out["models"][name] = {
            "gguf": fname,
            "ids": ids,
            "hello_world_with_special": with_special,
            "decoded": [tok.decode(i) for i in ids],
        }
        print(f"{name}: {sum(map(len, ids))} ids over {len(texts)} texts", file=sys.stderr)
    dst = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tokenizer", "hf_goldens.json")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {dst} ({os.path.getsize(dst)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
