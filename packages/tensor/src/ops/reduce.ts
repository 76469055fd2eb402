// Reductions with PyTorch's (dim, keepdim). The kernels keep reduced dims as size 1; squeezing happens here.

import { isFloat } from "../dtype.js";
import { normalizeDim, normalizeDims } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { apply } from "./apply.js";
import { cast, where } from "./elementwise.js";
import { reshape } from "./movement.js";

function squeezeDims(x: Tensor, dims: number[], keepdim: boolean): Tensor {
  return keepdim
    ? x
    : reshape(
        x,
        x.shape.filter((_, i) => !dims.includes(i)),
      );
}

function reduceOp(
  op: "sum" | "max" | "min",
  x: Tensor,
  dim: number | number[] | undefined,
  keepdim: boolean,
): Tensor {
  const dims = normalizeDims(op, dim, x.ndim);
  return squeezeDims(apply(op, [x], { dims }), dims, keepdim);
}

/** Sum over dim (all dims when omitted). Bool and uint8 sum to int32. */
export function sum(x: Tensor, dim?: number | number[], keepdim = false): Tensor {
  return reduceOp("sum", x, dim, keepdim);
}

export function mean(x: Tensor, dim?: number | number[], keepdim = false): Tensor {
  const xf = isFloat(x.dtype) ? x : cast(x, "float32");
  const dims = normalizeDims("mean", dim, x.ndim);
  const count = dims.reduce((n, d) => n * x.shape[d]!, 1);
  return sum(xf, dims, keepdim).div(count);
}

/** Largest value over dim (torch.amax; ties share the gradient). */
export function max(x: Tensor, dim?: number | number[], keepdim = false): Tensor {
  return reduceOp("max", x, dim, keepdim);
}
export function min(x: Tensor, dim?: number | number[], keepdim = false): Tensor {
  return reduceOp("min", x, dim, keepdim);
}

function argReduce(op: "argmax" | "argmin", x: Tensor, dim: number | undefined, keepdim: boolean): Tensor {
  if (dim === undefined) return apply(op, [reshape(x, [-1])], { dim: 0 }).reshape([]);
  const d = normalizeDim(op, dim, x.ndim);
  return squeezeDims(apply(op, [x], { dim: d }), [d], keepdim);
}
/** Index of the first largest value over dim (over the flattened tensor when dim is omitted), int32. */
export function argmax(x: Tensor, dim?: number, keepdim = false): Tensor {
  return argReduce("argmax", x, dim, keepdim);
}
export function argmin(x: Tensor, dim?: number, keepdim = false): Tensor {
  return argReduce("argmin", x, dim, keepdim);
}

/** log(sum(exp(x))) over dim, stable: the max is subtracted first. */
export function logsumexp(x: Tensor, dim: number | number[], keepdim = false): Tensor {
  const dims = normalizeDims("logsumexp", dim, x.ndim);
  if (dims.some((d) => x.shape[d] === 0)) return sum(x, dims, keepdim).log(); // log(0) = -inf, as torch
  // NOTE: the shift is detached: it cancels out exactly, so it needs no gradient. An all -inf row keeps
  // shift 0 so the result is -inf rather than NaN.
  const m = max(x, dims, true).detach();
  const shift = where(m.abs().eq(Number.POSITIVE_INFINITY), 0, m);
  const out = x.sub(shift).exp().sum(dims, true).log().add(shift);
  return squeezeDims(out, dims, keepdim);
}

/** Variance with Bessel's correction by default (correction=1), as torch.var. */
export function variance(
  x: Tensor,
  dim?: number | number[],
  options: { correction?: number; keepdim?: boolean } = {},
): Tensor {
  const { correction = 1, keepdim = false } = options;
  const dims = normalizeDims("var", dim, x.ndim);
  const n = dims.reduce((k, d) => k * x.shape[d]!, 1);
  const xf = isFloat(x.dtype) ? x : cast(x, "float32");
  const centered = xf.sub(mean(xf, dims, true));
  return sum(centered.mul(centered), dims, keepdim).div(Math.max(0, n - correction));
}
