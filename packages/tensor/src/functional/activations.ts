// Activations and softmax as compositions of primitives: their gradients come from the primitives'.

import { hasFused } from "../fused/dispatch.js";
import { fusedSoftmax } from "../fused/softmax.js";
import { rand } from "../ops/creation.js";
import { where } from "../ops/elementwise.js";
import { normalizeDim } from "../shape.js";
import type { Tensor } from "../tensor.js";

/** max(x, 0); NOTE: written as a where so the gradient at 0 is 0 and NaN passes through, as in PyTorch. */
export function relu(x: Tensor): Tensor {
  return where(x.le(0), 0, x);
}

/** x * sigmoid(x), the SwiGLU gate. */
export function silu(x: Tensor): Tensor {
  return x.mul(x.sigmoid());
}

/** GELU: exact x * Phi(x) by default; "tanh" is the approximation GPT-2 used. */
export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  if (approximate === "tanh") {
    const inner = x.add(x.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
    return x.mul(0.5).mul(inner.tanh().add(1));
  }
  return x.mul(0.5).mul(x.mul(Math.SQRT1_2).erf().add(1));
}

/** exp(x) / sum(exp(x)) along dim; NOTE: the (detached) max is subtracted first so exp cannot overflow. */
export function softmax(x: Tensor, dim: number): Tensor {
  const d = normalizeDim("softmax", dim, x.ndim);
  if (x.shape[d] === 0) return x; // nothing to normalise (the max below has no elements to reduce)
  if (d === x.ndim - 1 && hasFused("softmax", x)) return fusedSoftmax(x, false);
  const e = x.sub(x.max(d, true).detach()).exp();
  return e.div(e.sum(d, true));
}

/** x - logsumexp(x) along dim, computed stably. */
export function logSoftmax(x: Tensor, dim: number): Tensor {
  const d = normalizeDim("logSoftmax", dim, x.ndim);
  if (x.shape[d] === 0) return x;
  if (d === x.ndim - 1 && hasFused("logSoftmax", x)) return fusedSoftmax(x, true);
  const shifted = x.sub(x.max(d, true).detach());
  return shifted.sub(shifted.exp().sum(d, true).log());
}

/** Inverted dropout: in training, zero each element with probability p and scale the rest by 1/(1-p). */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout: p must be in [0, 1], got ${p}`);
  if (!training || p === 0) return x;
  if (p === 1) return x.mul(0);
  const keep = rand(x.shape, { dtype: x.dtype, device: x.device }).lt(1 - p);
  return where(keep, x.div(1 - p), 0);
}
