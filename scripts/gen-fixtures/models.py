"""Golden fixtures for the Qwen2 and Llama models in @tsgrad/nn.

Builds a tiny random Qwen2 (q/k/v biases, tied embeddings, pad_token_id as padding_idx) and a tiny Llama
(untied, rope_theta 500000, llama3 rope scaling, explicit position_ids), saves each in the Hugging Face
layout (config.json + model.safetensors, written by hand: header length u64 LE, JSON header padded with
spaces to a multiple of 8, F32 data sorted by name), and records logits, loss and every parameter gradient
for a padded batch with -100 labels.

The forward is plain torch written from transformers' modeling_qwen2.py / modeling_llama.py (eager
attention): RMSNorm in (at least) float32, rotate_half RoPE, repeat_kv, an additive causal + padding mask
holding the dtype's min, softmax in float32, and the shifted cross-entropy of ForCausalLMLoss. The
reference runs in float64 from the stored float32 weights; a float32 run is checked against it.

Run: /usr/bin/python3 scripts/gen-fixtures/models.py   (torch 1.13 + numpy; transformers not needed)
"""

import json
import math
import os
import struct

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures", "models")


# ---- the model, as transformers computes it ----


def rms_norm(x, weight, eps):
    dtype = x.dtype
    xf = x.to(torch.float32) if dtype in (torch.float16, torch.bfloat16, torch.float32) else x
    variance = xf.pow(2).mean(-1, keepdim=True)
    xf = xf * torch.rsqrt(variance + eps)
    return weight * xf.to(dtype)


def rope_inv_freq(cfg, dtype):
    d = cfg["head_dim"]
    base = cfg["rope_theta"]
    inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).to(dtype) / d))
    scaling = cfg.get("rope_scaling")
    if scaling is None or scaling.get("rope_type", scaling.get("type")) == "default":
        return inv
    assert scaling["rope_type"] == "llama3"
    # modeling_rope_utils._compute_llama3_parameters
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rotary_cos_sin(cfg, position_ids, dtype):
    inv = rope_inv_freq(cfg, dtype)
    freqs = position_ids.to(dtype)[:, :, None] * inv[None, None, :]  # [B, T, d/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [B, T, d]
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(x, n_rep):
    b, kv, s, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kv, n_rep, s, d).reshape(b, kv * n_rep, s, d)


def causal_mask(attention_mask, T, dtype):
    # _prepare_4d_causal_attention_mask_with_cache_position (no cache: cache_position = arange(T))
    B = attention_mask.shape[0]
    min_dtype = torch.finfo(dtype).min
    mask = torch.full((T, T), min_dtype, dtype=dtype)
    mask = torch.triu(mask, diagonal=1)
    mask = mask[None, None, :, :].expand(B, 1, -1, -1).clone()
    padding = (mask + attention_mask[:, None, None, :].to(dtype)) == 0
    return mask.masked_fill(padding, min_dtype)


def linear(x, p, name):
    y = x @ p[name + ".weight"].T
    if name + ".bias" in p:
        y = y + p[name + ".bias"]
    return y


def attention(x, p, pre, cfg, cos, sin, mask):
    B, T, _ = x.shape
    nH, nKV, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    q = linear(x, p, pre + "q_proj").view(B, T, nH, d).transpose(1, 2)
    k = linear(x, p, pre + "k_proj").view(B, T, nKV, d).transpose(1, 2)
    v = linear(x, p, pre + "v_proj").view(B, T, nKV, d).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    k = repeat_kv(k, nH // nKV)
    v = repeat_kv(v, nH // nKV)
    w = torch.matmul(q, k.transpose(2, 3)) * d**-0.5 + mask
    wide = torch.float64 if w.dtype == torch.float64 else torch.float32
    w = torch.nn.functional.softmax(w, dim=-1, dtype=wide).to(q.dtype)
    o = torch.matmul(w, v).transpose(1, 2).reshape(B, T, nH * d)
    return linear(o, p, pre + "o_proj")


def mlp(x, p, pre):
    g = linear(x, p, pre + "gate_proj")
    return linear(torch.nn.functional.silu(g) * linear(x, p, pre + "up_proj"), p, pre + "down_proj")


def forward(p, cfg, input_ids, attention_mask, position_ids, labels, dtype):
    B, T = input_ids.shape
    pad = cfg.get("pad_token_id")
    # nn.Embedding(padding_idx=pad): the padding row gets no gradient from the lookup
    h = torch.nn.functional.embedding(input_ids, p["model.embed_tokens.weight"], padding_idx=pad)
    if position_ids is None:
        position_ids = torch.arange(T)[None, :].expand(B, T)
    cos, sin = rotary_cos_sin(cfg, position_ids, dtype)
    mask = causal_mask(attention_mask, T, dtype)
    eps = cfg["rms_norm_eps"]
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        r = h
        h = rms_norm(h, p[pre + "input_layernorm.weight"], eps)
        h = r + attention(h, p, pre + "self_attn.", cfg, cos, sin, mask)
        r = h
        h = rms_norm(h, p[pre + "post_attention_layernorm.weight"], eps)
        h = r + mlp(h, p, pre + "mlp.")
    h = rms_norm(h, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else p["lm_head.weight"]
    logits = h @ head.T
    # ForCausalLMLoss: float logits, labels padded with -100 and shifted by one
    wide = torch.float64 if logits.dtype == torch.float64 else torch.float32
    shift_labels = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits.to(wide).reshape(-1, logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100
    )
    return logits, loss


# ---- parameters and files ----


def param_shapes(cfg):
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nH, nKV, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    qwen2 = cfg["model_type"] == "qwen2"
    qkv_bias = qwen2 or cfg.get("attention_bias", False)
    o_bias = (not qwen2) and cfg.get("attention_bias", False)
    mlp_bias = (not qwen2) and cfg.get("mlp_bias", False)
    shapes = {"model.embed_tokens.weight": [V, H]}
    # Qwen2DecoderLayer / LlamaDecoderLayer define self_attn, mlp, input_layernorm, post_attention_layernorm
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        for name, out in (("q_proj", nH * d), ("k_proj", nKV * d), ("v_proj", nKV * d)):
            shapes[pre + f"self_attn.{name}.weight"] = [out, H]
            if qkv_bias:
                shapes[pre + f"self_attn.{name}.bias"] = [out]
        shapes[pre + "self_attn.o_proj.weight"] = [H, nH * d]
        if o_bias:
            shapes[pre + "self_attn.o_proj.bias"] = [H]
        for name, shape in (("gate_proj", [I, H]), ("up_proj", [I, H]), ("down_proj", [H, I])):
            shapes[pre + f"mlp.{name}.weight"] = shape
            if mlp_bias:
                shapes[pre + f"mlp.{name}.bias"] = [shape[0]]
        shapes[pre + "input_layernorm.weight"] = [H]
        shapes[pre + "post_attention_layernorm.weight"] = [H]
    shapes["model.norm.weight"] = [H]
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = [V, H]
    return shapes


def random_params(cfg, gen):
    p = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("layernorm.weight") or name == "model.norm.weight":
            t = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith(".bias"):
            t = 0.1 * torch.randn(shape, generator=gen)
        elif "embed_tokens" in name or name == "lm_head.weight":
            t = 0.5 * torch.randn(shape, generator=gen)
        else:
            t = 0.2 * torch.randn(shape, generator=gen)
        p[name] = t.to(torch.float32)
    return p


def write_safetensors(path, tensors):
    names = sorted(tensors)
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    blobs = []
    for n in names:
        data = tensors[n].detach().contiguous().numpy().astype("<f4").tobytes()
        header[n] = {"dtype": "F32", "shape": list(tensors[n].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_golden(folder, cfg, inputs, logits, loss, grads, f32_check):
    """golden.bin: float32 little-endian arrays back to back; golden.json: inputs, loss and the index."""
    index = {}
    chunks = []
    offset = 0
    for name, t in [("logits", logits)] + sorted(grads.items()):
        data = t.detach().to(torch.float64).numpy().astype("<f4").tobytes()
        index[name] = {"shape": list(t.shape), "offset": offset, "length": t.numel()}
        chunks.append(data)
        offset += len(data)
    with open(os.path.join(folder, "golden.bin"), "wb") as f:
        for c in chunks:
            f.write(c)
    meta = {
        "generator": "scripts/gen-fixtures/models.py",
        "torch": torch.__version__,
        "reference_dtype": "float64 (from the float32 weights in model.safetensors)",
        "inputs": inputs,
        "loss": float(loss),
        "float32_vs_float64": f32_check,
        "tensors": index,
    }
    with open(os.path.join(folder, "golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def build(name, cfg, inputs, seed):
    folder = os.path.join(ROOT, name)
    os.makedirs(folder, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    params32 = random_params(cfg, gen)
    write_safetensors(os.path.join(folder, "model.safetensors"), params32)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({k: v for k, v in cfg.items() if k != "head_dim" or cfg["model_type"] == "llama"}, f, indent=2)
        f.write("\n")

    input_ids = torch.tensor(inputs["input_ids"])
    attention_mask = torch.tensor(inputs["attention_mask"])
    labels = torch.tensor(inputs["labels"])
    position_ids = torch.tensor(inputs["position_ids"]) if "position_ids" in inputs else None

    results = {}
    for dtype in (torch.float64, torch.float32):
        p = {k: v.to(dtype).clone().requires_grad_(True) for k, v in params32.items()}
        logits, loss = forward(p, cfg, input_ids, attention_mask, position_ids, labels, dtype)
        loss.backward()
        results[dtype] = (logits.detach(), loss.detach(), {k: v.grad for k, v in p.items()})
    logits, loss, grads = results[torch.float64]
    l32, loss32, g32 = results[torch.float32]
    rel = lambda a, b: float(((a.to(torch.float64) - b).abs().max() / b.abs().max()))
    check = {
        "logits_max_rel": rel(l32, logits),
        "loss_abs": abs(float(loss32) - float(loss)),
        "grads_max_rel": max(rel(g32[k], grads[k]) for k in grads),
    }
    assert check["logits_max_rel"] < 1e-5 and check["grads_max_rel"] < 1e-4, check
    write_golden(folder, cfg, inputs, logits, loss, grads, check)
    print(name, "loss", float(loss), check, "grad max |g|", {k: float(v.abs().max()) for k, v in list(grads.items())[:3]})


QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "hidden_act": "silu",
    "max_position_embeddings": 128,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-6,
    "use_cache": True,
    "tie_word_embeddings": True,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "use_sliding_window": False,
    "sliding_window": 4096,
    "max_window_layers": 28,
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "torch_dtype": "float32",
}

LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-5,
    "use_cache": True,
    "tie_word_embeddings": False,
    "rope_theta": 500000.0,
    # wavelengths 2*pi/inv_freq are about 6.3, 167, 4.5e3 and 1.2e5: one high (kept), one medium
    # (smoothed, 64 <= 167 <= 256) and two low (divided by factor) frequencies
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 256,
        "rope_type": "llama3",
    },
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": None,
    "pretraining_tp": 1,
    "torch_dtype": "float32",
}


def padded_inputs(seed, explicit_positions):
    g = torch.Generator().manual_seed(seed)
    T = 8
    ids = torch.randint(3, 128, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.int64)
    mask[0, :2] = 0  # row 0: left padding
    mask[1, -3:] = 0  # row 1: right padding
    ids[mask == 0] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[0, 2] = -100  # a masked prompt token
    out = {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": labels.tolist()}
    if explicit_positions:
        # what generate() passes: cumsum(mask) - 1, with 1 at padded positions
        pos = mask.cumsum(-1) - 1
        pos = pos.masked_fill(mask == 0, 1)
        out["position_ids"] = pos.tolist()
    return out


def write_manifest():
    """Expected state-dict keys and shapes (in Hugging Face's order) for configs covering every option."""
    cases = {
        "qwen2-tiny": QWEN2,
        "qwen2-untied": {**QWEN2, "tie_word_embeddings": False, "num_key_value_heads": 4},
        "llama-tiny": LLAMA,
        "llama-biased": {**LLAMA, "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True},
    }
    out = {name: {"config": cfg, "state_dict": param_shapes(cfg)} for name, cfg in cases.items()}
    with open(os.path.join(ROOT, "manifest.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    torch.set_num_threads(1)
    build("qwen2-tiny", QWEN2, padded_inputs(11, explicit_positions=False), seed=1)
    build("llama-tiny", LLAMA, padded_inputs(12, explicit_positions=True), seed=2)
    write_manifest()
