// The conformance suite's cases: every op over every dtype it accepts, odd sizes (1, 3, 17, 65, 257, and
// empty), and non-contiguous views (transposed, sliced with an offset, broadcast with stride 0), with the
// input values (special floats included) drawn from a seeded generator. conformance.ts runs them.

import { cpuKernels } from "../backend-cpu/index.js";
import { DTYPES, type DType, isFloat, type TypedArray, typedArrayFor } from "../dtype.js";
import type { OpName } from "../ops/signatures.js";
import { contiguousStrides, numel } from "../shape.js";

/** How a logical shape is laid out in its storage. */
export type LayoutKind = "contiguous" | "transposed" | "sliced" | "broadcast";

export interface InputSpec {
  shape: number[];
  dtype: DType;
  kind: LayoutKind;
  /** Integer values in [lo, hi) (index inputs, integer matmul operands); else the dtype's default mix. */
  range?: [number, number];
  /** Floats without the special values (NaN, infinities), for matmul. */
  finite?: boolean;
}

export interface Case {
  op: OpName;
  inputs: InputSpec[];
  attrs: unknown;
}

/** Every op the suite covers, in a fixed order; a total record so a new op without cases fails to compile. */
export const OP_GROUPS: { [K in OpName]: (rng: Rng) => Case[] } = {
  neg: () => unaryCases("neg"),
  exp: () => unaryCases("exp"),
  log: () => unaryCases("log"),
  sqrt: () => unaryCases("sqrt"),
  rsqrt: () => unaryCases("rsqrt"),
  recip: () => unaryCases("recip"),
  sin: () => unaryCases("sin"),
  cos: () => unaryCases("cos"),
  tanh: () => unaryCases("tanh"),
  sigmoid: () => unaryCases("sigmoid"),
  erf: () => unaryCases("erf"),
  abs: () => unaryCases("abs"),
  sign: () => unaryCases("sign"),
  logicalNot: () => unaryCases("logicalNot"),
  contiguous: () => unaryCases("contiguous"),
  add: () => binaryCases("add"),
  sub: () => binaryCases("sub"),
  mul: () => binaryCases("mul"),
  div: () => binaryCases("div"),
  pow: () => binaryCases("pow"),
  maximum: () => binaryCases("maximum"),
  minimum: () => binaryCases("minimum"),
  eq: () => binaryCases("eq"),
  ne: () => binaryCases("ne"),
  lt: () => binaryCases("lt"),
  le: () => binaryCases("le"),
  gt: () => binaryCases("gt"),
  ge: () => binaryCases("ge"),
  logicalAnd: () => binaryCases("logicalAnd"),
  logicalOr: () => binaryCases("logicalOr"),
  cast: () => castCases(),
  where: () => whereCases(),
  sum: () => reduceCases("sum"),
  max: () => reduceCases("max"),
  min: () => reduceCases("min"),
  argmax: () => argCases("argmax"),
  argmin: () => argCases("argmin"),
  matmul: () => matmulCases(),
  gather: (rng) => gatherCases(rng),
  scatterAdd: (rng) => scatterCases(rng),
  indexSelect: () => indexSelectCases(),
  indexAdd: () => indexAddCases(),
};

export const CONFORMANCE_OPS: readonly OpName[] = Object.keys(cpuKernels) as OpName[];

// ---- shapes and layouts ----

const SHAPES: number[][] = [[], [1], [257], [0, 3], [17, 65], [65, 3], [3, 1, 17], [2, 3, 5, 7]];
const KINDS: LayoutKind[] = ["contiguous", "transposed", "sliced", "broadcast"];

function kindsFor(shape: readonly number[]): LayoutKind[] {
  return KINDS.filter((k) =>
    k === "transposed" ? shape.length >= 2 : k === "contiguous" || shape.length >= 1,
  );
}

/** The storage shape and the view layout for `spec`. */
export function layoutOf(spec: InputSpec): { storageSize: number; strides: number[]; offset: number } {
  const { shape, kind } = spec;
  const r = shape.length;
  switch (kind) {
    case "contiguous":
      return { storageSize: numel(shape), strides: contiguousStrides(shape), offset: 0 };
    case "transposed": {
      // stored with its last two dims swapped
      const stored = [...shape.slice(0, -2), shape[r - 1]!, shape[r - 2]!];
      const s = contiguousStrides(stored);
      return { storageSize: numel(stored), strides: [...s.slice(0, -2), s[r - 1]!, s[r - 2]!], offset: 0 };
    }
    case "sliced": {
      // a window of a storage two wider in the last dim, starting one element in
      const stored = [...shape.slice(0, -1), shape[r - 1]! + 2];
      return { storageSize: numel(stored) + 1, strides: contiguousStrides(stored), offset: 1 };
    }
    case "broadcast": {
      // the first dim is expanded from size 1 (stride 0)
      const stored = [1, ...shape.slice(1)];
      const s = contiguousStrides(stored);
      return { storageSize: numel(stored), strides: [0, ...s.slice(1)], offset: 0 };
    }
  }
}

// ---- values ----

export class Rng {
  constructor(private s: number) {}
  next(): number {
    // mulberry32
    this.s = (this.s + 0x6d2b79f5) | 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo));
  }
}

const FLOAT_SPECIALS = [
  0,
  -0,
  1,
  -1,
  0.5,
  2,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  1e-30,
];

export function fill(spec: InputSpec, size: number, rng: Rng): TypedArray {
  const out = typedArrayFor(spec.dtype, size);
  for (let i = 0; i < size; i++) {
    if (spec.range) out[i] = rng.int(spec.range[0], spec.range[1]);
    else if (spec.dtype === "bool") out[i] = rng.next() < 0.5 ? 1 : 0;
    else if (spec.dtype === "uint8") out[i] = rng.int(0, 256);
    else if (spec.dtype === "int32") out[i] = rng.next() < 0.1 ? rng.int(-3, 4) : rng.int(-1000, 1000);
    else if (spec.finite) out[i] = (rng.next() - 0.5) * 8;
    else
      out[i] = rng.next() < 0.1 ? FLOAT_SPECIALS[rng.int(0, FLOAT_SPECIALS.length)]! : (rng.next() - 0.5) * 8;
  }
  return out;
}

// ---- cases ----

function unaryCases(op: OpName): Case[] {
  const cases: Case[] = [];
  for (const dtype of DTYPES)
    for (const shape of SHAPES)
      for (const kind of kindsFor(shape)) cases.push({ op, inputs: [{ shape, dtype, kind }], attrs: {} });
  return cases;
}

function castCases(): Case[] {
  const cases: Case[] = [];
  for (const from of DTYPES)
    for (const to of DTYPES)
      for (const shape of [[257], [17, 65], [3, 1, 17]])
        for (const kind of kindsFor(shape))
          cases.push({ op: "cast", inputs: [{ shape, dtype: from, kind }], attrs: { dtype: to } });
  return cases;
}

const PAIRS: [LayoutKind, LayoutKind][] = [
  ["contiguous", "contiguous"],
  ["transposed", "contiguous"],
  ["contiguous", "sliced"],
  ["broadcast", "transposed"],
  ["sliced", "broadcast"],
];

function binaryCases(op: OpName): Case[] {
  const cases: Case[] = [];
  for (const dtype of DTYPES)
    for (const shape of SHAPES)
      for (const [ka, kb] of PAIRS) {
        if (!kindsFor(shape).includes(ka) || !kindsFor(shape).includes(kb)) continue;
        cases.push({
          op,
          inputs: [
            { shape, dtype, kind: ka },
            { shape, dtype, kind: kb },
          ],
          attrs: {},
        });
      }
  return cases;
}

function whereCases(): Case[] {
  const cases: Case[] = [];
  for (const dtype of DTYPES)
    for (const shape of SHAPES)
      for (const [ka, kb] of PAIRS) {
        if (!kindsFor(shape).includes(ka) || !kindsFor(shape).includes(kb)) continue;
        cases.push({
          op: "where",
          inputs: [
            { shape, dtype: "bool", kind: kb },
            { shape, dtype, kind: ka },
            { shape, dtype, kind: kb },
          ],
          attrs: {},
        });
      }
  return cases;
}

function dimSets(rank: number): number[][] {
  if (rank === 0) return [[]];
  const sets = [[], [0], [rank - 1], Array.from({ length: rank }, (_, i) => i)];
  if (rank >= 3) sets.push([0, rank - 1], [1]);
  return sets;
}

function reduceCases(op: "sum" | "max" | "min"): Case[] {
  const cases: Case[] = [];
  for (const dtype of DTYPES)
    for (const shape of SHAPES)
      for (const kind of kindsFor(shape))
        for (const dims of dimSets(shape.length))
          cases.push({ op, inputs: [{ shape, dtype, kind }], attrs: { dims } });
  return cases;
}

function argCases(op: "argmax" | "argmin"): Case[] {
  const cases: Case[] = [];
  for (const dtype of DTYPES)
    for (const shape of SHAPES)
      for (const kind of kindsFor(shape))
        for (let dim = 0; dim < shape.length; dim++)
          cases.push({ op, inputs: [{ shape, dtype, kind }], attrs: { dim } });
  return cases;
}

const MATMUL_KINDS: LayoutKind[] = ["contiguous", "transposed", "sliced", "broadcast"];

function matmulCases(): Case[] {
  const cases: Case[] = [];
  const mm = (dtype: DType, batch: number[], [M, K, N]: number[], ka: LayoutKind, kb: LayoutKind): Case => {
    const values = isFloat(dtype) ? { finite: true } : { range: [-4, 5] as [number, number] };
    return {
      op: "matmul",
      inputs: [
        { shape: [...batch, M!, K!], dtype, kind: ka, ...values },
        { shape: [...batch, K!, N!], dtype, kind: kb, ...values },
      ],
      attrs: {},
    };
  };
  const sizes = [1, 3, 17, 65];
  // every M, K, N from the odd sizes, plain layouts
  for (const M of sizes)
    for (const K of sizes)
      for (const N of sizes) cases.push(mm("float32", [], [M, K, N], "contiguous", "contiguous"));
  // all four transpose combinations and the other strided forms, including across the K and M blocks
  const odd = [
    [17, 65, 3],
    [65, 3, 17],
    [3, 257, 65],
    [257, 17, 5],
    [1, 300, 257],
  ];
  for (const mkn of odd)
    for (const ka of MATMUL_KINDS) for (const kb of MATMUL_KINDS) cases.push(mm("float32", [], mkn, ka, kb));
  // batched, with batch strides from every layout kind (broadcast = one operand shared across the batch)
  for (const batch of [[2], [3, 2]])
    for (const [ka, kb] of PAIRS)
      cases.push(mm("float32", batch, [17, 65, 3], ka, kb), mm("float32", batch, [5, 3, 65], kb, ka));
  cases.push(mm("float32", [], [257, 257, 257], "contiguous", "transposed"));
  cases.push(mm("float32", [], [3, 5, 2100], "contiguous", "contiguous"));
  cases.push(
    mm("float32", [], [130, 0, 9], "contiguous", "contiguous"),
    mm("float32", [0], [3, 4, 5], "contiguous", "contiguous"),
  );
  for (const dtype of ["float64", "int32", "uint8"] as DType[])
    for (const [ka, kb] of PAIRS)
      cases.push(mm(dtype, [2], [17, 65, 3], ka, kb), mm(dtype, [], [3, 17, 65], kb, ka));
  return cases;
}

function gatherCases(rng: Rng): Case[] {
  const cases: Case[] = [];
  for (const dtype of DTYPES)
    for (const shape of [[257], [17, 65], [3, 5, 17]])
      for (const kind of kindsFor(shape))
        for (let dim = 0; dim < shape.length; dim++) {
          const ishape = shape.map((n, d) => (d === dim ? rng.int(1, 20) : Math.max(1, n - (d % 2))));
          cases.push({
            op: "gather",
            inputs: [
              { shape, dtype, kind },
              { shape: ishape, dtype: "int32", kind: "contiguous", range: [-shape[dim]!, shape[dim]!] },
            ],
            attrs: { dim },
          });
        }
  return cases;
}

function scatterCases(rng: Rng): Case[] {
  const cases: Case[] = [];
  for (const dtype of DTYPES)
    for (const shape of [[257], [17, 65], [3, 5, 17]])
      for (const kind of kindsFor(shape))
        for (let dim = 0; dim < shape.length; dim++) {
          const into = shape.map((n, d) => (d === dim ? rng.int(1, 9) : n + (d % 2)));
          cases.push({
            op: "scatterAdd",
            inputs: [
              { shape, dtype: "int32", kind: "contiguous", range: [-into[dim]!, into[dim]!] },
              { shape, dtype, kind },
            ],
            attrs: { dim, shape: into },
          });
        }
  return cases;
}

function indexSelectCases(): Case[] {
  const cases: Case[] = [];
  for (const dtype of DTYPES)
    for (const shape of [[257], [17, 65], [3, 5, 17]])
      for (const kind of kindsFor(shape))
        for (let dim = 0; dim < shape.length; dim++)
          cases.push({
            op: "indexSelect",
            inputs: [
              { shape, dtype, kind },
              { shape: [17], dtype: "int32", kind: "sliced", range: [-shape[dim]!, shape[dim]!] },
            ],
            attrs: { dim },
          });
  return cases;
}

function indexAddCases(): Case[] {
  const cases: Case[] = [];
  for (const dtype of DTYPES)
    for (const shape of [[257], [17, 65], [3, 5, 17]])
      for (const kind of kindsFor(shape))
        for (let dim = 0; dim < shape.length; dim++)
          cases.push({
            op: "indexAdd",
            inputs: [
              { shape: [shape[dim]!], dtype: "int32", kind: "contiguous", range: [-3, 3] },
              { shape, dtype, kind },
            ],
            attrs: { dim, size: 3 },
          });
  return cases;
}
