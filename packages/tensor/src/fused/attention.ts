// The attention scores' softmax: softmax(x * scale + mask) over the last dim as one fused kernel, forward
// and backward, with its composition as the reference and the path for masks that need a gradient,
// other dtypes and backends without the kernel.

import { isGradEnabled, noGrad } from "../autograd/grad-mode.js";
import { attachNode } from "../ops/apply.js";
import { numel } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { hasFused, runFused } from "./dispatch.js";

/** softmax(x * scale + mask) over the last dim, as primitives (mask null: no mask). */
export function maskedSoftmaxComposition(x: Tensor, mask: Tensor | null, scale: number): Tensor {
  const z = x.mul(scale);
  return (mask ? z.add(mask) : z).softmax(-1);
}

/**
 * How x [..., C] and a mask broadcast against it meet the kernel's contract: x as [A, G, Q, C] and the
 * mask as [A, 1, Q, C] (its trailing dims equal x's, then dims it broadcasts over, then x's leading dims
 * or none). Null when the mask has another pattern (the caller expands it to x's shape).
 */
function blocks(xs: readonly number[], ms: readonly number[]): [number, number, number] | null {
  const n = xs.length;
  const m = [...new Array<number>(n - ms.length).fill(1), ...ms];
  let [A, G, Q] = [1, 1, 1];
  let i = n - 2;
  for (; i >= 0 && m[i] === xs[i]; i--) Q *= xs[i]!;
  for (; i >= 0 && m[i] === 1; i--) G *= xs[i]!;
  for (; i >= 0; i--) {
    if (m[i] !== xs[i]) return null;
    A *= xs[i]!;
  }
  return [A, G, Q];
}

/**
 * softmax(x * scale + mask) over the last dim: attention probabilities from raw scores x [..., Tq, Tk] and
 * an additive mask broadcast against them (e.g. [B, 1, Tq, Tk] for scores [B, H, Tq, Tk]; 0 where a key is
 * visible, a large negative value or -inf where not). The mask gets no gradient on the fused path; one
 * that requires grad takes the composition.
 * @example const probs = maskedSoftmax(q.matmul(k.mT), mask, headDim ** -0.5);
 */
export function maskedSoftmax(x: Tensor, mask: Tensor | null, scale: number): Tensor {
  const C = x.shape[x.ndim - 1];
  if (
    !mask ||
    x.ndim === 0 ||
    !hasFused("maskedSoftmax", x) ||
    mask.dtype !== x.dtype ||
    mask.backend !== x.backend ||
    mask.requiresGrad ||
    mask.ndim > x.ndim ||
    mask.shape[mask.ndim - 1] !== C ||
    mask.shape.some((d, i) => d !== 1 && d !== x.shape[x.ndim - mask.ndim + i]) ||
    numel(x.shape) === 0
  )
    return maskedSoftmaxComposition(x, mask, scale);
  let plan = blocks(x.shape, mask.shape);
  let m = mask;
  if (!plan) {
    m = noGrad(() => mask.expand(x.shape).contiguous());
    plan = [1, 1, numel(x.shape) / C!];
  }
  const [A, G, Q] = plan;
  const [xc, mc] = noGrad(() => [x.reshape([A, G, Q, C!]), m.reshape([A, 1, Q, C!])]);
  const [y] = runFused("maskedSoftmax", [xc, mc], { scale }, [[x.shape, x.dtype]]);
  if (xc !== x) xc.dispose();
  if (mc !== mask) mc.dispose();
  if (m !== mask) m.dispose();
  return attachNode(y, "maskedSoftmax", [x], (dy) => {
    if (isGradEnabled()) {
      // createGraph: the same gradient from primitives, recomputing y from x so it is differentiable again
      const z = x.mul(scale).add(mask);
      const e = z.sub(z.max(-1, true).detach()).exp();
      const yr = e.div(e.sum(-1, true));
      return [yr.mul(dy.sub(dy.mul(yr).sum(-1, true))).mul(scale)];
    }
    return [runFused("maskedSoftmaxBackward", [dy, y], { scale }, [[x.shape, x.dtype]])[0]];
  });
}
