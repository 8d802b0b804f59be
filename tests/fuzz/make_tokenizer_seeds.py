#!/usr/bin/env python3
"""Writes small tokenizer.json seeds for fuzz_tokenizer_json with the reference `tokenizers` package:
a byte-level BPE (GPT-2/Llama-3 style) and a SentencePiece-style BPE with byte fallback (Llama-2/Gemma style).
Each seed is "tokenizer.json" + NUL + "tokenizer_config.json" (the layout the fuzz target splits).
Run: python3 tests/fuzz/make_tokenizer_seeds.py"""
import json
import os

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "tokenizer_json")
TEXT = ["hello world, hello osprey!", "The 12 quick brown foxes jumped 345 times.", "naïve café — 日本語 text"] * 20


def byte_level():
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=r"\p{N}{1,3}", behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|begin|>", "<|end|>"],
                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tk.post_processor = processors.TemplateProcessing(single="<|begin|> $A", special_tokens=[("<|begin|>", 0)])
    config = {"bos_token": "<|begin|>", "eos_token": "<|end|>", "add_bos_token": True,
              "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"}
    return tk, config


def spm_like():
    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(16)]
    tk.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=330, special_tokens=specials))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tk, {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": False}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (tk, config) in {"byte_level": byte_level(), "spm_like": spm_like()}.items():
        text = tk.to_str().encode() + b"\0" + json.dumps(config).encode()
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(text)
        print(name, len(text), "bytes")


if __name__ == "__main__":
    main()
