// Gradient clipping by the global L2 norm, as torch.nn.utils.clip_grad_norm_ (which the Trainer calls
// with max_grad_norm): every gradient is scaled by min(1, max_norm / (total_norm + 1e-6)).

import { keep, noGrad, scalar, type Tensor, tidy } from "@tsgrad/tensor";

/**
 * Scales the gradients of `params` in place so their global L2 norm is at most `maxNorm`, and returns the
 * norm before clipping as a 0-d float32 tensor (read it with `await norm.item()`). Parameters without a
 * gradient are ignored. The scale is applied on the device, so no value is read back here.
 * @example const norm = clipGradNorm(model.parameters(), 1.0);
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): Tensor {
  if (!(maxNorm > 0)) throw new RangeError(`clipGradNorm: maxNorm must be > 0, got ${maxNorm}`);
  const withGrad = [...params].filter((p) => p.grad !== null);
  if (withGrad.length === 0) return scalar(0, "float32");
  return tidy(() =>
    noGrad(() => {
      let sq: Tensor | null = null;
      for (const p of withGrad) {
        const s = p.grad!.to("float32").square().sum();
        sq = sq ? sq.add(s) : s;
      }
      const norm = sq!.sqrt();
      const coef = norm.add(1e-6).reciprocal().mul(maxNorm).clamp(null, 1); // NOTE: 1 when under the limit
      for (const p of withGrad) {
        const g = p.grad!;
        p.grad = keep(g.mul(coef.to(g.dtype)));
        g.dispose();
      }
      return norm;
    }),
  );
}
