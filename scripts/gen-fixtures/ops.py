#!/usr/bin/python3
"""Golden fixtures for @tsgrad/tensor ops: forward values and input gradients from PyTorch.

Each case records its inputs, the op's output(s), a random projection v per output and the gradient of
sum(out * v) with respect to every floating-point input, so ops with non-scalar outputs are checked in
every direction of their Jacobian. packages/tensor/test/golden.test.ts replays them without Python.

Run from the repo root (Debian's torch; OPENBLAS_CORETYPE avoids a slow OpenBLAS kernel probe):
    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 scripts/gen-fixtures/ops.py

JSON layout, fixtures/ops/<family>.json:
    {"family": str, "cases": [{"name", "op", "dtype", "attrs",
        "inputs": [{"name", "dtype", "shape", "data", "requiresGrad"}],
        "outputs": [{"shape", "data"}], "v": [{"shape", "data"}], "grads": [{"shape", "data"} | null]}]}
data is flat row-major; non-finite floats are written as the strings "nan", "inf", "-inf". float32
values are written with the shortest decimal that round-trips the float32, float64 values exactly.
"""

import json
import math
import os
import platform
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "fixtures", "ops")

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def enc_float(x, dtype):
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if dtype == "float32":
        # float(str(np.float32)) is the double nearest the shortest float32 decimal, so json prints that
        # decimal; parsing it and rounding to float32 gives back the same float32.
        return float(str(np.float32(x)))
    return float(x)


def enc_tensor(t):
    t = t.detach()
    if t.dtype in (torch.float32, torch.float64):
        dt = "float32" if t.dtype == torch.float32 else "float64"
        data = [enc_float(x, dt) for x in t.reshape(-1).tolist()]
    elif t.dtype == torch.bool:
        dt = "bool"
        data = [1 if x else 0 for x in t.reshape(-1).tolist()]
    else:
        dt = "int32"  # tsgrad indexes with int32; torch's int64 indices fit
        data = [int(x) for x in t.reshape(-1).tolist()]
    return {"shape": list(t.shape), "dtype": dt, "data": data}


def r6(t):
    """Rounds to 6 decimals so float64 inputs are short in JSON and parse identically everywhere."""
    return torch.round(t * 1e6) / 1e6


class Family:
    def __init__(self, name):
        self.name = name
        self.cases = []
        self.names = set()

    def add(self, name, op, fn, inputs, attrs=None, dtype="float64"):
        """inputs: list of (name, tensor). fn(*tensors, **attrs) -> tensor or list of tensors."""
        assert name not in self.names, name
        self.names.add(name)
        attrs = attrs or {}
        leaves = []
        recs = []
        for nm, t in inputs:
            t = t.detach().clone()
            if t.dtype in (torch.float32, torch.float64):
                if t.dtype == torch.float64:
                    t = r6(t)
                t.requires_grad_(True)
            leaves.append(t)
            rec = {"name": nm, **enc_tensor(t), "requiresGrad": t.requires_grad}
            recs.append(rec)
        out = fn(*leaves, **attrs)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        vs = [torch.randn(o.shape, dtype=o.dtype) for o in outs]
        diff = [t for t in leaves if t.requires_grad]
        grads = []
        if diff:
            loss = sum((o * v).sum() for o, v in zip(outs, vs))
            gs = torch.autograd.grad(loss, diff, allow_unused=True)
            it = iter(gs)
            for t in leaves:
                if t.requires_grad:
                    g = next(it)
                    grads.append(None if g is None else strip(enc_tensor(g)))
                else:
                    grads.append(None)
        else:
            grads = [None for _ in leaves]
        self.cases.append(
            {
                "name": name,
                "op": op,
                "dtype": dtype,
                "attrs": {k: enc_float(v, dtype) if isinstance(v, float) else v for k, v in attrs.items()},
                "inputs": recs,
                "outputs": [strip(enc_tensor(o)) for o in outs],
                "v": [strip(enc_tensor(v)) for v in vs],
                "grads": grads,
            }
        )

    def write(self):
        path = os.path.join(OUT_DIR, f"{self.name}.json")
        with open(path, "w") as f:
            json.dump({"family": self.name, "cases": self.cases}, f, separators=(",", ":"), allow_nan=False)
            f.write("\n")
        return path, len(self.cases)


def strip(rec):
    return {"shape": rec["shape"], "data": rec["data"]}


def rn(*shape, dtype="float64", scale=1.0, shift=0.0):
    return torch.randn(shape, dtype=DTYPES[dtype]) * scale + shift


def pos(*shape, dtype="float64"):
    return torch.rand(shape, dtype=DTYPES[dtype]) * 2 + 0.2


def gen_unary(fam):
    ops = {
        "exp": (torch.exp, "any"),
        "log": (torch.log, "pos"),
        "sqrt": (torch.sqrt, "pos"),
        "rsqrt": (torch.rsqrt, "pos"),
        "sin": (torch.sin, "any"),
        "cos": (torch.cos, "any"),
        "tanh": (torch.tanh, "any"),
        "sigmoid": (torch.sigmoid, "wide"),
        "erf": (torch.erf, "any"),
        "abs": (torch.abs, "zero"),
        "relu": (torch.relu, "zero"),
        "silu": (F.silu, "wide"),
        "gelu": (lambda x: F.gelu(x), "wide"),
        "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), "wide"),
        "neg": (torch.neg, "any"),
        "reciprocal": (torch.reciprocal, "nonzero"),
        "square": (torch.square, "any"),
    }
    for dt in ("float64", "float32"):
        for op, (fn, dom) in ops.items():
            if dom == "pos":
                x = pos(3, 4, dtype=dt)
            elif dom == "wide":
                x = rn(3, 4, dtype=dt, scale=3.0)
            elif dom == "zero":
                x = rn(3, 4, dtype=dt)
                x[0, 1] = 0.0
                x[2, 3] = 0.0
            elif dom == "nonzero":
                x = rn(3, 4, dtype=dt)
                x = torch.where(x.abs() < 0.2, torch.full_like(x, 0.5), x)
            else:
                x = rn(3, 4, dtype=dt)
            fam.add(f"{op}_{dt}", op, fn, [("x", x)], dtype=dt)
        # pow with a scalar exponent
        fam.add(f"pow_int3_{dt}", "pow_scalar", lambda x, p: x.pow(p), [("x", rn(3, 4, dtype=dt))], {"p": 3}, dt)
        fam.add(f"pow_half_{dt}", "pow_scalar", lambda x, p: x.pow(p), [("x", pos(3, 4, dtype=dt))], {"p": 0.5}, dt)
        fam.add(f"pow_neg1p5_{dt}", "pow_scalar", lambda x, p: x.pow(p), [("x", pos(3, 4, dtype=dt))], {"p": -1.5}, dt)
        fam.add(f"pow_2_{dt}", "pow_scalar", lambda x, p: x.pow(p), [("x", rn(2, 3, dtype=dt))], {"p": 2}, dt)
    # the same kernels on a transposed (non-contiguous) view
    for op in ("exp", "tanh", "sigmoid", "gelu", "abs"):
        fn = ops[op][0]
        fam.add(f"{op}_on_transposed_float64", "on_transposed", lambda x, inner, fn=fn: fn(x.mT), [("x", rn(3, 4))], {"inner": op})
    # tails where the stable branches matter
    x = torch.tensor([-40.0, -10.0, -1e-8, 0.0, 1e-8, 10.0, 40.0, -5.0], dtype=torch.float64)
    for op in ("sigmoid", "tanh", "erf", "silu", "gelu", "gelu_tanh"):
        fam.add(f"{op}_tails_float64", op, ops[op][0], [("x", x)])


def gen_binary(fam):
    ops = {
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
        "maximum": torch.maximum,
        "minimum": torch.minimum,
        "pow": torch.pow,
    }
    shapes = [
        ("bcast_2x3x4_3x1", (2, 3, 4), (3, 1)),
        ("bcast_4_2x1x4", (4,), (2, 1, 4)),
        ("scalar_3x2_0d", (3, 2), ()),
        ("bcast_3x1_1x4", (3, 1), (1, 4)),
    ]
    for dt in ("float64", "float32"):
        for op, fn in ops.items():
            for tag, sa, sb in shapes:
                if op == "pow":
                    a, b = pos(*sa, dtype=dt), rn(*sb, dtype=dt)
                else:
                    a, b = rn(*sa, dtype=dt), rn(*sb, dtype=dt)
                if op == "div":
                    b = torch.where(b.abs() < 0.3, torch.full_like(b, -0.7), b)
                fam.add(f"{op}_{tag}_{dt}", op, fn, [("a", a), ("b", b)], dtype=dt)
        # ties: torch.maximum/minimum split the gradient in half between equal operands
        a = rn(2, 3, dtype=dt)
        b = rn(2, 3, dtype=dt)
        b[0, 0] = a[0, 0]
        b[1, 2] = a[1, 2]
        if dt == "float64":
            a, b = r6(a), r6(b)
        fam.add(f"maximum_ties_{dt}", "maximum", torch.maximum, [("a", a), ("b", b)], dtype=dt)
        fam.add(f"minimum_ties_{dt}", "minimum", torch.minimum, [("a", a), ("b", b)], dtype=dt)
        # pow with a zero base and zero exponents (pow_backward special cases)
        a = torch.tensor([[0.0, 0.0, 1.5], [2.0, 0.0, 0.7]], dtype=DTYPES[dt])
        b = torch.tensor([[2.0, 0.0, 0.0], [3.0, 1.0, -0.5]], dtype=DTYPES[dt])
        fam.add(f"pow_zero_cases_{dt}", "pow", torch.pow, [("a", a), ("b", b)], dtype=dt)
    fam.add(
        "add_alpha_float64",
        "add_alpha",
        lambda a, b, alpha: torch.add(a, b, alpha=alpha),
        [("a", rn(2, 3)), ("b", rn(3))],
        {"alpha": 2.5},
    )
    fam.add(
        "sub_alpha_float64",
        "sub_alpha",
        lambda a, b, alpha: torch.sub(a, b, alpha=alpha),
        [("a", rn(2, 3)), ("b", rn(2, 1))],
        {"alpha": -0.5},
    )
    fam.add("add_mixed_f32_f64", "add", lambda a, b: a + b, [("a", rn(2, 3, dtype="float32")), ("b", rn(3))])
    fam.add(
        "pow_negative_base_int_exponent_float64",
        "pow",
        torch.pow,
        [
            ("a", torch.tensor([[-1.5, -2.0, 0.5], [-0.5, 3.0, -1.0]], dtype=torch.float64)),
            ("b", torch.tensor([2.0, 3.0, -1.0], dtype=torch.float64)),
        ],
    )
    fam.add("mul_scalar_float64", "mul_scalar", lambda a, s: a * s, [("a", rn(2, 3))], {"s": -1.75})
    fam.add("rdiv_scalar_float64", "rdiv_scalar", lambda a, s: s / a, [("a", pos(2, 3))], {"s": 3.0})
    fam.add("rsub_scalar_float64", "rsub_scalar", lambda a, s: s - a, [("a", rn(2, 3))], {"s": 1.0})


def gen_select(fam):
    for dt in ("float64", "float32"):
        cond = torch.rand(2, 3, 4) > 0.5
        fam.add(
            f"where_bcast_{dt}",
            "where",
            torch.where,
            [("cond", cond), ("a", rn(3, 4, dtype=dt)), ("b", rn(2, 1, 4, dtype=dt))],
            dtype=dt,
        )
        fam.add(
            f"where_scalar_other_{dt}",
            "where_scalar",
            lambda cond, a, other: torch.where(cond, a, torch.tensor(other, dtype=a.dtype)),
            [("cond", torch.rand(3, 4) > 0.5), ("a", rn(3, 4, dtype=dt))],
            {"other": -2.5},
            dt,
        )
        mask = torch.rand(1, 4) > 0.5
        mask[0, 0] = True
        fam.add(
            f"masked_fill_{dt}",
            "masked_fill",
            lambda x, m, value: x.masked_fill(m, value),
            [("x", rn(3, 4, dtype=dt)), ("mask", mask)],
            {"value": -1e9},
            dt,
        )
        fam.add(
            f"masked_fill_neg_inf_{dt}",
            "masked_fill",
            lambda x, m, value: x.masked_fill(m, value),
            [("x", rn(2, 3, dtype=dt)), ("mask", torch.tensor([[True, False, False], [False, False, True]]))],
            {"value": -math.inf},
            dt,
        )
        # values exactly on the bounds: torch passes the gradient there (min <= x <= max)
        x = torch.tensor([[-2.0, -0.5, 0.0, 0.25], [0.5, 0.75, 1.5, -0.5]], dtype=DTYPES[dt])
        fam.add(f"clamp_both_{dt}", "clamp", lambda x, min, max: x.clamp(min, max), [("x", x)], {"min": -0.5, "max": 0.5}, dt)
        fam.add(f"clamp_min_{dt}", "clamp", lambda x, min, max: x.clamp(min=min), [("x", x)], {"min": 0.0, "max": None}, dt)
        fam.add(f"clamp_max_{dt}", "clamp", lambda x, min, max: x.clamp(max=max), [("x", x)], {"min": None, "max": 0.25}, dt)


def gen_reduce(fam):
    def var(x, dim, correction, keepdim):
        return torch.var(x, dim=dim, correction=correction, keepdim=keepdim)

    for dt in ("float64", "float32"):
        x = rn(2, 3, 4, dtype=dt)
        for op, fn in (("sum", torch.sum), ("mean", torch.mean)):
            fam.add(f"{op}_all_{dt}", op, lambda x, dim, keepdim: fn(x), [("x", x)], {"dim": None, "keepdim": False}, dt)
            fam.add(f"{op}_dim1_{dt}", op, lambda x, dim, keepdim: fn(x, dim, keepdim), [("x", x)], {"dim": 1, "keepdim": False}, dt)
            fam.add(
                f"{op}_dims02_keep_{dt}", op, lambda x, dim, keepdim: fn(x, dim, keepdim), [("x", x)], {"dim": [0, 2], "keepdim": True}, dt
            )
            fam.add(f"{op}_dimneg1_keep_{dt}", op, lambda x, dim, keepdim: fn(x, dim, keepdim), [("x", x)], {"dim": -1, "keepdim": True}, dt)
        # amax/amin with ties: torch splits the gradient evenly among the maxima
        xt = rn(2, 3, 4, dtype=dt)
        if dt == "float64":
            xt = r6(xt)
        xt[0, 1, 2] = xt[0, 1].max()
        xt[1, 2, 0] = xt[1, 2].min()
        xt[1, 0, 3] = xt[1, 0, 1]
        for op, fn in (("amax", torch.amax), ("amin", torch.amin)):
            fam.add(f"{op}_dimneg1_ties_{dt}", op, lambda x, dim, keepdim: fn(x, dim, keepdim), [("x", xt)], {"dim": -1, "keepdim": False}, dt)
            fam.add(f"{op}_dims01_keep_{dt}", op, lambda x, dim, keepdim: fn(x, dim, keepdim), [("x", xt)], {"dim": [0, 1], "keepdim": True}, dt)
            fam.add(f"{op}_all_{dt}", op, lambda x, dim, keepdim: fn(x, dim=(0, 1, 2)), [("x", xt)], {"dim": None, "keepdim": False}, dt)
        fam.add(
            f"amax_all_equal_{dt}", "amax", lambda x, dim, keepdim: torch.amax(x, dim, keepdim),
            [("x", torch.full((2, 3), 1.5, dtype=DTYPES[dt]))], {"dim": 1, "keepdim": False}, dt,
        )
        lse = lambda x, dim, keepdim: torch.logsumexp(x, dim, keepdim)  # noqa: E731
        fam.add(f"logsumexp_dim1_{dt}", "logsumexp", lse, [("x", x)], {"dim": 1, "keepdim": False}, dt)
        fam.add(f"logsumexp_dims02_keep_{dt}", "logsumexp", lse, [("x", x)], {"dim": [0, 2], "keepdim": True}, dt)
        big = torch.tensor([[1000.0, 999.0, -1000.0], [-1000.0, -1001.0, -1002.0], [1e4, -1e4, 0.0]], dtype=DTYPES[dt])
        fam.add(f"logsumexp_large_{dt}", "logsumexp", lse, [("x", big)], {"dim": -1, "keepdim": False}, dt)
        neg_inf = torch.tensor([[0.5, -math.inf, 1.0], [-math.inf, -math.inf, 2.0]], dtype=DTYPES[dt])
        fam.add(f"logsumexp_neg_inf_{dt}", "logsumexp", lse, [("x", neg_inf)], {"dim": 1, "keepdim": False}, dt)
        fam.add(
            f"logsumexp_all_neg_inf_row_{dt}", "logsumexp", lse,
            [("x", torch.tensor([[-math.inf, -math.inf], [0.0, 1.0]], dtype=DTYPES[dt]))], {"dim": 1, "keepdim": False}, dt,
        )
        fam.add(
            f"sum_permuted_{dt}", "sum_permuted", lambda x, dims, dim: x.permute(dims).sum(dim), [("x", x)], {"dims": [2, 0, 1], "dim": 1}, dt
        )
        fam.add(
            f"sum_expanded_{dt}", "sum_expanded", lambda x, shape, dim: x.expand(shape).sum(dim), [("x", rn(3, 1, dtype=dt))], {"shape": [2, 3, 4], "dim": [0, 2]}, dt
        )
        fam.add(
            f"mean_transposed_keep_{dt}", "mean_transposed", lambda x, dim: x.mT.mean(dim, keepdim=True), [("x", rn(4, 5, dtype=dt))], {"dim": 0}, dt
        )
        fam.add(f"sum_dims_unsorted_neg_{dt}", "sum", lambda x, dim, keepdim: torch.sum(x, dim, keepdim), [("x", x)], {"dim": [-1, 0], "keepdim": True}, dt)
        fam.add(f"mean_dims_neg_{dt}", "mean", lambda x, dim, keepdim: torch.mean(x, dim, keepdim), [("x", x)], {"dim": [2, -2], "keepdim": False}, dt)
        fam.add(f"amax_dims_neg_{dt}", "amax", lambda x, dim, keepdim: torch.amax(x, dim, keepdim), [("x", xt)], {"dim": [-1, -3], "keepdim": False}, dt)
        fam.add(f"logsumexp_dims_neg_{dt}", "logsumexp", lse, [("x", x)], {"dim": [-1, 0], "keepdim": False}, dt)
        fam.add(f"var_dims_neg_keep_{dt}", "var", var, [("x", x)], {"dim": [-1, 0], "correction": 1, "keepdim": True}, dt)
        fam.add(f"var_single_element_{dt}", "var", var, [("x", rn(3, 1, dtype=dt))], {"dim": 1, "correction": 1, "keepdim": False}, dt)
        fam.add(f"var_dim1_{dt}", "var", var, [("x", x)], {"dim": 1, "correction": 1, "keepdim": False}, dt)
        fam.add(f"var_all_{dt}", "var", var, [("x", x)], {"dim": None, "correction": 1, "keepdim": False}, dt)
        fam.add(f"var_dims02_keep_{dt}", "var", var, [("x", x)], {"dim": [0, 2], "correction": 1, "keepdim": True}, dt)
        fam.add(f"var_dimneg1_corr0_{dt}", "var", var, [("x", x)], {"dim": -1, "correction": 0, "keepdim": False}, dt)


def gen_softmax(fam):
    sm = lambda x, dim: torch.softmax(x, dim)  # noqa: E731
    lsm = lambda x, dim: torch.log_softmax(x, dim)  # noqa: E731
    for dt in ("float64", "float32"):
        x = rn(3, 5, dtype=dt, scale=2.0)
        x3 = rn(2, 3, 4, dtype=dt)
        large = torch.tensor(
            [
                [1000.0, 999.0, 998.5, -1000.0, 1000.0],
                [-1000.0, -999.0, -1001.0, -1000.5, -1003.0],
                [1e4, -1e4, 0.0, 5e3, 9999.0],
                [0.0, 0.0, 0.0, 0.0, 0.0],
            ],
            dtype=DTYPES[dt],
        )
        for op, fn in (("softmax", sm), ("log_softmax", lsm)):
            fam.add(f"{op}_last_{dt}", op, fn, [("x", x)], {"dim": -1}, dt)
            fam.add(f"{op}_dim0_{dt}", op, fn, [("x", x)], {"dim": 0}, dt)
            fam.add(f"{op}_3d_dim1_{dt}", op, fn, [("x", x3)], {"dim": 1}, dt)
            fam.add(f"{op}_large_{dt}", op, fn, [("x", large)], {"dim": -1}, dt)
            fam.add(f"{op}_large_dim0_{dt}", op, fn, [("x", large)], {"dim": 0}, dt)
            fam.add(f"{op}_size1_dim_{dt}", op, fn, [("x", rn(3, 1, dtype=dt))], {"dim": 1}, dt)
            fam.add(f"{op}_transposed_{dt}", "on_transposed_dim", lambda x, inner, dim, fn=fn: fn(x.mT, dim), [("x", rn(4, 3, dtype=dt))], {"inner": op, "dim": -1}, dt)
            masked = torch.tensor([[0.3, -math.inf, 1.2], [-math.inf, 2.0, -math.inf]], dtype=DTYPES[dt])
            if op == "softmax":
                fam.add(f"{op}_masked_neg_inf_{dt}", op, fn, [("x", masked)], {"dim": -1}, dt)


def gen_matmul(fam):
    mm = torch.matmul
    cases = [
        ("2d", (3, 4), (4, 5)),
        ("batched", (2, 3, 4), (2, 4, 5)),
        ("bcast_batch", (2, 1, 3, 4), (3, 4, 2)),
        ("bcast_batch_2d_rhs", (2, 3, 4), (4, 5)),
        ("bcast_batch_2d_lhs", (3, 4), (2, 4, 2)),
        ("vec_vec", (4,), (4,)),
        ("mat_vec", (3, 4), (4,)),
        ("vec_mat", (4,), (4, 5)),
        ("batched_vec", (2, 3, 4), (4,)),
        ("vec_batched", (4,), (2, 4, 3)),
        ("outer_k1", (3, 1), (1, 4)),
        ("bcast_both_batch", (1, 2, 3), (4, 1, 3, 2)),
    ]
    for dt in ("float64", "float32"):
        for tag, sa, sb in cases:
            fam.add(f"matmul_{tag}_{dt}", "matmul", mm, [("a", rn(*sa, dtype=dt)), ("b", rn(*sb, dtype=dt))], dtype=dt)
        fam.add(
            f"matmul_transposed_operands_{dt}",
            "matmul_tt",
            lambda a, b: a.transpose(-1, -2) @ b.transpose(-1, -2),
            [("a", rn(2, 4, 3, dtype=dt)), ("b", rn(2, 5, 4, dtype=dt))],
            dtype=dt,
        )
    fam.add(
        "matmul_large_k_float32",
        "matmul",
        mm,
        [("a", rn(3, 64, dtype="float32")), ("b", rn(64, 2, dtype="float32"))],
        dtype="float32",
    )


def gen_movement(fam):
    for dt in ("float64", "float32"):
        x = rn(2, 3, 4, dtype=dt)
        fam.add(f"reshape_{dt}", "reshape", lambda x, shape: x.reshape(shape), [("x", x)], {"shape": [4, 6]}, dt)
        fam.add(f"reshape_infer_{dt}", "reshape", lambda x, shape: x.reshape(shape), [("x", x)], {"shape": [-1, 2]}, dt)
        fam.add(
            f"transpose_then_reshape_{dt}",
            "transpose_reshape",
            lambda x, d0, d1, shape: x.transpose(d0, d1).reshape(shape),
            [("x", x)],
            {"d0": 0, "d1": 2, "shape": [8, 3]},
            dt,
        )
        fam.add(f"transpose_{dt}", "transpose", lambda x, d0, d1: x.transpose(d0, d1), [("x", x)], {"d0": 0, "d1": 2}, dt)
        fam.add(f"permute_{dt}", "permute", lambda x, dims: x.permute(dims), [("x", x)], {"dims": [2, 0, 1]}, dt)
        fam.add(f"expand_{dt}", "expand", lambda x, shape: x.expand(shape), [("x", rn(3, 1, dtype=dt))], {"shape": [2, 3, 4]}, dt)
        fam.add(f"expand_neg1_{dt}", "expand", lambda x, shape: x.expand(shape), [("x", rn(1, 4, dtype=dt))], {"shape": [3, -1]}, dt)
        fam.add(f"narrow_{dt}", "narrow", lambda x, dim, start, length: x.narrow(dim, start, length), [("x", x)], {"dim": 1, "start": 1, "length": 2}, dt)
        fam.add(
            f"slice_neg_{dt}",
            "slice",
            lambda x, dim, start, end: x[:, :, start:end],
            [("x", x)],
            {"dim": 2, "start": 1, "end": -1},
            dt,
        )
        fam.add(
            f"cat_dim1_{dt}",
            "cat",
            lambda a, b, c, dim: torch.cat([a, b, c], dim),
            [("a", rn(2, 1, 3, dtype=dt)), ("b", rn(2, 2, 3, dtype=dt)), ("c", rn(2, 3, 3, dtype=dt))],
            {"dim": 1},
            dt,
        )
        fam.add(
            f"cat_dimneg1_{dt}",
            "cat",
            lambda a, b, dim: torch.cat([a, b], dim),
            [("a", rn(3, 2, dtype=dt)), ("b", rn(3, 1, dtype=dt))],
            {"dim": -1},
            dt,
        )
        fam.add(
            f"stack_dim1_{dt}",
            "stack",
            lambda a, b, c, dim: torch.stack([a, b, c], dim),
            [("a", rn(2, 3, dtype=dt)), ("b", rn(2, 3, dtype=dt)), ("c", rn(2, 3, dtype=dt))],
            {"dim": 1},
            dt,
        )
        fam.add(f"split_sections_{dt}", "split", lambda x, split, dim: list(torch.split(x, split, dim)), [("x", x)], {"split": [1, 3], "dim": 2}, dt)
        fam.add(f"split_size_{dt}", "split", lambda x, split, dim: list(torch.split(x, split, dim)), [("x", rn(5, 2, dtype=dt))], {"split": 2, "dim": 0}, dt)
        fam.add(f"chunk_{dt}", "chunk", lambda x, chunks, dim: list(torch.chunk(x, chunks, dim)), [("x", x)], {"chunks": 2, "dim": 1}, dt)
        sq = rn(4, 5, dtype=dt)
        for diag in (0, 1, -1):
            fam.add(f"tril_d{diag}_{dt}", "tril", lambda x, diagonal: torch.tril(x, diagonal), [("x", sq)], {"diagonal": diag}, dt)
            fam.add(f"triu_d{diag}_{dt}", "triu", lambda x, diagonal: torch.triu(x, diagonal), [("x", sq)], {"diagonal": diag}, dt)
        fam.add(f"tril_batched_{dt}", "tril", lambda x, diagonal: torch.tril(x, diagonal), [("x", x)], {"diagonal": 0}, dt)
        fam.add(f"squeeze_unsqueeze_{dt}", "squeeze_unsqueeze", lambda x, dim: x.squeeze(1).unsqueeze(dim), [("x", rn(2, 1, 3, dtype=dt))], {"dim": 0}, dt)
        fam.add(f"narrow_neg_start_{dt}", "narrow", lambda x, dim, start, length: x.narrow(dim, start, length), [("x", x)], {"dim": -1, "start": -3, "length": 2}, dt)
        fam.add(f"permute_neg_{dt}", "permute", lambda x, dims: x.permute(dims), [("x", x)], {"dims": [-1, 0, -2]}, dt)
        fam.add(f"unsqueeze_neg_{dt}", "unsqueeze", lambda x, dim: x.unsqueeze(dim), [("x", rn(2, 3, dtype=dt))], {"dim": -1}, dt)
        fam.add(
            f"cat_empty_piece_{dt}",
            "cat",
            lambda a, b, c, dim: torch.cat([a, b, c], dim),
            [("a", rn(2, 2, dtype=dt)), ("b", rn(2, 0, dtype=dt)), ("c", rn(2, 1, dtype=dt))],
            {"dim": 1},
            dt,
        )
        fam.add(f"split_neg_dim_{dt}", "split", lambda x, split, dim: list(torch.split(x, split, dim)), [("x", x)], {"split": 3, "dim": -1}, dt)
        fam.add(f"chunk_uneven_{dt}", "chunk", lambda x, chunks, dim: list(torch.chunk(x, chunks, dim)), [("x", rn(5, 2, dtype=dt))], {"chunks": 3, "dim": 0}, dt)
        fam.add(f"tril_wide_{dt}", "tril", lambda x, diagonal: torch.tril(x, diagonal), [("x", rn(3, 5, dtype=dt))], {"diagonal": 2}, dt)
        fam.add(f"triu_tall_{dt}", "triu", lambda x, diagonal: torch.triu(x, diagonal), [("x", rn(5, 3, dtype=dt))], {"diagonal": -2}, dt)
        fam.add(f"flatten_{dt}", "flatten", lambda x, start, end: x.flatten(start, end), [("x", x)], {"start": 1, "end": -1}, dt)


def gen_indexing(fam):
    for dt in ("float64", "float32"):
        x = rn(3, 4, dtype=dt)
        idx1 = torch.tensor([[0, 0, 3], [1, 2, 1], [3, 3, 3]])
        fam.add(f"gather_dim1_repeats_{dt}", "gather", lambda x, i, dim: torch.gather(x, dim, i), [("x", x), ("index", idx1)], {"dim": 1}, dt)
        idx0 = torch.tensor([[2, 0, 0, 1], [2, 2, 1, 0]])
        fam.add(f"gather_dim0_{dt}", "gather", lambda x, i, dim: torch.gather(x, dim, i), [("x", x), ("index", idx0)], {"dim": 0}, dt)
        fam.add(
            f"gather_index_smaller_{dt}",
            "gather",
            lambda x, i, dim: torch.gather(x, dim, i),
            [("x", x), ("index", torch.tensor([[3, 0], [1, 1]]))],
            {"dim": 1},
            dt,
        )
        idx3 = torch.tensor([[[1], [0], [2]], [[2], [2], [0]]])
        fam.add(
            f"gather_3d_dimneg1_{dt}", "gather", lambda x, i, dim: torch.gather(x, dim, i), [("x", rn(2, 3, 4, dtype=dt)), ("index", idx3)], {"dim": -1}, dt
        )
        sel = torch.tensor([2, 0, 2, 2, 1])
        fam.add(
            f"index_select_dim0_repeats_{dt}", "index_select", lambda x, i, dim: torch.index_select(x, dim, i), [("x", x), ("index", sel)], {"dim": 0}, dt
        )
        fam.add(
            f"index_select_dim1_{dt}",
            "index_select",
            lambda x, i, dim: torch.index_select(x, dim, i),
            [("x", x), ("index", torch.tensor([3, 1, 3]))],
            {"dim": 1},
            dt,
        )
        fam.add(
            f"gather_transposed_{dt}", "gather_transposed", lambda x, i, dim: torch.gather(x.mT, dim, i),
            [("x", rn(4, 3, dtype=dt)), ("index", idx1)], {"dim": 1}, dt,
        )
        fam.add(
            f"index_select_transposed_{dt}", "index_select_transposed", lambda x, i, dim: torch.index_select(x.mT, dim, i),
            [("x", rn(4, 3, dtype=dt)), ("index", sel)], {"dim": 0}, dt,
        )
        ids = torch.tensor([[1, 4, 1, 0, 4], [4, 4, 2, 1, 5]])
        fam.add(f"embedding_repeats_{dt}", "embedding", lambda ids, w: F.embedding(ids, w), [("ids", ids), ("weight", rn(6, 3, dtype=dt))], {}, dt)
        fam.add(
            f"embedding_1d_{dt}", "embedding", lambda ids, w: F.embedding(ids, w), [("ids", torch.tensor([3, 3, 3, 0])), ("weight", rn(4, 2, dtype=dt))], {}, dt
        )


def gen_loss(fam):
    def ce(logits, target, reduction, label_smoothing):
        return F.cross_entropy(logits, target, ignore_index=-100, reduction=reduction, label_smoothing=label_smoothing)

    def nll(logits, target):
        return F.nll_loss(F.log_softmax(logits, dim=1), target)

    for dt in ("float64", "float32"):
        logits = rn(6, 5, dtype=dt, scale=2.0)
        target = torch.tensor([1, -100, 4, 0, -100, 4])
        full = torch.tensor([1, 3, 4, 0, 2, 4])
        fam.add(f"cross_entropy_mean_{dt}", "cross_entropy", ce, [("logits", logits), ("target", full)], {"reduction": "mean", "label_smoothing": 0.0}, dt)
        fam.add(
            f"cross_entropy_ignore_mean_{dt}", "cross_entropy", ce, [("logits", logits), ("target", target)], {"reduction": "mean", "label_smoothing": 0.0}, dt
        )
        fam.add(
            f"cross_entropy_ignore_sum_{dt}", "cross_entropy", ce, [("logits", logits), ("target", target)], {"reduction": "sum", "label_smoothing": 0.0}, dt
        )
        fam.add(
            f"cross_entropy_ignore_none_{dt}", "cross_entropy", ce, [("logits", logits), ("target", target)], {"reduction": "none", "label_smoothing": 0.0}, dt
        )
        fam.add(
            f"cross_entropy_smoothing_{dt}", "cross_entropy", ce, [("logits", logits), ("target", full)], {"reduction": "mean", "label_smoothing": 0.1}, dt
        )
        fam.add(
            f"cross_entropy_smoothing_ignore_{dt}",
            "cross_entropy",
            ce,
            [("logits", logits), ("target", target)],
            {"reduction": "mean", "label_smoothing": 0.2},
            dt,
        )
        fam.add(
            f"cross_entropy_smoothing_ignore_none_{dt}",
            "cross_entropy",
            ce,
            [("logits", logits), ("target", target)],
            {"reduction": "none", "label_smoothing": 0.2},
            dt,
        )
        fam.add(
            f"cross_entropy_smoothing_ignore_sum_{dt}",
            "cross_entropy",
            ce,
            [("logits", logits), ("target", target)],
            {"reduction": "sum", "label_smoothing": 0.1},
            dt,
        )
        fam.add(
            f"cross_entropy_all_ignored_{dt}",
            "cross_entropy",
            ce,
            [("logits", rn(2, 3, dtype=dt)), ("target", torch.tensor([-100, -100]))],
            {"reduction": "mean", "label_smoothing": 0.0},
            dt,
        )
        big = torch.tensor([[1000.0, -1000.0, 0.0], [1e4, -1e4, 5e3], [-1000.0, -999.0, -1001.0]], dtype=DTYPES[dt])
        fam.add(
            f"cross_entropy_large_logits_{dt}",
            "cross_entropy",
            ce,
            [("logits", big), ("target", torch.tensor([1, 2, 1]))],
            {"reduction": "mean", "label_smoothing": 0.0},
            dt,
        )
        fam.add(f"log_softmax_nll_{dt}", "log_softmax_nll", nll, [("logits", rn(8, 4, dtype=dt)), ("target", torch.tensor([0, 3, 3, 1, 2, 0, 3, 1]))], {}, dt)


def gen_nonfinite(fam):
    """NaN and infinity inputs where PyTorch's forward and gradient conventions are well defined."""
    inf = math.inf
    x = torch.tensor([inf, -inf, 1.0, -0.5], dtype=torch.float64)
    for op, fn in (
        ("relu", torch.relu),
        ("sigmoid", torch.sigmoid),
        ("tanh", torch.tanh),
        ("erf", torch.erf),
        ("exp", torch.exp),
        ("silu", F.silu),
        ("gelu", F.gelu),
        ("gelu_tanh", lambda t: F.gelu(t, approximate="tanh")),
    ):
        fam.add(f"{op}_inf_float64", op, fn, [("x", x)])
    fam.add("clamp_inf_float64", "clamp", lambda x, min, max: x.clamp(min, max), [("x", x)], {"min": -1.0, "max": 1.0})
    # NaN must come out as NaN (torch.relu propagates it), never be masked to 0
    xn = torch.tensor([math.nan, 2.0, -3.0, 0.0], dtype=torch.float64)
    for op, fn in (("relu", torch.relu), ("sigmoid", torch.sigmoid), ("exp", torch.exp), ("silu", F.silu), ("gelu", F.gelu)):
        fam.add(f"{op}_nan_float64", op, fn, [("x", xn)])
    fam.add("softmax_nan_row_float64", "softmax", lambda x, dim: torch.softmax(x, dim), [("x", torch.tensor([[math.nan, 1.0], [0.5, 1.0]], dtype=torch.float64))], {"dim": -1})
    fam.add("sum_nan_float64", "sum", lambda x, dim, keepdim: torch.sum(x, dim, keepdim), [("x", torch.tensor([[math.nan, 1.0], [0.5, 1.0]], dtype=torch.float64))], {"dim": 1, "keepdim": False})
    fam.add("relu_nan_float32", "relu", torch.relu, [("x", xn.float())], dtype="float32")


def gen_composite(fam):
    """Small blocks where one input fans out to several ops, so gradients must accumulate."""

    def attention(q, k, v):
        T, d = q.shape[-2], q.shape[-1]
        scores = q @ k.mT / math.sqrt(d)
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), -math.inf)
        return torch.softmax(scores, -1) @ v

    def layer_norm(x, w, b, eps):
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, correction=0, keepdim=True)
        return (x - mu) * torch.rsqrt(var + eps) * w + b

    def rms_norm(x, w, eps):
        return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps) * w

    def swiglu(x, wg, wu, wd):
        return (F.silu(x @ wg.mT) * (x @ wu.mT)) @ wd.mT

    for dt in ("float64", "float32"):
        fam.add(
            f"causal_attention_{dt}", "causal_attention", attention,
            [("q", rn(2, 4, 3, dtype=dt)), ("k", rn(2, 4, 3, dtype=dt)), ("v", rn(2, 4, 3, dtype=dt))], {}, dt,
        )
        fam.add(
            f"layer_norm_{dt}", "layer_norm", layer_norm,
            [("x", rn(3, 5, dtype=dt)), ("w", rn(5, dtype=dt)), ("b", rn(5, dtype=dt))], {"eps": 1e-5}, dt,
        )
        fam.add(f"rms_norm_{dt}", "rms_norm", rms_norm, [("x", rn(3, 5, dtype=dt)), ("w", rn(5, dtype=dt))], {"eps": 1e-6}, dt)
        fam.add(
            f"swiglu_mlp_{dt}", "swiglu_mlp", swiglu,
            [("x", rn(2, 3, 4, dtype=dt)), ("wg", rn(6, 4, dtype=dt)), ("wu", rn(6, 4, dtype=dt)), ("wd", rn(4, 6, dtype=dt))], {}, dt,
        )
        fam.add(
            f"x_times_x_plus_exp_x_{dt}", "fanout", lambda x: x * x + x.exp() * x.sum(0, keepdim=True), [("x", rn(3, 4, dtype=dt))], {}, dt,
        )


def main():
    torch.manual_seed(20261129)
    os.makedirs(OUT_DIR, exist_ok=True)
    gens = [
        ("unary", gen_unary),
        ("binary", gen_binary),
        ("select", gen_select),
        ("reduce", gen_reduce),
        ("softmax", gen_softmax),
        ("matmul", gen_matmul),
        ("movement", gen_movement),
        ("indexing", gen_indexing),
        ("loss", gen_loss),
        ("composite", gen_composite),
        ("nonfinite", gen_nonfinite),
    ]
    total = 0
    for name, gen in gens:
        fam = Family(name)
        gen(fam)
        path, n = fam.write()
        total += n
        print(f"{os.path.relpath(path, ROOT)}: {n} cases, {os.path.getsize(path)} bytes")
    versions = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "command": "OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 scripts/gen-fixtures/ops.py",
        "seed": 20261129,
        "cases": total,
    }
    with open(os.path.join(OUT_DIR, "VERSIONS.json"), "w") as f:
        json.dump(versions, f, indent=2)
        f.write("\n")
    print(f"{total} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
