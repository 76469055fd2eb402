// The one place broadcast gradients are reduced: sum over leading dims the input did not have and over
// dims where the input had size 1 (tinygrad's "a shaped edge's gradient is summed to its source's shape").

import { reshape, sum } from "../ops/index.js";
import { fmt, shapesEqual } from "../shape.js";
import type { Tensor } from "../tensor.js";

export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (shapesEqual(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  if (lead < 0)
    throw new RangeError(`sumToShape: gradient ${fmt(g.shape)} has fewer dims than its input ${fmt(shape)}`);
  const dims: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  return reshape(dims.length > 0 ? sum(g, dims, true) : g, [...shape]);
}
