// fast-check arbitraries for shapes and tensors, for property tests in this repo and in users' projects.

import fc from "fast-check";
import type { DType } from "../dtype.js";
import { tensor } from "../ops/creation.js";
import { numel } from "../shape.js";
import type { Tensor } from "../tensor.js";

export interface ShapeOptions {
  minRank?: number;
  maxRank?: number;
  minDim?: number;
  maxDim?: number;
}

/** Shapes of rank minRank..maxRank (default 0..3) with dims minDim..maxDim (default 1..5). */
export function arbShape(options: ShapeOptions = {}): fc.Arbitrary<number[]> {
  const { minRank = 0, maxRank = 3, minDim = 1, maxDim = 5 } = options;
  return fc.array(fc.integer({ min: minDim, max: maxDim }), { minLength: minRank, maxLength: maxRank });
}

/** Two shapes that broadcast together: one is the other with leading dims dropped and some dims set to 1. */
export function arbBroadcastShapes(options: ShapeOptions = {}): fc.Arbitrary<[number[], number[]]> {
  return arbShape(options).chain((full) =>
    fc
      .tuple(
        fc.integer({ min: 0, max: full.length }),
        fc.array(fc.boolean(), { minLength: full.length, maxLength: full.length }),
        fc.boolean(),
      )
      .map(([drop, ones, swap]) => {
        const other = full.slice(drop).map((d, i) => (ones[i + drop] ? 1 : d));
        return (swap ? [other, full] : [full, other]) as [number[], number[]];
      }),
  );
}

export interface TensorOptions {
  min?: number;
  max?: number;
  dtype?: DType;
  /** Keep every value at least this far from 0 (for log, div, abs kinks). */
  avoidZero?: number;
}

/** Values in [min, max] (default [-2, 2]) as a tensor of the given shape (default float64). */
export function arbTensor(
  shape: readonly number[] | fc.Arbitrary<number[]>,
  options: TensorOptions = {},
): fc.Arbitrary<Tensor> {
  const { min = -2, max = 2, dtype = "float64", avoidZero = 0 } = options;
  const shapes = Array.isArray(shape) ? fc.constant([...shape]) : (shape as fc.Arbitrary<number[]>);
  return shapes.chain((s) =>
    fc
      .array(fc.double({ min, max, noNaN: true, noDefaultInfinity: true }), {
        minLength: numel(s),
        maxLength: numel(s),
      })
      .map((vals) => {
        const data = vals.map((v) => (Math.abs(v) < avoidZero ? (v < 0 ? -avoidZero : avoidZero) : v));
        return tensor(Float64Array.from(data), { shape: s, dtype });
      }),
  );
}

/** Two tensors whose shapes broadcast together. */
export function arbBroadcastPair(options: TensorOptions & ShapeOptions = {}): fc.Arbitrary<[Tensor, Tensor]> {
  return arbBroadcastShapes(options).chain(([a, b]) =>
    fc.tuple(arbTensor(a, options), arbTensor(b, options)),
  );
}
