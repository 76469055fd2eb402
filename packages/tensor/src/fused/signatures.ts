// Fused ops: compositions of primitives (softmax, the losses, RMSNorm, SwiGLU, RoPE) that a backend may
// also run as one kernel, forward and backward. Like the primitives (ops/signatures.ts) each is defined
// once here: its inputs, outputs and attributes; a backend's fused table is a mapped type over these
// names. The composition stays the reference: the frontend runs it when the backend has no fused kernel,
// for dtypes the kernels do not take, or when fused kernels are switched off, and the tests check that
// both agree. Backward kernels are first-order only: the gradient they return does not itself record a
// graph (no double backward through a fused op).

import type { View } from "../backend/backend.js";
import type { TupleOf } from "../ops/signatures.js";

type None = Record<string, never>;

/**
 * Every input arrives row-major and contiguous (its layout may have an offset); every output is a fresh
 * zero-filled row-major view. Shapes use R rows of the last dim C (R = product of the leading dims).
 */
export interface FusedSignatures {
  /** y = x * rstd * weight over the last dim, rstd[r] = 1 / sqrt(mean(x[r]^2) + eps). x [R, C], weight [C]; out y [R, C], rstd [R]. */
  rmsNorm: { in: ["x", "weight"]; out: ["y", "rstd"]; attrs: { eps: number } };
  /** dx and dweight (summed over rows) of rmsNorm. */
  rmsNormBackward: { in: ["dy", "x", "weight", "rstd"]; out: ["dx", "dweight"]; attrs: None };
  /** y = silu(gate) * up, elementwise over equal shapes. */
  swiglu: { in: ["gate", "up"]; out: ["y"]; attrs: None };
  swigluBackward: { in: ["dy", "gate", "up"]; out: ["dgate", "dup"]; attrs: None };
  /**
   * Rotary embedding over the last dim D (even): y = x * cos + rotate_half(x) * sin, with
   * rotate_half([x1, x2]) = [-x2, x1]. x [B, H, T, D]; cos, sin [B, T, D] (shared by the H heads).
   * `transpose` applies the transposed map (the backward): y = x * cos + rotate_half^T(x * sin).
   * `xBTHD` / `yBTHD`: that operand is stored [B, T, H, D] (a projection's own layout) rather than
   * [B, H, T, D], so attention's heads-major operands need no transposing copy either way.
   */
  rope: {
    in: ["x", "cos", "sin"];
    out: ["y"];
    attrs: { transpose: boolean; xBTHD: boolean; yBTHD: boolean };
  };
  /** softmax over the last dim. */
  softmax: { in: ["x"]; out: ["y"]; attrs: None };
  /** dx = y * (dy - sum(dy * y)) over the last dim. */
  softmaxBackward: { in: ["dy", "y"]; out: ["dx"]; attrs: None };
  /** log_softmax over the last dim. */
  logSoftmax: { in: ["x"]; out: ["y"]; attrs: None };
  /** dx = dy - exp(y) * sum(dy) over the last dim. */
  logSoftmaxBackward: { in: ["dy", "y"]; out: ["dx"]; attrs: None };
  /**
   * Per-row cross-entropy of logits [N, C] with int32 targets [N]: nll[n] (0 where target = ignore_index),
   * with torch's label smoothing, and lse[n] = logsumexp(logits[n]) for the backward.
   */
  crossEntropy: {
    in: ["logits", "target"];
    out: ["nll", "lse"];
    attrs: { ignore_index: number; label_smoothing: number };
  };
  /** dlogits[n] = dnll[n] * (softmax(logits[n]) - smoothed one-hot), 0 on ignored rows. */
  crossEntropyBackward: {
    in: ["dnll", "logits", "target", "lse"];
    out: ["dlogits"];
    attrs: { ignore_index: number; label_smoothing: number };
  };
  /**
   * Scaled, masked softmax of attention scores over the last dim: y = softmax(x * scale + mask). x [B, G, T, C]
   * and an additive mask [B, 1, T, C] shared by the G blocks of each batch (heads, or query groups of a KV head).
   */
  maskedSoftmax: { in: ["x", "mask"]; out: ["y"]; attrs: { scale: number } };
  /** dx = scale * y * (dy - sum(dy * y)) over the last dim (the mask gets no gradient). */
  maskedSoftmaxBackward: { in: ["dy", "y"]; out: ["dx"]; attrs: { scale: number } };
  /**
   * One AdamW update (torch.optim.AdamW, trl-peft spec 5.4): decoupled decay w (1 - lr wd), then
   * m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, w -= lr / bc1 * m / (sqrt(v) / bc2Sqrt + eps), where
   * bc1 = 1 - b1^step and bc2Sqrt = sqrt(1 - b2^step). All four inputs have one shape and dtype.
   */
  adamw: {
    in: ["param", "grad", "exp_avg", "exp_avg_sq"];
    out: ["param", "exp_avg", "exp_avg_sq"];
    attrs: AdamWAttrs;
  };
}

export interface AdamWAttrs {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  /** 1 - beta1^step */
  bc1: number;
  /** sqrt(1 - beta2^step) */
  bc2Sqrt: number;
}

export type FusedName = keyof FusedSignatures;
export type FusedAttrs<K extends FusedName> = FusedSignatures[K]["attrs"];

/** A fused kernel reads its contiguous inputs and writes every output. */
export type FusedKernel<K extends FusedName> = (
  inputs: TupleOf<FusedSignatures[K]["in"], View>,
  attrs: FusedAttrs<K>,
  outs: TupleOf<FusedSignatures[K]["out"], View>,
) => void;

export type FusedKernelTable = { [K in FusedName]: FusedKernel<K> };
