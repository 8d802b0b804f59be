#!/usr/bin/env python3
"""Writes a GGUF model's weights as a float32 Hugging Face folder (config.json + model.safetensors), using the
`gguf` package's dequantizer and numpy only: the same weights through Osprey's Hugging Face loading path.

Undoes the GGUF conventions: llama q/k rows are permuted back to HF's rotate-half layout, and Gemma's norm
weights (stored as 1 + w in GGUF) are stored as w again. Names follow transformers' LlamaForCausalLM /
Gemma3ForCausalLM.

Usage: python3 tests/golden/gguf_to_hf.py MODEL.gguf OUT_DIR
"""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def unpermute(w, n_head):
    # inverse of llama.cpp's permute(): (n_head, 2, d/2, cols) <- (n_head, d/2, 2, cols)
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main(src, out):
    r = GGUFReader(src)
    arch = field(r, "general.architecture")
    g = lambda k, d=None: field(r, f"{arch}.{k}", d)
    n_head, n_kv = g("attention.head_count"), g("attention.head_count_kv")
    d_model = g("embedding_length")
    head_dim = g("attention.key_length", d_model // n_head)
    tensors = {}
    names = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    per_layer = {
        "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    if arch == "gemma3":
        per_layer.update({"post_attention_norm": "post_attention_layernorm", "ffn_norm": "pre_feedforward_layernorm",
                          "post_ffw_norm": "post_feedforward_layernorm"})
    else:
        per_layer["ffn_norm"] = "post_attention_layernorm"
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(x) for x in reversed(t.shape)]) if w.ndim != len(t.shape) else w
        name = t.name
        if name.startswith("blk."):
            _, idx, rest = name.split(".", 2)
            part, kind = rest.rsplit(".", 1)
            hf = f"model.layers.{idx}.{per_layer[part]}.{kind}"
        else:
            hf = names[name]
        if arch == "llama" and part_is(name, "attn_q"):
            w = unpermute(w, n_head)
        if arch == "llama" and part_is(name, "attn_k"):
            w = unpermute(w, n_kv)
        if arch == "gemma3" and name.endswith("norm.weight"):
            w = w - 1.0
        tensors[hf] = np.ascontiguousarray(w)
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    tied = "lm_head.weight" not in tensors
    n_vocab = tensors["model.embed_tokens.weight"].shape[0]
    common = {
        "hidden_size": d_model, "intermediate_size": g("feed_forward_length"),
        "num_hidden_layers": g("block_count"), "num_attention_heads": n_head, "num_key_value_heads": n_kv,
        "head_dim": head_dim, "vocab_size": n_vocab, "max_position_embeddings": g("context_length"),
        "rms_norm_eps": float(g("attention.layer_norm_rms_epsilon")), "rope_theta": float(g("rope.freq_base")),
        "tie_word_embeddings": tied, "torch_dtype": "float32",
        "bos_token_id": field(r, "tokenizer.ggml.bos_token_id"), "eos_token_id": field(r, "tokenizer.ggml.eos_token_id"),
    }
    if arch == "llama":
        config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
                  "attention_bias": False, "mlp_bias": False, "rope_scaling": None, **common}
    elif arch == "gemma3":
        window = g("attention.sliding_window")
        n_layers = g("block_count")
        config = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
                  "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": head_dim,
                  "sliding_window": window, "rope_local_base_freq": 10000.0, "rope_scaling": None,
                  "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                                  for i in range(n_layers)],
                  "final_logit_softcapping": None, "attn_logit_softcapping": None, **common}
    else:
        raise SystemExit(f"unsupported architecture {arch}")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"wrote {len(tensors)} tensors to {out}")


def part_is(name, part):
    return name.startswith("blk.") and name.split(".")[2] == part


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
