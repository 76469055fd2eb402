// Closeness checks that say where and by how much two tensors differ.

import type { TypedArray } from "../dtype.js";
import { fmt, shapesEqual } from "../shape.js";
import { Tensor } from "../tensor.js";

export interface CloseOptions {
  atol?: number;
  rtol?: number;
}

type Values = Tensor | TypedArray | readonly number[];

function flat(v: Values): { data: ArrayLike<number>; shape: readonly number[] | null } {
  if (v instanceof Tensor) return { data: v.dataSync(), shape: v.shape };
  return { data: v, shape: null };
}

/** The first element where |a - b| > atol + rtol |b| (NaN matches NaN), or null when all are close. */
export function firstMismatch(actual: Values, expected: Values, options: CloseOptions = {}): string | null {
  const { atol = 1e-5, rtol = 1e-4 } = options;
  const a = flat(actual);
  const b = flat(expected);
  if (a.shape && b.shape && !shapesEqual(a.shape, b.shape))
    return `shapes differ: ${fmt(a.shape)} vs ${fmt(b.shape)}`;
  if (a.data.length !== b.data.length) return `lengths differ: ${a.data.length} vs ${b.data.length}`;
  let maxDiff = 0;
  let first = -1;
  for (let i = 0; i < a.data.length; i++) {
    const x = a.data[i]!;
    const y = b.data[i]!;
    if (Number.isNaN(x) && Number.isNaN(y)) continue;
    if (x === y) continue;
    const diff = Math.abs(x - y);
    if (!(diff <= atol + rtol * Math.abs(y))) {
      if (first < 0) first = i;
      maxDiff = Number.isNaN(diff) ? Number.NaN : Math.max(maxDiff, diff);
    }
  }
  if (first < 0) return null;
  return `element ${first}: actual ${a.data[first]} vs expected ${b.data[first]}; max abs diff ${maxDiff} (atol ${atol}, rtol ${rtol})`;
}

/** Throws with the first mismatching element, both values and the max difference. */
export function expectAllClose(actual: Values, expected: Values, options?: CloseOptions): void {
  const msg = firstMismatch(actual, expected, options);
  if (msg !== null) throw new Error(`expectAllClose: ${msg}`);
}
