// Optimizer updates as one pass over each parameter, with their compositions as the reference.

import { noGrad } from "../autograd/grad-mode.js";
import { shapesEqual } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { hasFused, runFused } from "./dispatch.js";
import type { AdamWAttrs } from "./signatures.js";

/** The AdamW update as primitives: [param, exp_avg, exp_avg_sq] after one step (see FusedSignatures.adamw). */
export function adamwComposition(
  param: Tensor,
  grad: Tensor,
  expAvg: Tensor,
  expAvgSq: Tensor,
  a: AdamWAttrs,
): [Tensor, Tensor, Tensor] {
  return noGrad(() => {
    const m = expAvg.mul(a.beta1).add(grad.mul(1 - a.beta1));
    const v = expAvgSq.mul(a.beta2).add(grad.square().mul(1 - a.beta2));
    const decayed = a.weight_decay !== 0 ? param.mul(1 - a.lr * a.weight_decay) : param;
    const denom = v.sqrt().div(a.bc2Sqrt).add(a.eps);
    return [decayed.sub(m.div(denom).mul(a.lr / a.bc1)), m, v];
  });
}

/**
 * One AdamW step of a parameter (torch.optim.AdamW, decoupled weight decay): the new parameter and
 * moments as fresh tensors. param, grad and the moments must share shape and dtype for the fused kernel;
 * otherwise (or without one) the composition runs.
 */
export function adamwUpdate(
  param: Tensor,
  grad: Tensor,
  expAvg: Tensor,
  expAvgSq: Tensor,
  attrs: AdamWAttrs,
): [Tensor, Tensor, Tensor] {
  const same = [grad, expAvg, expAvgSq].every(
    (t) => t.dtype === param.dtype && t.backend === param.backend && shapesEqual(t.shape, param.shape),
  );
  if (!same || !hasFused("adamw", param)) return adamwComposition(param, grad, expAvg, expAvgSq, attrs);
  const out = [param.shape, param.dtype] as const;
  const [p, m, v] = noGrad(() => runFused("adamw", [param, grad, expAvg, expAvgSq], attrs, [out, out, out]));
  return [p, m, v];
}
