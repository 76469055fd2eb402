#!/usr/bin/python3
"""Golden values for bitsandbytes-style quantization (trl-peft-spec section 3), computed with numpy and torch
following the spec (bitsandbytes itself is not installable here), independently of the TypeScript port:
NF4 codes by torch.bucketize over float32 midpoints (right=False: a tie takes the lower code), FP4 by the
CUDA dQuantizeFP4 tree, the 8-bit dynamic map by create_dynamic_map (linspace by the spec's scalar formula), its codes by the
nearest float32 midpoint with ties to the even index (CUDA dQuantize<0>), the double-quant offset as the
float32 mean (accumulated in float64).

Run from the repo root:
    /usr/bin/python3 scripts/gen-fixtures/quant.py

Writes fixtures/quant/quant.safetensors (per case "<case>.<field>") and fixtures/quant/manifest.json.
"""

import json
import os
import struct

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "fixtures", "quant")
f32 = np.float32

NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
], dtype=f32)
FP4 = (np.array([0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3], dtype=f32) / f32(12)).astype(f32)


def linspace_f32(start, end, n):
    """torch.linspace(start, end, n, dtype=float32) by the scalar CPU formula the spec gives: element i < n/2
    is start + step*i, else end - step*(n-1-i), all in float32. (torch.linspace itself takes a vectorized path
    whose entries differ by one ulp on some elements and depend on the SIMD width of the build; the spec's
    listed map values follow the scalar formula.)"""
    s, e = f32(start), f32(end)
    step = f32(f32(e - s) / f32(n - 1))
    out = np.empty(n, dtype=f32)
    for i in range(n):
        out[i] = f32(s + f32(step * f32(i))) if i < n // 2 else f32(e - f32(step * f32(n - 1 - i)))
    return out


def create_dynamic_map():
    """bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)."""
    data = []
    for i in range(7):
        b = torch.from_numpy(linspace_f32(0.1, 1, 2 ** i + 1))
        means = (b[:-1] + b[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    data.sort()
    return np.array(data, dtype=f32)


DYN = create_dynamic_map()


def nf4_codes(s):
    mids = ((NF4[:-1] + NF4[1:]) * f32(0.5)).astype(f32)
    return torch.bucketize(torch.from_numpy(s), torch.from_numpy(mids), right=False).numpy().astype(np.uint8)


def fp4_codes(s):
    t = [f32(v) for v in (0.29166667, 0.583333, 0.8333333, 0.4166667, 0.0859375, 0.20833333, 0.00260417)]
    a = np.abs(s)
    c = np.where(a > t[0],
                 np.where(a > t[1], np.where(a > t[2], 3, 2), np.where(a > t[3], 5, 4)),
                 np.where(a > t[4], np.where(a > t[5], 7, 6), np.where(a > t[6], 1, 0)))
    return (c + np.where(s < 0, 8, 0)).astype(np.uint8)


def dyn_codes(s, code):
    mids = ((code[:-1] + code[1:]) * f32(0.5)).astype(f32)
    idx = np.searchsorted(mids, s, side="left")  # ties take the lower index here ...
    tie = (idx < len(mids)) & (mids[np.minimum(idx, len(mids) - 1)] == s)
    idx = np.where(tie & (idx % 2 == 1), idx + 1, idx)  # ... and the even one in CUDA
    return idx.astype(np.uint8)


def blockwise(x, blocksize, codes_fn):
    x = x.astype(f32).reshape(-1)
    n = x.size
    nb = -(-n // blocksize)
    absmax = np.zeros(nb, dtype=f32)
    q = np.zeros(n, dtype=np.uint8)
    for b in range(nb):
        blk = x[b * blocksize:(b + 1) * blocksize]
        m = np.max(np.abs(blk)) if blk.size else f32(0)
        absmax[b] = m
        inv = f32(1) / np.maximum(f32(m), f32(1e-38))
        s = np.clip((blk * inv).astype(f32), f32(-1), f32(1))
        q[b * blocksize:(b + 1) * blocksize] = codes_fn(s)
    return q, absmax


def quantize_4bit(x, blocksize, qt, dq):
    codes, absmax = blockwise(x, blocksize, nf4_codes if qt == "nf4" else fp4_codes)
    if codes.size % 2 == 1:
        codes = np.concatenate([codes, (nf4_codes if qt == "nf4" else fp4_codes)(np.zeros(1, dtype=f32))])
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)
    out = {"packed": packed.reshape(-1, 1), "absmax": absmax}
    table = NF4 if qt == "nf4" else FP4
    n = x.size
    hi, lo = packed >> 4, packed & 15
    q = np.stack([hi, lo], axis=1).reshape(-1)[:n]
    blk = np.arange(n) // blocksize
    out["dequant"] = (table[q] * absmax[blk]).astype(f32).reshape(x.shape)
    if dq:
        offset = f32(np.mean(absmax.astype(np.float64)))
        centered = (absmax - offset).astype(f32)
        q2, absmax2 = blockwise(centered, 256, lambda s: dyn_codes(s, DYN))
        rec = ((DYN[q2] * absmax2[np.arange(q2.size) // 256]).astype(f32) + offset).astype(f32)
        out["dq_absmax"] = q2
        out["dq_absmax2"] = absmax2
        out["dq_offset"] = np.array([offset], dtype=f32)
        out["dq_dequant"] = (table[q] * rec[blk]).astype(f32).reshape(x.shape)
    return out


def int8_vectorwise(w):
    scb = np.max(np.abs(w), axis=1).astype(f32)
    s = np.where(scb > 0, f32(127) / np.where(scb > 0, scb, f32(1)), f32(0)).astype(f32)
    cb = np.round((w * s[:, None]).astype(f32)).astype(np.int8)  # numpy rounds half to even
    return cb, scb


def write_safetensors(path, tensors):
    dt = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8"}
    header, blobs, pos = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        b = a.tobytes()
        header[name] = {"dtype": dt[a.dtype], "shape": list(a.shape), "data_offsets": [pos, pos + len(b)]}
        blobs.append(b)
        pos += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)))
        fh.write(h)
        for b in blobs:
            fh.write(b)


def main():
    rng = np.random.default_rng(1234)
    cases = []
    tensors = {}

    def add4(name, x, blocksize=64):
        for qt in ("nf4", "fp4"):
            key = f"{name}_{qt}"
            out = quantize_4bit(x, blocksize, qt, dq=True)
            tensors[f"{key}.input"] = x.astype(f32)
            for k, v in out.items():
                tensors[f"{key}.{k}"] = v
            cases.append({"name": key, "kind": "4bit", "quant_type": qt, "blocksize": blocksize, "shape": list(x.shape)})

    add4("spec", np.array([0.5, -1.0, 0.25, 0.0, 0.8, -0.3, 0.1, 2.0], dtype=f32))
    add4("normal_64x64", (rng.standard_normal((64, 64)) * 0.02).astype(f32))
    add4("odd_5x13", rng.standard_normal((5, 13)).astype(f32))
    add4("partial_3x100", rng.uniform(-3, 3, (3, 100)).astype(f32))
    add4("dq_300x64", (rng.standard_normal((300, 64)) * rng.uniform(0.01, 2, (300, 1))).astype(f32))
    add4("bs128_10x50", rng.standard_normal((10, 50)).astype(f32), blocksize=128)
    mids = ((NF4[:-1] + NF4[1:]) * f32(0.5)).astype(f32)
    fp4t = np.array([0.29166667, 0.583333, 0.8333333, 0.4166667, 0.0859375, 0.20833333, 0.00260417], dtype=f32)
    ties = np.concatenate([[f32(1.0)], mids, -fp4t, fp4t, np.zeros(64 - 1 - 15 - 14, dtype=f32)]).astype(f32)
    add4("ties", ties.reshape(1, 64))
    zeros = np.concatenate([np.zeros(64, dtype=f32), rng.standard_normal(70).astype(f32)])
    add4("zero_block", zeros)

    x8 = (rng.standard_normal(1000) * rng.uniform(0.1, 5)).astype(f32)
    x8[17] = 0
    q8, a8 = blockwise(x8, 256, lambda s: dyn_codes(s, DYN))
    tensors["blockwise8.input"] = x8
    tensors["blockwise8.q"] = q8
    tensors["blockwise8.absmax"] = a8
    tensors["blockwise8.dequant"] = (DYN[q8] * a8[np.arange(q8.size) // 256]).astype(f32)
    cases.append({"name": "blockwise8", "kind": "blockwise8", "blocksize": 256, "shape": [1000]})

    w = rng.standard_normal((8, 16)).astype(f32)
    w[3] = 0
    w[5, 2] = 127.0 / 2  # exact halves appear after scaling
    cb, scb = int8_vectorwise(w)
    tensors["int8.input"] = w
    tensors["int8.CB"] = cb
    tensors["int8.SCB"] = scb
    cases.append({"name": "int8", "kind": "int8", "shape": [8, 16]})

    tensors["dynamic_map"] = DYN
    os.makedirs(OUT_DIR, exist_ok=True)
    write_safetensors(os.path.join(OUT_DIR, "quant.safetensors"), tensors)
    with open(os.path.join(OUT_DIR, "manifest.json"), "w") as fh:
        json.dump({"generator": "scripts/gen-fixtures/quant.py", "torch": torch.__version__,
                   "numpy": np.__version__, "cases": cases}, fh, indent=1)
        fh.write("\n")
    print(f"wrote {len(tensors)} tensors, {len(cases)} cases")


if __name__ == "__main__":
    main()
