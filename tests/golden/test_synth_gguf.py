"""`osprey synth --format gguf` checked by independent readers: the `gguf` package's GGUFReader and dequantizer
(tensor names, types, shapes, metadata, values against the f32 Hugging Face folder of the same seed read with the
`safetensors` package), the `tokenizers` package (the converted vocabulary encodes as the tokenizer it came from),
and `osprey run` on the file.

Run: OSPREY_BIN=build/osprey python3 -m pytest -q tests/golden/test_synth_gguf.py
"""
import json
import os
import subprocess

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
tokenizers = pytest.importorskip("tokenizers")
from gguf.quants import dequantize  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("OSPREY_BIN", os.path.join(ROOT, "build", "osprey"))

pytestmark = pytest.mark.skipif(not os.path.exists(BIN), reason=f"osprey binary not built: {BIN}")

TEXT = ("The quick brown fox jumps over the lazy dog 1234 times. Don't stop; it's 3.14159 o'clock!\n"
        "Tokenizers split text into pieces, and models read the pieces. ") * 20


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    """A small byte-level BPE tokenizer in SmolLM2's layout (digits split singly, GPT-2 regex), trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False)])
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    t.train_from_iterator([TEXT], trainer)
    d = tmp_path_factory.mktemp("tok")
    t.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"}))
    return d


def run(*args):
    return subprocess.run([BIN, *args], check=True, capture_output=True, text=True).stdout


def synth_gguf(path, dtype, tok_dir, seed=9):
    run("synth", "--shape", "smollm2-135m", "--n-layers", "2", "--format", "gguf", "--dtype", dtype,
        "--tokenizer", str(tok_dir), "--seed", str(seed), "-o", str(path))
    return gguf.GGUFReader(str(path))


def field(r, key):
    f = r.fields.get(key)
    return None if f is None else f.contents()


def permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf permute of q/k rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# llama.cpp's Q4_K_M rule for this file: rows of 576 are not whole 256-blocks (Q4_K -> Q5_0, Q6_K -> Q8_0),
# use_more_bits(i, 2) picks layer 1 only, the tied embedding is the output (Q6_K -> Q8_0).
Q4_K_M_TYPES = {
    "token_embd.weight": "Q8_0",
    "blk.0.attn_v.weight": "Q5_0", "blk.1.attn_v.weight": "Q8_0",
    "blk.0.ffn_down.weight": "Q4_K", "blk.1.ffn_down.weight": "Q6_K",
}
# relative RMS error of dequantized N(0, 0.02) weights, by type (measured 0.005 / 0.019 / 0.040 / 0.076)
TOLERANCE = {"Q8_0": 0.01, "Q6_K": 0.03, "Q5_0": 0.07, "Q4_K": 0.12}


@pytest.mark.parametrize("dtype", ["q8_0", "q4_k_m"])
def test_gguf_reader_names_types_shapes_values(tmp_path, tok_dir, dtype):
    from safetensors.numpy import load_file
    r = synth_gguf(tmp_path / "m.gguf", dtype, tok_dir)
    run("synth", "--shape", "smollm2-135m", "--n-layers", "2", "--dtype", "f32", "--seed", "9", "-o", str(tmp_path / "hf"))
    hf = load_file(str(tmp_path / "hf" / "model.safetensors"))

    assert field(r, "general.architecture") == "llama"
    assert field(r, "llama.block_count") == 2
    assert field(r, "llama.embedding_length") == 576
    assert field(r, "llama.feed_forward_length") == 1536
    assert field(r, "llama.attention.head_count") == 9
    assert field(r, "llama.attention.head_count_kv") == 3
    assert field(r, "llama.context_length") == 8192
    assert field(r, "llama.rope.freq_base") == pytest.approx(100000.0)
    assert field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert field(r, "general.file_type") == {"q8_0": 7, "q4_k_m": 15}[dtype]

    shapes = {"token_embd.weight": [576, 49152], "output_norm.weight": [576]}  # GGUF order: innermost first
    for i in range(2):
        p = f"blk.{i}."
        shapes.update({p + "attn_norm.weight": [576], p + "ffn_norm.weight": [576],
                       p + "attn_q.weight": [576, 576], p + "attn_k.weight": [576, 192],
                       p + "attn_v.weight": [576, 192], p + "attn_output.weight": [576, 576],
                       p + "ffn_gate.weight": [576, 1536], p + "ffn_up.weight": [576, 1536],
                       p + "ffn_down.weight": [1536, 576]})
    tensors = {t.name: t for t in r.tensors}
    assert set(tensors) == set(shapes)
    for name, shape in shapes.items():
        t = tensors[name]
        assert [int(x) for x in t.shape] == shape, name
        if len(shape) == 1:
            want = "F32"
        elif dtype == "q8_0":
            want = "Q8_0"
        else:
            want = Q4_K_M_TYPES.get(name, "Q5_0")
        assert t.tensor_type.name == want, name

    hf_of = {"token_embd.weight": "model.embed_tokens.weight", "blk.1.attn_v.weight": "model.layers.1.self_attn.v_proj.weight",
             "blk.0.attn_v.weight": "model.layers.0.self_attn.v_proj.weight",
             "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
             "blk.1.ffn_down.weight": "model.layers.1.mlp.down_proj.weight",
             "blk.1.attn_q.weight": "model.layers.1.self_attn.q_proj.weight",
             "blk.0.attn_k.weight": "model.layers.0.self_attn.k_proj.weight",
             "blk.1.ffn_norm.weight": "model.layers.1.post_attention_layernorm.weight"}
    for name, hname in hf_of.items():
        t = tensors[name]
        got = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(hf[hname].shape)
        want = hf[hname]
        if name.endswith("attn_q.weight"):
            want = permute(want, 9)
        if name.endswith("attn_k.weight"):
            want = permute(want, 3)
        if t.tensor_type.name == "F32":
            np.testing.assert_array_equal(got, want)
            continue
        rel = np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2))
        assert rel < TOLERANCE[t.tensor_type.name], (name, t.tensor_type.name, rel)
        # a wrong row order would be as far off as unrelated weights
        if name.endswith(("attn_q.weight", "attn_k.weight")):
            assert np.sqrt(np.mean((got - hf[hname]) ** 2) / np.mean(want ** 2)) > 1.0


def test_tokenizer_metadata_and_encoding(tmp_path, tok_dir):
    from tokenizers import Tokenizer
    r = synth_gguf(tmp_path / "m.gguf", "q8_0", tok_dir)
    ref = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    vocab = ref.get_vocab()
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    assert field(r, "tokenizer.ggml.pre") == "smollm"
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == 49152  # padded to the model's vocab_size
    for text, i in vocab.items():
        assert tokens[i] == text
        assert types[i] == (3 if text.startswith("<|") else 1)
    assert tokens[len(vocab)] == f"[PAD{len(vocab)}]" and types[len(vocab)] == 5
    merges = json.loads((tok_dir / "tokenizer.json").read_text())["model"]["merges"]
    assert field(r, "tokenizer.ggml.merges") == [m if isinstance(m, str) else " ".join(m) for m in merges]
    assert field(r, "tokenizer.ggml.bos_token_id") == vocab["<|im_start|>"]
    assert field(r, "tokenizer.ggml.eos_token_id") == vocab["<|im_end|>"]
    assert field(r, "tokenizer.ggml.padding_token_id") == vocab["<|endoftext|>"]
    assert "<|im_start|>" in field(r, "tokenizer.chat_template")

    text = "Hello world, 2024 quick foxes don't jump; über naïve 🦊!\n\n  spaces\tand tabs"
    (tmp_path / "t.txt").write_text(text)
    want = ref.encode(text, add_special_tokens=False).ids
    got = [int(x) for x in run("tokenize", "-m", str(tmp_path / "m.gguf"), "--ids", "--no-bos", "-f",
                               str(tmp_path / "t.txt")).split()]
    assert got == want
    from_dir = [int(x) for x in run("tokenize", "-m", str(tok_dir), "--ids", "-f", str(tmp_path / "t.txt")).split()]
    from_gguf = [int(x) for x in run("tokenize", "-m", str(tmp_path / "m.gguf"), "--ids", "-f",
                                     str(tmp_path / "t.txt")).split()]
    assert from_gguf == from_dir


@pytest.mark.parametrize("dtype", ["q8_0", "q4_k_m"])
def test_osprey_runs_the_file(tmp_path, tok_dir, dtype):
    synth_gguf(tmp_path / "m.gguf", dtype, tok_dir)
    p = subprocess.run([BIN, "run", "-m", str(tmp_path / "m.gguf"), "-p", "hi", "-n", "4"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
