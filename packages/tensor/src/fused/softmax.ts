// softmax, log_softmax and per-row cross-entropy over the last dim through the backend's fused kernels.
// The callers (functional/activations.ts, functional/losses.ts) keep the compositions and use these only
// when hasFused says the backend has the kernels.

import { isGradEnabled, noGrad } from "../autograd/grad-mode.js";
import { attachNode } from "../ops/apply.js";
import { where } from "../ops/elementwise.js";
import { scatterAdd } from "../ops/indexing.js";
import type { Tensor } from "../tensor.js";
import { runFused } from "./dispatch.js";

/** softmax (log = false) or log_softmax over the last dim, with its backward from the output alone. */
export function fusedSoftmax(x: Tensor, log: boolean): Tensor {
  const [y] = runFused(log ? "logSoftmax" : "softmax", [x], {}, [[x.shape, x.dtype]]);
  return attachNode(y, log ? "logSoftmax" : "softmax", [x], (dy) => {
    if (isGradEnabled()) {
      // createGraph: the same gradient from primitives, recomputing y from x so it is differentiable again
      const shifted = x.sub(x.max(-1, true).detach());
      if (log) return [dy.sub(shifted.sub(shifted.exp().sum(-1, true).log()).exp().mul(dy.sum(-1, true)))];
      const e = shifted.exp();
      const yr = e.div(e.sum(-1, true));
      return [yr.mul(dy.sub(dy.mul(yr).sum(-1, true)))];
    }
    return [runFused(log ? "logSoftmaxBackward" : "softmaxBackward", [dy, y], {}, [[x.shape, x.dtype]])[0]];
  });
}

/**
 * Per-row negative log-likelihood [N] of logits [N, C] at int32 targets [N], with label smoothing, 0 on
 * rows whose target is ignore_index (trl-peft spec 5.1: the loss over completion tokens, labels -100).
 */
export function fusedCrossEntropyRows(
  logits: Tensor,
  target: Tensor,
  attrs: { ignore_index: number; label_smoothing: number },
): Tensor {
  const [x, t] = noGrad(() => [logits.contiguous(), target.contiguous()]);
  const N = logits.shape[0]!;
  const [nll, lse] = runFused("crossEntropy", [x, t], attrs, [
    [[N], logits.dtype],
    [[N], logits.dtype],
  ]);
  return attachNode(nll, "crossEntropy", [logits], (dnll) => {
    if (isGradEnabled()) {
      // createGraph: softmax(logits) - smoothed one-hot, scaled by dnll on valid rows, from primitives
      const { ignore_index: ig, label_smoothing: ls } = attrs;
      const valid = target.ne(ig);
      const g = where(valid, dnll, 0).unsqueeze(1);
      const p = logits.sub(logits.logsumexp(-1, true)).exp();
      const hot = scatterAdd(where(valid, target, 0).unsqueeze(1), g.mul(1 - ls), 1, logits.shape);
      return [
        p
          .mul(g)
          .sub(hot)
          .sub(g.mul(ls / logits.shape[1]!)),
      ];
    }
    return [runFused("crossEntropyBackward", [dnll, x, t, lse], attrs, [[logits.shape, logits.dtype]])[0]];
  });
}
