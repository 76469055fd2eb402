// Nested JavaScript arrays and flat row-major data: the shape of a nested array, its values in order
// (what tensor() takes), and the nested array of a flat buffer (what tolist() gives).

import type { DType, TypedArray } from "./dtype.js";
import { numel } from "./shape.js";

export type NestedArray = number | boolean | NestedArray[];

/** The shape of a nested array, read along its first elements (flatten checks the rest). */
export function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let cur: NestedArray = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0] as NestedArray;
  }
  return shape;
}

/** Appends the values of `data` (of `shape`) to `out` in row-major order; ragged arrays are an error. */
export function flatten(data: NestedArray, shape: number[], out: (number | boolean)[], dim = 0): void {
  if (dim === shape.length) {
    if (Array.isArray(data) || (typeof data !== "number" && typeof data !== "boolean")) {
      throw new TypeError(
        `tensor: expected a number or boolean at depth ${dim}, got ${JSON.stringify(data)}`,
      );
    }
    out.push(data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[dim]) {
    throw new RangeError(
      `tensor: ragged nested array at dim ${dim}: expected length ${shape[dim]}, got ${Array.isArray(data) ? data.length : typeof data}`,
    );
  }
  for (const d of data) flatten(d, shape, out, dim + 1);
}

/** The nested array of row-major `data` of `shape`; bools come back as booleans. */
export function nest(data: TypedArray, shape: readonly number[], dtype: DType): NestedArray {
  const conv = (v: number): number | boolean => (dtype === "bool" ? v !== 0 : v);
  if (shape.length === 0) return conv(data[0]!);
  const build = (dim: number, offset: number): NestedArray[] => {
    const n = shape[dim]!;
    const inner = numel(shape.slice(dim + 1));
    const out: NestedArray[] = [];
    for (let i = 0; i < n; i++) {
      out.push(dim === shape.length - 1 ? conv(data[offset + i]!) : build(dim + 1, offset + i * inner));
    }
    return out;
  };
  return build(0, 0);
}
