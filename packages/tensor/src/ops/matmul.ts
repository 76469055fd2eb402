// torch.matmul semantics on top of the batched primitive: 1-D operands gain and lose a dim, batch dims
// broadcast (as expand views, so their gradients are summed back by the engine).

import { promoteTypes } from "../dtype.js";
import { broadcastShapes, fmt } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { apply } from "./apply.js";
import { cast } from "./elementwise.js";
import { expand, reshape, squeeze, unsqueeze } from "./movement.js";

/**
 * Matrix product with PyTorch's rules: [..., M, K] x [..., K, N] -> [..., M, N].
 * @example const y = x.matmul(w.transpose(0, 1)); // x [B, T, in], w [out, in] -> [B, T, out]
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.ndim === 0 || b.ndim === 0)
    throw new RangeError(
      `matmul: both arguments need at least 1 dim, got ${fmt(a.shape)} and ${fmt(b.shape)}`,
    );
  const K = a.shape[a.ndim - 1]!;
  const K2 = b.ndim === 1 ? b.shape[0]! : b.shape[b.ndim - 2]!;
  if (K !== K2) {
    throw new RangeError(
      `matmul: shapes ${fmt(a.shape)} and ${fmt(b.shape)} cannot be multiplied (${K} vs ${K2}); expected [..., M, K] x [..., K, N]`,
    );
  }
  const dtype = promoteTypes(a.dtype, b.dtype);
  a = cast(a, dtype);
  b = cast(b, dtype);
  if (a.ndim === 1 && b.ndim === 1) return reshape(matmul(unsqueeze(a, 0), unsqueeze(b, 1)), []);
  if (a.ndim === 1) return squeeze(matmul(unsqueeze(a, 0), b), -2);
  if (b.ndim === 1) return squeeze(matmul(a, unsqueeze(b, 1)), -1);
  const batch = broadcastShapes(
    `matmul (batch dims of ${fmt(a.shape)} x ${fmt(b.shape)})`,
    a.shape.slice(0, -2),
    b.shape.slice(0, -2),
  );
  const a2 = expand(a, [...batch, ...a.shape.slice(-2)]);
  const b2 = expand(b, [...batch, ...b.shape.slice(-2)]);
  return apply("matmul", [a2, b2], {});
}
