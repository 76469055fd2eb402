// gather / scatterAdd / indexSelect / indexAdd with torch semantics, bounds-checked.

import type { View } from "../backend/backend.js";
import type { Kernel } from "../ops/signatures.js";
import { contiguousStrides, fmt } from "../shape.js";
import { dataOf, rowMajor, stridedOffsets } from "./storage.js";

// NOTE: negative indices are errors, as in PyTorch's gather/index_select/embedding: wrapping them would
// let a stray -100 label read a row from the end of the table.
function checked(op: string, i: number, size: number, dim: number): number {
  if (!(i >= 0 && i < size))
    throw new RangeError(`${op}: index ${i} is out of range for dim ${dim} of size ${size}`);
  return i;
}

/** For each position of `shape` (row-major): its offset in `into` with dim `dim` zeroed out. */
function offsetsWithout(
  shape: readonly number[],
  into: View | { layout: { strides: readonly number[]; offset: number } },
  dim: number,
): Int32Array {
  const strides = into.layout.strides.map((s, i) => (i === dim ? 0 : s));
  return stridedOffsets(shape, strides, into.layout.offset);
}

export const gather: Kernel<"gather"> = ([x, index], { dim }, out) => {
  const src = dataOf(x);
  const idx = rowMajor(index);
  const dst = dataOf(out);
  const base = offsetsWithout(index.layout.shape, x, dim);
  const size = x.layout.shape[dim]!;
  const step = x.layout.strides[dim]!;
  const o0 = out.layout.offset;
  for (let i = 0; i < idx.length; i++)
    dst[o0 + i] = src[base[i]! + checked("gather", idx[i]!, size, dim) * step]!;
};

export const scatterAdd: Kernel<"scatterAdd"> = ([index, src], { dim, shape }, out) => {
  const idx = rowMajor(index);
  const s = rowMajor(src);
  const dst = dataOf(out);
  const outLayout = { strides: contiguousStrides(shape), offset: out.layout.offset };
  const base = offsetsWithout(index.layout.shape, { layout: outLayout }, dim);
  const step = outLayout.strides[dim]!;
  for (let i = 0; i < idx.length; i++)
    dst[base[i]! + checked("scatterAdd", idx[i]!, shape[dim]!, dim) * step] += s[i]!;
};

function slabs(shape: readonly number[], dim: number): { pre: number; post: number } {
  let pre = 1;
  let post = 1;
  shape.forEach((n, i) => {
    if (i < dim) pre *= n;
    if (i > dim) post *= n;
  });
  return { pre, post };
}

export const indexSelect: Kernel<"indexSelect"> = ([x, index], { dim }, out) => {
  const src = rowMajor(x);
  const idx = rowMajor(index);
  const dst = dataOf(out);
  const size = x.layout.shape[dim]!;
  const { pre, post } = slabs(x.layout.shape, dim);
  const L = idx.length;
  const rows = Int32Array.from(idx, (i) => checked("indexSelect", i, size, dim));
  let o = out.layout.offset;
  for (let p = 0; p < pre; p++) {
    for (let j = 0; j < L; j++) {
      const from = (p * size + rows[j]!) * post;
      // NOTE: whole rows (an embedding lookup) as one set each: the element loop ran at ~3 ns per element
      if (post >= 16 && src.constructor === dst.constructor) {
        (dst as Float32Array).set((src as Float32Array).subarray(from, from + post), o);
        o += post;
      } else for (let q = 0; q < post; q++) dst[o++] = src[from + q]!;
    }
  }
};

export const indexAdd: Kernel<"indexAdd"> = ([index, src], { dim, size }, out) => {
  const s = rowMajor(src);
  const idx = rowMajor(index);
  const dst = dataOf(out);
  const { pre, post } = slabs(src.layout.shape, dim);
  const L = idx.length;
  if (L !== src.layout.shape[dim])
    throw new RangeError(`indexAdd: index length ${L} vs src ${fmt(src.layout.shape)} dim ${dim}`);
  const rows = Int32Array.from(idx, (i) => checked("indexAdd", i, size, dim));
  let from = 0;
  for (let p = 0; p < pre; p++) {
    for (let j = 0; j < L; j++) {
      const to = out.layout.offset + (p * size + rows[j]!) * post;
      for (let q = 0; q < post; q++) dst[to + q] += s[from++]!;
    }
  }
};

export const indexingKernels = { gather, scatterAdd, indexSelect, indexAdd };
