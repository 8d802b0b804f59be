"""`osprey synth` output checked by independent readers: the reference `safetensors` package and, when installed,
transformers (loads the folder and runs a forward pass: finite, non-degenerate logits).

Run: OSPREY_BIN=build/osprey python3 -m pytest -q tests/golden/test_synth_safetensors.py
(OSPREY_BIN defaults to build/osprey; the test is skipped when the binary is missing.)
"""
import json
import os
import subprocess

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("OSPREY_BIN", os.path.join(ROOT, "build", "osprey"))

pytestmark = pytest.mark.skipif(not os.path.exists(BIN), reason=f"osprey binary not built: {BIN}")


def synth(tmp_path, *args):
    out = tmp_path / "model"
    subprocess.run([BIN, "synth", *args, "-o", str(out)], check=True, capture_output=True)
    return out


def expected_names(n_layers, tied, qkv_bias=False, qk_norm=False):
    """HF llama/qwen2/qwen3 checkpoint names, written out by hand from transformers' modules."""
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    if not tied:
        names.add("lm_head.weight")
    for i in range(n_layers):
        p = f"model.layers.{i}."
        names |= {p + "input_layernorm.weight", p + "post_attention_layernorm.weight"}
        for proj in ("q", "k", "v", "o"):
            names.add(p + f"self_attn.{proj}_proj.weight")
        for proj in ("gate", "up", "down"):
            names.add(p + f"mlp.{proj}_proj.weight")
        if qkv_bias:
            names |= {p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"}
        if qk_norm:
            names |= {p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"}
    return names


def test_smollm2_f32_reads_with_reference_safetensors(tmp_path):
    from safetensors.numpy import load_file
    from safetensors import safe_open

    out = synth(tmp_path, "--shape", "smollm2-135m", "--n-layers", "2", "--dtype", "f32", "--seed", "7")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2 and cfg["hidden_size"] == 576 and cfg["torch_dtype"] == "float32"
    with safe_open(str(out / "model.safetensors"), framework="np") as f:
        assert f.metadata() == {"format": "pt"}
    w = load_file(str(out / "model.safetensors"))
    assert set(w) == expected_names(2, tied=True)
    assert w["model.embed_tokens.weight"].shape == (49152, 576)
    assert w["model.layers.1.self_attn.q_proj.weight"].shape == (576, 576)
    assert w["model.layers.1.self_attn.k_proj.weight"].shape == (192, 576)
    assert w["model.layers.0.mlp.down_proj.weight"].shape == (576, 1536)
    assert all(v.dtype == np.float32 for v in w.values())
    q = w["model.layers.0.self_attn.q_proj.weight"]
    assert abs(float(q.std()) - 0.02) < 0.001 and abs(float(q.mean())) < 0.001
    assert np.all(w["model.norm.weight"] == 1.0)
    # Different tensors get different values; the same seed gives the same file.
    assert not np.array_equal(w["model.layers.0.mlp.up_proj.weight"], w["model.layers.0.mlp.gate_proj.weight"])
    again = load_file(str(synth(tmp_path / "again", "--shape", "smollm2-135m", "--n-layers", "2", "--dtype", "f32",
                                "--seed", "7") / "model.safetensors"))
    assert np.array_equal(again["model.layers.1.mlp.up_proj.weight"], w["model.layers.1.mlp.up_proj.weight"])


def test_qwen2_bias_and_sharding(tmp_path):
    from safetensors.numpy import load_file

    # A small qwen2 config (the real key set, tiny sizes), f16, sharded at ~100 KB.
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 96,
           "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
           "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "tie_word_embeddings": False,
           "bos_token_id": 1, "eos_token_id": 2}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps(cfg))
    out = synth(tmp_path, "--config", str(tmp_path / "cfg" / "config.json"), "--dtype", "f16",
                "--max-shard-gb", str(100000 / 2**30))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) >= 3 and all(f.startswith("model-0000") for f in files)
    names = set()
    total = 0
    for f in files:
        t = load_file(str(out / f))
        for k, v in t.items():
            assert index["weight_map"][k] == f
            assert v.dtype == np.float16
            total += v.nbytes
        names |= set(t)
    assert names == expected_names(3, tied=False, qkv_bias=True)
    assert index["metadata"]["total_size"] == total
    assert t["lm_head.weight"].shape == (1000, 64) or "lm_head.weight" in index["weight_map"]


def test_transformers_runs_the_synth_model(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    out = synth(tmp_path, "--shape", "smollm2-135m", "--n-layers", "2", "--dtype", "f32")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out), torch_dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([[1, 200, 3000, 40000]])).logits
    assert logits.shape == (1, 4, 49152)
    assert torch.isfinite(logits).all()
    assert float(logits.std()) > 1e-3  # not degenerate


def test_bf16_gemma_and_qwen3_read_with_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    out = synth(tmp_path, "--shape", "qwen3-0.6b", "--n-layers", "1", "--dtype", "bf16")
    w = load_file(str(out / "model.safetensors"))
    assert set(w) == expected_names(1, tied=True, qk_norm=True)
    assert w["model.layers.0.self_attn.q_proj.weight"].shape == (2048, 1024)  # 16 heads * head_dim 128
    assert w["model.layers.0.self_attn.q_norm.weight"].shape == (128,)
    assert all(v.dtype == torch.bfloat16 for v in w.values())

    out = synth(tmp_path / "g", "--shape", "gemma-3-270m", "--n-layers", "2", "--dtype", "bf16")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["layer_types"] == ["sliding_attention", "sliding_attention"]
    w = load_file(str(out / "model.safetensors"))
    assert "model.layers.1.pre_feedforward_layernorm.weight" in w
    assert w["model.layers.0.self_attn.k_proj.weight"].shape == (256, 640)
