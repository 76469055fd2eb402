// CPU storage: a typed array. Views over it are read with strided loops.

import type { Storage, View } from "../backend/backend.js";
import type { DType, TypedArray } from "../dtype.js";
import { isContiguous, numel } from "../shape.js";

export class CpuStorage implements Storage {
  readonly backend = "cpu";
  constructor(
    readonly dtype: DType,
    public data: TypedArray,
  ) {}
  get size(): number {
    return this.data.length;
  }
}

export function dataOf(v: View): TypedArray {
  return (v.storage as CpuStorage).data;
}

/** Element offsets of every position of a strided layout, in row-major order of `shape`. */
export function stridedOffsets(
  shape: readonly number[],
  strides: readonly number[],
  offset: number,
): Int32Array {
  const n = numel(shape);
  const out = new Int32Array(n);
  if (n === 0) return out;
  const R = shape.length;
  const idx = new Int32Array(R);
  let off = offset;
  for (let i = 0; i < n; i++) {
    out[i] = off;
    for (let d = R - 1; d >= 0; d--) {
      idx[d]!++;
      off += strides[d]!;
      if (idx[d]! < shape[d]!) break;
      off -= strides[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

/** The view's elements in row-major order: the storage itself when already laid out so, else a copy. */
export function rowMajor(v: View): TypedArray {
  const data = dataOf(v);
  const { shape, strides, offset } = v.layout;
  const n = numel(shape);
  if (isContiguous(shape, strides))
    return offset === 0 && data.length === n ? data : data.subarray(offset, offset + n);
  const out = new (data.constructor as new (n: number) => TypedArray)(n);
  const offs = stridedOffsets(shape, strides, offset);
  for (let i = 0; i < n; i++) out[i] = data[offs[i]!]!;
  return out;
}
