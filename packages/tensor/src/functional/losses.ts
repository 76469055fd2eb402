// Losses as pure functions of primitives.

import { hasFused } from "../fused/dispatch.js";
import { fusedCrossEntropyRows } from "../fused/softmax.js";
import { where } from "../ops/elementwise.js";
import { fmt } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { logSoftmax } from "./activations.js";

export interface CrossEntropyOptions {
  /** Targets equal to this contribute nothing and are not counted in the mean (PyTorch and HF: -100). */
  ignore_index?: number;
  reduction?: "mean" | "sum" | "none";
  /** Mixes the one-hot target with the uniform distribution, as torch's label_smoothing. */
  label_smoothing?: number;
}

/**
 * torch.nn.functional.cross_entropy for logits [N, C] and int32 targets [N]. With reduction "mean" it
 * averages over targets that are not ignore_index (NaN when all are ignored, as in PyTorch).
 * @example const loss = crossEntropy(logits.reshape([-1, V]), labels.reshape([-1]));
 */
export function crossEntropy(logits: Tensor, target: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const { ignore_index = -100, reduction = "mean", label_smoothing = 0 } = options;
  if (logits.ndim !== 2 || target.ndim !== 1 || target.shape[0] !== logits.shape[0]) {
    throw new RangeError(
      `crossEntropy: expected logits [N, C] and target [N], got ${fmt(logits.shape)} and ${fmt(target.shape)}; flatten batch and time first`,
    );
  }
  if (target.dtype !== "int32")
    throw new TypeError(`crossEntropy: target must be int32 class indices, got ${target.dtype}`);
  const C = logits.shape[1]!;
  if (hasFused("crossEntropy", logits) && target.backend === logits.backend) {
    const valid = target.ne(ignore_index);
    const nll = fusedCrossEntropyRows(logits, target, { ignore_index, label_smoothing });
    if (reduction === "none") return nll;
    if (reduction === "sum") return nll.sum();
    return nll.sum().div(valid.sum().to(nll.dtype));
  }
  const logp = logSoftmax(logits, 1);
  const valid = target.ne(ignore_index);
  const safe = where(valid, target, 0);
  let picked: Tensor;
  try {
    picked = logp.gather(1, safe.unsqueeze(1));
  } catch (e) {
    throw new RangeError(
      `crossEntropy: every target must be in [0, ${C}) or equal ignore_index ${ignore_index} (logits ${fmt(logits.shape)}); ${(e as Error).message}`,
    );
  }
  let nll = picked.squeeze(1).neg();
  if (label_smoothing > 0) {
    const smooth = logp.sum(1).neg().div(C);
    nll = nll.mul(1 - label_smoothing).add(smooth.mul(label_smoothing));
  }
  nll = where(valid, nll, 0);
  if (reduction === "none") return nll;
  if (reduction === "sum") return nll.sum();
  return nll.sum().div(valid.sum().to(nll.dtype));
}
