// Indexing with torch semantics: gather/scatterAdd along a dim, indexSelect/indexAdd of whole slices,
// and embedding lookups, whose gradient is the scatter-add of the output gradient into the table.

import { fmt, normalizeDim } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { apply } from "./apply.js";
import { contiguous, reshape } from "./movement.js";

function checkIndex(op: string, index: Tensor): Tensor {
  if (index.dtype !== "int32")
    throw new TypeError(`${op}: index must be an int32 tensor, got ${index.dtype}`);
  return contiguous(index);
}

/** out[i][j] = x[index[i][j]][j] for dim 0 (torch.gather). */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  return apply("gather", [x, checkIndex("gather", index)], { dim: normalizeDim("gather", dim, x.ndim) });
}

/** A zero tensor of `shape` with src added at index along dim (torch.zeros(shape).scatter_add_(dim, index, src)). */
export function scatterAdd(index: Tensor, src: Tensor, dim: number, shape: readonly number[]): Tensor {
  return apply("scatterAdd", [checkIndex("scatterAdd", index), src], {
    dim: normalizeDim("scatterAdd", dim, shape.length),
    shape: [...shape],
  });
}

/** The slices of x at the given positions along dim (torch.index_select); index is 1-D. */
export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor {
  return apply("indexSelect", [x, checkIndex("indexSelect", index)], {
    dim: normalizeDim("indexSelect", dim, x.ndim),
  });
}

/** A zero tensor, size `size` along dim, with src's slices added at index (torch.index_add_ on zeros). */
export function indexAdd(index: Tensor, src: Tensor, dim: number, size: number): Tensor {
  return apply("indexAdd", [checkIndex("indexAdd", index), src], {
    dim: normalizeDim("indexAdd", dim, src.ndim),
    size,
  });
}

/** Rows of `weight` [V, D] for each id: ids [...] -> [..., D]. Its gradient scatter-adds into the table. */
export function embedding(ids: Tensor, weight: Tensor): Tensor {
  if (weight.ndim !== 2)
    throw new RangeError(`embedding: weight must be [num_embeddings, dim], got ${fmt(weight.shape)}`);
  const rows = indexSelect(weight, 0, reshape(ids, [-1]));
  return reshape(rows, [...ids.shape, weight.shape[1]!]);
}
