"""Golden fixtures for @tsgrad/peft: LoRA, DoRA and rsLoRA adapters on fixtures/models/qwen2-tiny.

Each adapter is written in PEFT's on-disk layout (trl-peft-spec 5): adapter_config.json as Python PEFT
writes it (json.dumps(config.to_dict(), indent=2, sort_keys=True), no trailing newline, every LoraConfig
field of the 5.2 example, inference_mode true) and adapter_model.safetensors (saved key names, F32,
metadata {"format": "pt"}, the reference writer's layout). The `peft` package is not needed: the LoRA and
DoRA forward passes are written in plain torch from the spec (sections 1.3 and 2) on top of the Qwen2
model code in models.py, whose `linear` is swapped for an adapter-aware one while the reference runs.

Every adapter has random non-zero B matrices (and, for DoRA, a magnitude vector moved away from
||W||_row), so the adapters change the logits. expected.json records a padded batch (input_ids,
attention_mask, labels with -100 on pads), the logits, the loss and the gradient of the loss with
respect to every adapter parameter, keyed by its name in adapter_model.safetensors. The reference runs in
float64 from the stored float32 weights; a float32 run and the merged-weight form (W + s B A, or DoRA's
diag(m / ||W + s B A||)(W + s B A)) are checked against it.

Folders (fixtures/peft/):
    lora/      r=4, lora_alpha=8 on q_proj, v_proj, o_proj, down_proj
    dora/      use_dora, r=2, lora_alpha=4 on every Linear except lm_head (q/k/v carry biases)
    rslora/    use_rslora, r=4, lora_alpha=8, lora_dropout 0.1, with rank_pattern and alpha_pattern
    minimal/   a hand-written five-key adapter_config.json with the lora/ weights (loads as lora/ does)

Run from the repo root:
    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 scripts/gen-fixtures/peft.py
"""

import json
import math
import os
import re
import shutil
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import models  # noqa: E402  (the Qwen2 forward and the safetensors writer of the model fixtures)
import safetensors as st_ref  # noqa: E402  (the reference writer's tensor order, to cross-check)

ROOT = os.path.dirname(os.path.dirname(HERE))
BASE_DIR = os.path.join(ROOT, "fixtures", "models", "qwen2-tiny")
OUT = os.path.join(ROOT, "fixtures", "peft")
BASE_NAME = "fixtures/models/qwen2-tiny"
PREFIX = "base_model.model."

# LoraConfig.to_dict() as peft 0.20.1.dev0 writes it (trl-peft-spec 5.2), before the per-adapter fields.
CONFIG_DEFAULTS = {
    "alora_invocation_tokens": None,
    "alpha_pattern": {},
    "arrow_config": None,
    "auto_mapping": None,
    "base_model_name_or_path": BASE_NAME,
    "bias": "none",
    "corda_config": None,
    "ensure_weight_tying": False,
    "eva_config": None,
    "exclude_modules": None,
    "fan_in_fan_out": False,
    "inference_mode": True,
    "init_lora_weights": True,
    "kasa_config": None,
    "layer_replication": None,
    "layers_pattern": None,
    "layers_to_transform": None,
    "loftq_config": {},
    "lora_alpha": 8,
    "lora_bias": False,
    "lora_dropout": 0.0,
    "lora_ga_config": None,
    "megatron_config": None,
    "megatron_core": "megatron.core",
    "modules_to_save": None,
    "monteclora_config": None,
    "peft_type": "LORA",
    "peft_version": "0.20.1.dev0",
    "qalora_group_size": 16,
    "r": 8,
    "rank_pattern": {},
    "revision": None,
    "target_modules": None,
    "target_parameters": None,
    "task_type": "CAUSAL_LM",
    "trainable_token_indices": None,
    "use_bdlora": None,
    "use_dora": False,
    "use_qalora": False,
    "use_rslora": False,
    "velora_config": None,
}

# target_modules is a set in PEFT, written in set-iteration order: the lists below are deliberately unsorted.
ADAPTERS = {
    "lora": dict(r=4, lora_alpha=8, target_modules=["v_proj", "q_proj", "down_proj", "o_proj"]),
    "dora": dict(
        r=2,
        lora_alpha=4,
        use_dora=True,
        # what PEFT saves for target_modules="all-linear": the Linear names except the output embedding
        target_modules=["up_proj", "k_proj", "q_proj", "o_proj", "gate_proj", "v_proj", "down_proj"],
    ),
    "rslora": dict(
        r=4,
        lora_alpha=8,
        use_rslora=True,
        lora_dropout=0.1,
        target_modules=["k_proj", "gate_proj", "up_proj", "down_proj"],
        rank_pattern={"down_proj": 2},
        alpha_pattern={"layers.1.mlp.up_proj": 3},
    ),
}
SEEDS = {"lora": 101, "dora": 102, "rslora": 103}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", (name, e["dtype"])
        a, b = e["data_offsets"]
        arr = np.frombuffer(data[8 + n + a : 8 + n + b], dtype="<f4").reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def load_base():
    with open(os.path.join(BASE_DIR, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    return cfg, read_safetensors(os.path.join(BASE_DIR, "model.safetensors"))


def pattern_key(patterns, key):
    """get_pattern_key: the first pattern k (dict order) with re.match(^(.*\\.)?(k)$, key)."""
    for k in patterns:
        if re.match(rf"^(.*\.)?({k})$", key):
            return k
    return None


def targets_of(cfg, spec):
    """Module paths of the Linears that the list target_modules selects (suffix match on a dot boundary)."""
    names = [n[: -len(".weight")] for n in models.param_shapes(cfg) if n.endswith("_proj.weight")]
    return [n for n in names if any(n == t or n.endswith("." + t) for t in spec["target_modules"])]


def make_adapter(base, cfg, spec, seed):
    """Random adapter weights, keyed by module path: A (kaiming-uniform as PEFT), B and m (random, non-zero)."""
    gen = torch.Generator().manual_seed(seed)
    layers = {}
    for path in targets_of(cfg, spec):
        W = base[path + ".weight"]
        O, I = W.shape
        rk = pattern_key(spec.get("rank_pattern", {}), path)
        ak = pattern_key(spec.get("alpha_pattern", {}), path)
        r = spec["rank_pattern"][rk] if rk is not None else spec["r"]
        alpha = spec["alpha_pattern"][ak] if ak is not None else spec["lora_alpha"]
        s = alpha / math.sqrt(r) if spec.get("use_rslora") else alpha / r
        bound = 1 / math.sqrt(I)
        A = (torch.rand(r, I, generator=gen) * 2 - 1) * bound
        B = 0.1 * torch.randn(O, r, generator=gen)
        entry = {"A": A.to(torch.float32), "B": B.to(torch.float32), "s": s, "r": r, "alpha": alpha}
        if spec.get("use_dora"):
            # PEFT initialises m = ||W + s B A||_row (= ||W||_row while B is zero); training moves it.
            m = W.to(torch.float64).norm(dim=1) * (1 + 0.2 * torch.randn(O, generator=gen, dtype=torch.float64))
            entry["m"] = m.to(torch.float32)
        layers[path] = entry
    return layers


def saved_tensors(layers):
    """adapter_model.safetensors contents: PEFT's saved keys (adapter name removed; DoRA without .weight)."""
    out = {}
    for path, e in layers.items():
        out[f"{PREFIX}{path}.lora_A.weight"] = e["A"]
        out[f"{PREFIX}{path}.lora_B.weight"] = e["B"]
        if "m" in e:
            out[f"{PREFIX}{path}.lora_magnitude_vector"] = e["m"]
    return out


def peft_linear(live):
    """models.linear with LoRA / DoRA on the adapted layers, as PEFT's Linear.forward (eval mode: no dropout)."""
    base_linear = models.linear

    def linear(x, p, name):
        result = base_linear(x, p, name)
        a = live.get(name)
        if a is None:
            return result
        A, B, s = a["A"], a["B"], a["s"]
        lora = (x @ A.T) @ B.T  # lora_B(lora_A(dropout(x))), dropout is the identity in eval
        if "m" not in a:
            return result + lora * s
        # DoraLinearVariant.forward: norm of W + s * (B A) with the LoRA weight detached, then detached again
        W = p[name + ".weight"]
        weight_norm = torch.linalg.norm(W + s * (B @ A).detach(), dim=1).detach()
        scale = (a["m"] / weight_norm).view(1, -1)
        base_result = result - p[name + ".bias"] if name + ".bias" in p else result
        return result + (scale - 1) * base_result + scale * lora * s

    return linear


def merged_weights(p, live):
    """The merged form of every adapted layer (spec 1.9 and 2, merge)."""
    q = dict(p)
    for name, a in live.items():
        W = p[name + ".weight"]
        w = W + a["s"] * a["B"] @ a["A"]
        if "m" in a:
            w = (a["m"] / torch.linalg.norm(w, dim=1).detach())[:, None] * w
        q[name + ".weight"] = w
    return q


def run(cfg, base, layers, inputs, dtype, merged=False):
    p = {k: v.to(dtype) for k, v in base.items()}
    live = {}
    for path, e in layers.items():
        live[path] = {k: (v.to(dtype).clone().requires_grad_(True) if torch.is_tensor(v) else v) for k, v in e.items()}
    ids = torch.tensor(inputs["input_ids"])
    mask = torch.tensor(inputs["attention_mask"])
    labels = torch.tensor(inputs["labels"])
    saved = models.linear
    try:
        if merged:
            logits, loss = models.forward(merged_weights(p, live), cfg, ids, mask, None, labels, dtype)
        else:
            models.linear = peft_linear(live)
            logits, loss = models.forward(p, cfg, ids, mask, None, labels, dtype)
    finally:
        models.linear = saved
    if live:
        loss.backward()
    grads = {}
    for path, e in live.items():
        grads[f"{PREFIX}{path}.lora_A.weight"] = e["A"].grad
        grads[f"{PREFIX}{path}.lora_B.weight"] = e["B"].grad
        if "m" in e:
            grads[f"{PREFIX}{path}.lora_magnitude_vector"] = e["m"].grad
    return logits.detach(), loss.detach(), grads


def f32_list(t):
    """Float32 values as the shortest decimal strings that round-trip (numpy's float32 repr)."""
    return [float(repr(v)) for v in t.detach().to(torch.float64).reshape(-1).numpy().astype(np.float32)]


def packed(t):
    return {"shape": list(t.shape), "data": f32_list(t)}


def write_config(folder, fields):
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        f.write(json.dumps(fields, indent=2, sort_keys=True))


def build(name, cfg, base, inputs):
    spec = ADAPTERS[name]
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    layers = make_adapter(base, cfg, spec, SEEDS[name])
    tensors = saved_tensors(layers)
    path = os.path.join(folder, "adapter_model.safetensors")
    models.write_safetensors(path, tensors)
    with open(path, "rb") as f:
        assert f.read() == st_ref.serialize(tensors, {"format": "pt"}), "writer layouts disagree"
    config = {**CONFIG_DEFAULTS, **spec}
    assert set(config) == set(CONFIG_DEFAULTS), set(config) ^ set(CONFIG_DEFAULTS)
    write_config(folder, config)

    logits, loss, grads = run(cfg, base, layers, inputs, torch.float64)
    l32, loss32, g32 = run(cfg, base, layers, inputs, torch.float32)
    lm, lossm, gm = run(cfg, base, layers, inputs, torch.float64, merged=True)
    base_logits, _, _ = run(cfg, base, {}, inputs, torch.float64)

    def rel(a, b):
        return float((a.to(torch.float64) - b).abs().max() / b.abs().max())

    check = {
        "float32_logits_max_rel": rel(l32, logits),
        "float32_grads_max_rel": max(rel(g32[k], grads[k]) for k in grads),
        "merged_logits_max_rel": rel(lm, logits),
        "merged_grads_max_rel": max(rel(gm[k], grads[k]) for k in grads),
        "adapter_effect_max_abs": float((logits - base_logits.detach()).abs().max()),
    }
    assert check["float32_logits_max_rel"] < 1e-5 and check["float32_grads_max_rel"] < 1e-4, check
    assert check["merged_logits_max_rel"] < 1e-12 and check["merged_grads_max_rel"] < 1e-10, check
    assert check["adapter_effect_max_abs"] > 0.05, check
    assert set(grads) == set(tensors)
    assert all(float(g.abs().max()) > 0 for g in grads.values()), "an adapter parameter gets no gradient"

    expected = {
        "generator": "scripts/gen-fixtures/peft.py",
        "torch": torch.__version__,
        "reference_dtype": "float64 (from the float32 base and adapter weights)",
        "base": BASE_NAME,
        "inputs": inputs,
        "loss": float(loss),
        "checks": check,
        "logits": packed(logits),
        "grads": {k: packed(grads[k]) for k in sorted(grads)},
    }
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")
    print(name, "loss", float(loss), check)


def build_minimal():
    spec = ADAPTERS["lora"]
    folder = os.path.join(OUT, "minimal")
    os.makedirs(folder, exist_ok=True)
    fields = {
        "peft_type": "LORA",
        "r": spec["r"],
        "lora_alpha": spec["lora_alpha"],
        "target_modules": spec["target_modules"],
        "task_type": "CAUSAL_LM",
    }
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(fields, f)
        f.write("\n")
    weights = "adapter_model.safetensors"
    shutil.copyfile(os.path.join(OUT, "lora", weights), os.path.join(folder, weights))


if __name__ == "__main__":
    torch.set_num_threads(1)
    cfg, base = load_base()
    inputs = models.padded_inputs(21, explicit_positions=False)
    for name in ADAPTERS:
        build(name, cfg, base, inputs)
    build_minimal()
    total = 0
    for d, _, files in sorted(os.walk(OUT)):
        for fn in sorted(files):
            size = os.path.getsize(os.path.join(d, fn))
            total += size
            print(os.path.relpath(os.path.join(d, fn), OUT), size)
    print("total", total)
    assert total < 500_000
