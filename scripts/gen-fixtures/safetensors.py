#!/usr/bin/python3
"""Golden safetensors files, written by a hand-coded copy of the reference writer (the `safetensors`
package is not installed here): huggingface/safetensors `safetensors/src/tensor.rs`, `prepare()`.

Format: 8-byte little-endian header length N, then N bytes of compact UTF-8 JSON
({"__metadata__": {...}, name: {"dtype", "shape", "data_offsets"}, ...}) padded with spaces to a multiple
of 8, then the tensor bytes. Tensors are laid out by descending dtype alignment (the order of the
reference `Dtype` enum), then by name in byte order, with "__metadata__" first in the JSON.
Element values come from torch/numpy, so 16-bit rounding is PyTorch's.

Run from the repo root:
    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 scripts/gen-fixtures/safetensors.py

Writes fixtures/safetensors/:
    all-dtypes.safetensors   one tensor of every dtype tsgrad reads (F64 ... BOOL)
    golden.safetensors       what tsgrad's writer produces by default (F32, F64, I32, U8, BOOL, a scalar,
                             an empty tensor, a non-ASCII name)
    golden-bf16.safetensors  float32 values stored as BF16 by torch (`.to(torch.bfloat16)`)
    golden-f16.safetensors   the same values stored as F16 by torch (`.to(torch.float16)`)
    values.json              the source float32 bits and the values torch decodes from every tensor
"""

import json
import math
import os
import struct

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "fixtures", "safetensors")

# Position in the reference Dtype enum (increasing alignment).
RANK = {"BOOL": 0, "U8": 4, "I8": 5, "I16": 11, "F16": 13, "BF16": 14, "I32": 15, "F32": 17, "F64": 19, "I64": 20}
ST_DTYPE = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().tobytes()  # numpy arrays here are native little-endian


def serialize(tensors, metadata):
    items = sorted(tensors.items(), key=lambda kv: (-RANK[ST_DTYPE[kv[1].dtype]], kv[0].encode("utf-8")))
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for name, t in items:
        data = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    js = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    js += b" " * ((8 - len(js) % 8) % 8)
    return struct.pack("<Q", len(js)) + js + b"".join(blobs)


def enc(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def f32_bits(a):
    return [int(b) for b in np.asarray(a, dtype=np.float32).view(np.uint32)]


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    # Values that exercise 16-bit rounding: ties to even, subnormals, overflow, non-finite.
    special = [
        0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 3.14159265, -2.5, 65504.0, 65519.0, 65520.0, 70000.0, 3e38,
        1e-8, 3e-8, 6e-8, 1e-5, 6.1e-5, 1e-40,
        1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-8 + 2**-20, 256 + 1,
        float("inf"), float("-inf"),
    ]
    # No NaN in the byte goldens: torch's vectorized CPU cast writes BF16 NaN as 0xffff, its scalar cast
    # and tsgrad write the quiet NaN 0x7fc0; both decode to NaN (all-dtypes checks that on read).
    rng = np.random.RandomState(0)
    src = np.concatenate([np.array(special, dtype=np.float32), rng.randn(20).astype(np.float32) * 3])
    src_t = torch.from_numpy(src.copy())

    all_dtypes = {
        "f64": torch.tensor([[1.5, -2.25, 1e300], [float("inf"), -0.0, 1 / 3]], dtype=torch.float64),
        "f32": torch.from_numpy(src[:12].copy()).reshape(3, 4),
        "f16": torch.cat([torch.tensor([float("nan")]), src_t[:15]]).to(torch.float16),
        "bf16": torch.cat([torch.tensor([float("nan")]), src_t[:15]]).to(torch.bfloat16).reshape(4, 4),
        "i64": torch.tensor([0, -1, 2**31 - 1, -(2**31), 123456789], dtype=torch.int64),
        "i32": torch.tensor([[7, -7], [2**31 - 1, -(2**31)]], dtype=torch.int32),
        "i16": torch.tensor([32767, -32768, 5], dtype=torch.int16),
        "i8": torch.tensor([127, -128, 0, 3], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 254, 255], dtype=torch.uint8),
        "bool": torch.tensor([[True, False], [False, True]]),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
    }
    golden = {
        "b.weight": torch.from_numpy(src[28:34].copy()).reshape(2, 3),
        "a": torch.tensor([0.1, -1e-310, 1e308], dtype=torch.float64),
        "Z.ids": torch.tensor([[1, -2], [2**31 - 1, 0]], dtype=torch.int32),
        "mask": torch.tensor([0, 3, 255, 128, 7], dtype=torch.uint8),
        "flags": torch.tensor([True, False, True, True]),
        "scale": torch.tensor(0.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "\u00e9.bias": torch.tensor([-3.0, 4.0], dtype=torch.float32),
    }
    meta = {"format": "pt"}
    files = {
        "all-dtypes.safetensors": serialize(all_dtypes, meta),
        "golden.safetensors": serialize(golden, meta),
        "golden-bf16.safetensors": serialize({"x": src_t.to(torch.bfloat16), "y": src_t[:6].reshape(2, 3).to(torch.bfloat16)}, None),
        "golden-f16.safetensors": serialize({"x": src_t.to(torch.float16), "y": src_t[:6].reshape(2, 3).to(torch.float16)}, None),
    }
    for name, data in files.items():
        with open(os.path.join(OUT_DIR, name), "wb") as f:
            f.write(data)

    def decoded(t):
        v = t.to(torch.float64) if t.is_floating_point() else t.to(torch.int64)
        return {"shape": list(t.shape), "values": [enc(x) if t.is_floating_point() else int(x) for x in v.reshape(-1).tolist()]}

    values = {
        "generator": "scripts/gen-fixtures/safetensors.py",
        "torch": torch.__version__,
        "src_f32_bits": f32_bits(src),
        "all_dtypes": {k: {"dtype": ST_DTYPE[t.dtype], **decoded(t)} for k, t in all_dtypes.items()},
        "golden": {k: {"dtype": ST_DTYPE[t.dtype], **decoded(t)} for k, t in golden.items()},
        "bf16_decoded": decoded(src_t.to(torch.bfloat16))["values"],
        "f16_decoded": decoded(src_t.to(torch.float16))["values"],
    }
    with open(os.path.join(OUT_DIR, "values.json"), "w") as f:
        json.dump(values, f, indent=1)
        f.write("\n")
    for name in sorted(os.listdir(OUT_DIR)):
        print(name, os.path.getsize(os.path.join(OUT_DIR, name)))


if __name__ == "__main__":
    main()
