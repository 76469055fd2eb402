// Every differentiable op, and every composition the public API builds from them, against central finite
// differences through the public gradcheck (style guide 6.3). The primitive cases are a record keyed by
// every differentiable primitive and view op, so a new op without a case fails tsc. Inputs are kept away
// from kinks: relu/abs at 0 (avoidZero), max/min ties (distinct values or offset grids), clamp bounds
// (an offset grid) and log/sqrt of <= 0 (positive domains).

import {
  broadcastShapes,
  cat,
  chunk,
  clamp,
  crossEntropy,
  defineOp,
  dropout,
  embedding,
  gelu,
  indexAdd,
  logSoftmax,
  manualSeed,
  maskedFill,
  NON_DIFFERENTIABLE,
  numel,
  type OpName,
  relu,
  scatterAdd,
  silu,
  softmax,
  split,
  stack,
  type Tensor,
  tensor,
  type ViewOpName,
  variance,
  viewVjpRules,
  vjpRules,
  where,
  withGradMode,
} from "@tsgrad/tensor";
import {
  arbBroadcastShapes,
  arbShape,
  arbTensor,
  assertGradients,
  expectAllClose,
  type GradcheckOptions,
  type ShapeOptions,
  type TensorOptions,
  TOLERANCES,
} from "@tsgrad/tensor/testing";
import fc from "fast-check";
import { beforeEach, describe, expect, it } from "vitest";

const RUNS = 30;

/** Primitives with no gradient rule; listing them here is a decision, checked against vjpRules below. */
const NON_DIFF = [
  "sign",
  "logicalNot",
  "eq",
  "ne",
  "lt",
  "le",
  "gt",
  "ge",
  "logicalAnd",
  "logicalOr",
  "argmax",
  "argmin",
] as const satisfies readonly OpName[];
type NonDiff = (typeof NON_DIFF)[number];
type DifferentiableOp = Exclude<OpName, NonDiff> | ViewOpName;

/** One generated check: inputs, the function of them to differentiate, and what it is (for the report). */
interface Check {
  what: string;
  inputs: Tensor[];
  fn: (...xs: Tensor[]) => Tensor;
  options?: GradcheckOptions;
}
interface GradCase {
  label: string;
  arb: fc.Arbitrary<Check>;
}

// ---- arbitraries ----

const f64 = (shape: readonly number[] | fc.Arbitrary<number[]>, o: TensorOptions = {}) => arbTensor(shape, o);
const shapes = (o: ShapeOptions) => arbShape({ maxDim: 4, ...o });

/** The same values mapped through f, as a new float64 tensor. */
function mapValues(t: Tensor, f: (v: number) => number): Tensor {
  return tensor(Float64Array.from(t.dataSync(), f), { shape: t.shape, dtype: "float64" });
}
/** Values on the grid k/2 (offset 0) or k/2 + 1/4 (offset 0.25): two such tensors never tie. */
const onGrid = (offset: number) => (t: Tensor) => mapValues(t, (v) => Math.round(v * 2) / 2 + offset);

/** Pairwise distinct values (at least 0.15 apart), so max/min reductions have no ties. */
function arbDistinct(shape: readonly number[]): fc.Arbitrary<Tensor> {
  const n = numel(shape);
  const ids = Array.from({ length: n }, (_, i) => i);
  return fc
    .tuple(
      fc.shuffledSubarray(ids, { minLength: n, maxLength: n }),
      fc.array(fc.double({ min: 0, max: 0.1, noNaN: true }), { minLength: n, maxLength: n }),
    )
    .map(([perm, noise]) =>
      tensor(
        Float64Array.from(perm, (p, i) => p * 0.25 - n * 0.125 + noise[i]!),
        { shape, dtype: "float64" },
      ),
    );
}

/** Two tensors with broadcastable shapes and their own value options. */
function arbPair(a: TensorOptions = {}, b: TensorOptions = {}, s: ShapeOptions = {}) {
  return arbBroadcastShapes({ maxDim: 4, ...s }).chain(([sa, sb]) => fc.tuple(f64(sa, a), f64(sb, b)));
}

/** A shape of rank >= minRank, a tensor of it, a dim in [-rank, rank) and keepdim. */
function arbWithDim(o: ShapeOptions & TensorOptions & { distinct?: boolean } = {}) {
  return shapes({ minRank: 1, ...o }).chain((s) =>
    fc.record({
      x: o.distinct ? arbDistinct(s) : f64(s, o),
      dim: fc.integer({ min: -s.length, max: s.length - 1 }),
      keepdim: fc.boolean(),
    }),
  );
}

const int32 = (values: readonly number[], shape: readonly number[]) =>
  tensor(Int32Array.from(values), { shape, dtype: "int32" });
const bools = (values: readonly boolean[], shape: readonly number[]) =>
  tensor(Uint8Array.from(values, Number), { shape, dtype: "bool" });
const arbInts = (n: number, max: number) =>
  fc.array(fc.integer({ min: 0, max: max - 1 }), { minLength: n, maxLength: n });
const arbBools = (n: number) => fc.array(fc.boolean(), { minLength: n, maxLength: n });

/** A unary case on shapes of rank 0..3 with the given values. */
function unary(fn: (x: Tensor) => Tensor, o: TensorOptions = {}, label = "rank 0-3"): GradCase {
  return { label, arb: f64(shapes({}), o).map((x) => ({ what: label, inputs: [x], fn })) };
}

function binary(
  fn: (a: Tensor, b: Tensor) => Tensor,
  a: TensorOptions = {},
  b: TensorOptions = {},
): GradCase {
  return {
    label: "broadcast pair",
    arb: arbPair(a, b).map(([x, y]) => ({ what: `${x} with ${y}`, inputs: [x, y], fn })),
  };
}

/** Reductions over one dim, a list of dims, and all dims. */
function reduction(
  name: string,
  f: (x: Tensor, dim: number | number[] | undefined, keepdim: boolean) => Tensor,
  o: ShapeOptions & TensorOptions & { distinct?: boolean } = {},
): GradCase[] {
  return [
    {
      label: "one dim, keepdim or not",
      arb: arbWithDim(o).map(({ x, dim, keepdim }) => ({
        what: `${name}(${x}, dim ${dim}, keepdim ${keepdim})`,
        inputs: [x],
        fn: (t) => f(t, dim, keepdim),
      })),
    },
    {
      label: "first and last dims",
      arb: shapes({ ...o, minRank: 2 })
        .chain((s) => fc.tuple(o.distinct ? arbDistinct(s) : f64(s, o), fc.boolean()))
        .map(([x, keepdim]) => ({ what: `${x}`, inputs: [x], fn: (t) => f(t, [0, -1], keepdim) })),
    },
    {
      label: "all dims",
      arb: shapes({ minRank: o.minRank ?? 0, ...o })
        .chain((s) => (o.distinct ? arbDistinct(s) : f64(s, o)))
        .map((x) => ({ what: `${x}`, inputs: [x], fn: (t) => f(t, undefined, false) })),
    },
  ];
}

// ---- cases for every differentiable primitive and view op ----

const primitiveCases: Record<DifferentiableOp, GradCase[]> = {
  neg: [unary((x) => x.neg())],
  exp: [unary((x) => x.exp())],
  log: [unary((x) => x.log(), { min: 0.2, max: 3 }, "positive")],
  sqrt: [unary((x) => x.sqrt(), { min: 0.2, max: 3 }, "positive")],
  rsqrt: [unary((x) => x.rsqrt(), { min: 0.2, max: 3 }, "positive")],
  recip: [unary((x) => x.reciprocal(), { avoidZero: 0.3 }, "away from 0")],
  sin: [unary((x) => x.sin(), { min: -4, max: 4 })],
  cos: [unary((x) => x.cos(), { min: -4, max: 4 })],
  tanh: [unary((x) => x.tanh(), { min: -3, max: 3 })],
  sigmoid: [unary((x) => x.sigmoid(), { min: -6, max: 6 })],
  erf: [unary((x) => x.erf(), { min: -3, max: 3 })],
  abs: [unary((x) => x.abs(), { avoidZero: 0.05 }, "away from the kink at 0")],
  cast: [
    // NOTE: a float32 round trip quantises to ~6e-8 relative, so central differences need eps 1e-2 and
    // loose tolerances here (style guide 6.2); cast is linear, so the larger step adds no truncation error.
    {
      label: "float64 -> float32 -> float64",
      arb: f64(shapes({})).map((x) => ({
        what: `${x}`,
        inputs: [x],
        fn: (t) => t.to("float32").mul(t.to("float32")).to("float64"),
        options: { eps: 1e-2, atol: 1e-4, rtol: 1e-3 },
      })),
    },
    {
      label: "float64 -> float32 -> float64, then sin",
      arb: f64(shapes({})).map((x) => ({
        what: `${x}`,
        inputs: [x],
        fn: (t) => t.float().double().sin(),
        options: { eps: 1e-2, atol: 1e-4, rtol: 1e-3 },
      })),
    },
  ],
  add: [binary((a, b) => a.add(b)), binary((a, b) => a.add(b, 2.5)), unary((x) => x.add(3))],
  sub: [binary((a, b) => a.sub(b)), binary((a, b) => a.sub(b, -1.5)), unary((x) => x.sub(2))],
  mul: [binary((a, b) => a.mul(b)), unary((x) => x.mul(x)), unary((x) => x.square())],
  div: [
    binary((a, b) => a.div(b), {}, { avoidZero: 0.3 }),
    unary((x) => x.div(x.add(5)), { min: -2, max: 2 }, "shared input"),
  ],
  pow: [
    binary((a, b) => a.pow(b), { min: 0.3, max: 2 }, { min: -2, max: 2 }),
    unary((x) => x.pow(3), {}, "scalar exponent 3"),
    unary((x) => x.pow(0.5), { min: 0.2, max: 3 }, "scalar exponent 0.5"),
    unary((x) => x.pow(-1.5), { min: 0.2, max: 3 }, "scalar exponent -1.5"),
  ],
  maximum: [
    {
      label: "broadcast pair on offset grids (no ties)",
      arb: arbPair().map(([a, b]) => ({
        what: "grid",
        inputs: [onGrid(0)(a), onGrid(0.25)(b)],
        fn: (x, y) => x.maximum(y),
      })),
    },
  ],
  minimum: [
    {
      label: "broadcast pair on offset grids (no ties)",
      arb: arbPair().map(([a, b]) => ({
        what: "grid",
        inputs: [onGrid(0.25)(a), onGrid(0)(b)],
        fn: (x, y) => x.minimum(y),
      })),
    },
  ],
  where: [
    {
      label: "condition, a and b all broadcast",
      arb: arbBroadcastShapes({ maxDim: 4 }).chain(([sa, sb]) => {
        const full = broadcastShapes("test", sa, sb);
        return fc.tuple(f64(sa), f64(sb), arbBools(numel(full))).map(([a, b, c]) => ({
          what: `${a} ${b}`,
          inputs: [a, b],
          fn: (x, y) => where(bools(c, full), x, y),
        }));
      }),
    },
    {
      label: "scalar branch",
      arb: shapes({})
        .chain((s) => fc.tuple(f64(s), arbBools(numel(s)), fc.constant(s)))
        .map(([a, c, s]) => ({ what: `${a}`, inputs: [a], fn: (x) => where(bools(c, s), 0.5, x.exp()) })),
    },
  ],
  sum: reduction("sum", (x, d, k) => x.sum(d, k)),
  max: reduction("max", (x, d, k) => x.max(d, k), { distinct: true }),
  min: reduction("min", (x, d, k) => x.min(d, k), { distinct: true }),
  contiguous: [
    {
      label: "copy of a transposed view",
      arb: f64(shapes({ minRank: 2 })).map((x) => ({
        what: `${x}`,
        inputs: [x],
        fn: (t) => t.transpose(0, -1).contiguous().mul(t.transpose(0, -1)),
      })),
    },
    unary((x) => x.clone().mul(x), {}, "clone"),
  ],
  matmul: [
    ...(
      [
        [
          "2-D",
          (m, k, n) => [
            [m, k],
            [k, n],
          ],
        ],
        [
          "batched",
          (m, k, n, b) => [
            [b, m, k],
            [b, k, n],
          ],
        ],
        [
          "broadcast batch",
          (m, k, n, b, c) => [
            [b, 1, m, k],
            [c, k, n],
          ],
        ],
        ["1-D x 1-D", (_m, k) => [[k], [k]]],
        ["1-D x 2-D", (_m, k, n) => [[k], [k, n]]],
        ["2-D x 1-D", (m, k) => [[m, k], [k]]],
        ["3-D x 1-D", (m, k, _n, b) => [[b, m, k], [k]]],
        ["1-D x 3-D", (_m, k, n, b) => [[k], [b, k, n]]],
      ] as [string, (...d: number[]) => [number[], number[]]][]
    ).map(
      ([label, shapesOf]): GradCase => ({
        label,
        arb: fc
          .tuple(...Array.from({ length: 5 }, () => fc.integer({ min: 1, max: 4 })))
          .chain((d) => {
            const [sa, sb] = shapesOf(...d);
            return fc.tuple(f64(sa), f64(sb));
          })
          .map(([a, b]) => ({ what: `${a} x ${b}`, inputs: [a, b], fn: (x, y) => x.matmul(y) })),
      }),
    ),
    {
      label: "transposed weight (x W^T)",
      arb: fc
        .tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }))
        .chain(([m, k, n]) => fc.tuple(f64([m, k]), f64([n, k])))
        .map(([a, w]) => ({ what: `${a} ${w}`, inputs: [a, w], fn: (x, y) => x.matmul(y.transpose(0, 1)) })),
    },
  ],
  gather: [
    {
      label: "random dim and in-range index",
      arb: shapes({ minRank: 1 }).chain((s) =>
        fc.integer({ min: 0, max: s.length - 1 }).chain((dim) => {
          const idxShape = fc.tuple(
            ...s.map((n, d) => (d === dim ? fc.integer({ min: 1, max: 4 }) : fc.integer({ min: 1, max: n }))),
          );
          return fc.tuple(f64(s), idxShape).chain(([x, is]) =>
            arbInts(numel(is), s[dim]!).map((ids) => ({
              what: `gather(${x}, ${dim}, ${JSON.stringify(ids)} ${JSON.stringify(is)})`,
              inputs: [x],
              fn: (t: Tensor) => t.gather(dim, int32(ids, is)),
            })),
          );
        }),
      ),
    },
  ],
  scatterAdd: [
    {
      label: "duplicates accumulate",
      arb: shapes({ minRank: 1 }).chain((s) =>
        fc.integer({ min: 0, max: s.length - 1 }).chain((dim) => {
          const idxShape = fc.tuple(
            ...s.map((n, d) => (d === dim ? fc.integer({ min: 1, max: 4 }) : fc.integer({ min: 1, max: n }))),
          );
          return idxShape.chain((is) =>
            fc.tuple(f64(is), arbInts(numel(is), s[dim]!)).map(([src, ids]) => ({
              what: `scatterAdd(${JSON.stringify(ids)}, ${src}, ${dim}, ${JSON.stringify(s)})`,
              inputs: [src],
              fn: (t: Tensor) => scatterAdd(int32(ids, is), t, dim, s).sin(),
            })),
          );
        }),
      ),
    },
  ],
  indexSelect: [
    {
      label: "random dim, repeated indices",
      arb: shapes({ minRank: 1 }).chain((s) =>
        fc
          .tuple(fc.integer({ min: 0, max: s.length - 1 }), fc.integer({ min: 1, max: 5 }))
          .chain(([dim, L]) =>
            fc.tuple(f64(s), arbInts(L, s[dim]!)).map(([x, ids]) => ({
              what: `indexSelect(${x}, ${dim}, ${JSON.stringify(ids)})`,
              inputs: [x],
              fn: (t: Tensor) => t.indexSelect(dim, int32(ids, [L])),
            })),
          ),
      ),
    },
  ],
  indexAdd: [
    {
      label: "random dim, repeated indices",
      arb: shapes({ minRank: 1 }).chain((s) =>
        fc
          .tuple(fc.integer({ min: 0, max: s.length - 1 }), fc.integer({ min: 1, max: 4 }))
          .chain(([dim, size]) =>
            fc.tuple(f64(s), arbInts(s[dim]!, size)).map(([src, ids]) => ({
              what: `indexAdd(${JSON.stringify(ids)}, ${src}, ${dim}, ${size})`,
              inputs: [src],
              fn: (t: Tensor) => indexAdd(int32(ids, [ids.length]), t, dim, size).cos(),
            })),
          ),
      ),
    },
  ],
  reshape: [
    {
      label: "to -1, to reversed dims, and from a non-contiguous view (copy path)",
      arb: f64(shapes({})).map((x) => ({
        what: `${x}`,
        inputs: [x],
        fn: (t) => {
          const r = [...t.shape].reverse();
          const strided = t.ndim >= 2 ? t.mT : t;
          return t.reshape(-1).mul(t.reshape(r).reshape(-1)).add(strided.reshape(-1).sin());
        },
      })),
    },
  ],
  permute: [
    {
      label: "random permutation, rank 1-4",
      arb: shapes({ minRank: 1, maxRank: 4, maxDim: 3 }).chain((s) => {
        const dims = s.map((_, i) => i);
        return fc
          .tuple(f64(s), fc.shuffledSubarray(dims, { minLength: s.length, maxLength: s.length }))
          .map(([x, p]) => ({ what: `permute(${x}, ${p})`, inputs: [x], fn: (t) => t.permute(p).sin() }));
      }),
    },
  ],
  expand: [
    {
      label: "size-1 and new leading dims",
      arb: arbBroadcastShapes({ maxDim: 4 }).chain(([sa, sb]) => {
        const full = broadcastShapes("test", sa, sb);
        return f64(sa).map((x) => ({
          what: `expand(${x}, ${JSON.stringify(full)})`,
          inputs: [x],
          fn: (t) => t.expand(full).mul(t.expand(full).exp()),
        }));
      }),
    },
  ],
  narrow: [
    {
      label: "random window",
      arb: shapes({ minRank: 1 }).chain((s) =>
        fc.integer({ min: 0, max: s.length - 1 }).chain((dim) =>
          fc
            .integer({ min: 0, max: s[dim]! - 1 })
            .chain((start) => fc.tuple(f64(s), fc.integer({ min: 0, max: s[dim]! - start })))
            .map(([x, len]) => ({
              what: `narrow(${x}, ${dim}, ${len})`,
              inputs: [x],
              fn: (t) =>
                t
                  .narrow(dim, s[dim]! - len, len)
                  .exp()
                  .sum(),
            })),
        ),
      ),
    },
  ],
};

// ---- compositions: public ops built from the primitives above ----

const LOGITS = { min: -4, max: 4 };

function withDim(f: (x: Tensor, dim: number) => Tensor, o: ShapeOptions & TensorOptions = {}): GradCase {
  return {
    label: "random dim",
    arb: arbWithDim(o).map(({ x, dim }) => ({ what: `${x} dim ${dim}`, inputs: [x], fn: (t) => f(t, dim) })),
  };
}

const square = defineOp({
  name: "square",
  forward: (x: Tensor) => x.mul(x),
  backward: (dy, { inputs: [x] }) => [dy.mul(x).mul(2)], // d x^2 = 2x
});
const mulSin = defineOp({
  name: "mulSin",
  forward: (a: Tensor, b: Tensor) => a.mul(b.sin()),
  // d(a sin b)/da = sin b, d(a sin b)/db = a cos b; broadcast dims are summed back by the engine
  backward: (dy, { inputs: [a, b], needs }) => [
    needs[0] ? dy.mul(b.sin()) : null,
    needs[1] ? dy.mul(a).mul(b.cos()) : null,
  ],
});

/** Its forward returns the input itself when it is already float64. */
const asDouble = defineOp({
  name: "asDouble",
  forward: (x: Tensor) => x.double(),
  backward: (dy) => [dy],
});

const compositeCases: Record<string, GradCase[]> = {
  relu: [
    unary(relu, { avoidZero: 0.05 }, "away from 0"),
    unary((x) => x.relu(), { avoidZero: 0.05 }, "method"),
  ],
  silu: [unary(silu, { min: -5, max: 5 })],
  "gelu (exact)": [unary((x) => gelu(x), { min: -4, max: 4 })],
  "gelu (tanh)": [unary((x) => gelu(x, "tanh"), { min: -4, max: 4 })],
  clamp: [
    {
      label: "min and max, values on a grid off the bounds",
      arb: f64(shapes({})).map((x) => ({
        what: `${x}`,
        inputs: [mapValues(x, (v) => Math.round(v * 4) / 4 + 0.125)],
        fn: (t: Tensor) => clamp(t, -0.5, 0.5).add(t.clamp(null, 0.9)).add(t.clamp(-1.1)),
      })),
    },
  ],
  maskedFill: [
    {
      label: "mask broadcast to the input",
      arb: arbBroadcastShapes({ maxDim: 4 }).chain(([sa, sb]) => {
        const full = broadcastShapes("test", sa, sb);
        return fc.tuple(f64(full), arbBools(numel(sb))).map(([x, m]) => ({
          what: `${x} mask ${JSON.stringify(sb)}`,
          inputs: [x],
          fn: (t: Tensor) => maskedFill(t.exp(), bools(m, sb), -1),
        }));
      }),
    },
  ],
  mean: reduction("mean", (x, d, k) => x.mean(d, k)),
  logsumexp: reduction("logsumexp", (x, d, k) => x.logsumexp(d ?? x.shape.map((_, i) => i), k), {
    min: -5,
    max: 5,
  }),
  var: [
    ...reduction("var", (x, d, k) => variance(x, d, { keepdim: k }), { minRank: 1, minDim: 2 }),
    ...reduction("var", (x, d, k) => x.var(d, { correction: 0, keepdim: k })),
  ],
  softmax: [withDim((x, d) => softmax(x, d), LOGITS), withDim((x, d) => x.softmax(d).log(), LOGITS)],
  logSoftmax: [withDim((x, d) => logSoftmax(x, d), LOGITS)],
  view: [
    unary(
      (x) =>
        x.view(-1).mul(
          x
            .contiguous()
            .view([...x.shape].reverse())
            .reshape(-1),
        ),
      {},
      "contiguous input",
    ),
  ],
  flatten: [
    {
      label: "random start and end dims",
      arb: shapes({ minRank: 1, maxRank: 4, maxDim: 3 }).chain((s) =>
        fc
          .tuple(fc.integer({ min: 0, max: s.length - 1 }), fc.integer({ min: 0, max: s.length - 1 }))
          .chain(([a, b]) =>
            f64(s).map((x) => ({
              what: `flatten(${x}, ${Math.min(a, b)}, ${Math.max(a, b)})`,
              inputs: [x],
              fn: (t: Tensor) => t.flatten(Math.min(a, b), Math.max(a, b)).sin(),
            })),
          ),
      ),
    },
  ],
  transpose: [
    {
      label: "random pair of dims",
      arb: shapes({ minRank: 2 }).chain((s) =>
        fc
          .tuple(
            f64(s),
            fc.integer({ min: -s.length, max: s.length - 1 }),
            fc.integer({ min: 0, max: s.length - 1 }),
          )
          .map(([x, a, b]) => ({
            what: `transpose(${x}, ${a}, ${b})`,
            inputs: [x],
            fn: (t: Tensor) => t.transpose(a, b).cos(),
          })),
      ),
    },
  ],
  squeeze: [
    {
      label: "all size-1 dims, and one named dim",
      arb: arbShape({ maxRank: 4, maxDim: 2 }).chain((s) =>
        fc.tuple(f64(s), fc.integer({ min: 0, max: Math.max(0, s.length - 1) })).map(([x, d]) => ({
          what: `squeeze(${x}, ${d})`,
          inputs: [x],
          fn: (t: Tensor) =>
            t
              .squeeze()
              .exp()
              .sum()
              .add(t.ndim > 0 ? t.squeeze(d).sin().sum() : t),
        })),
      ),
    },
  ],
  unsqueeze: [
    {
      label: "every position, negative too",
      arb: shapes({}).chain((s) =>
        fc.tuple(f64(s), fc.integer({ min: -(s.length + 1), max: s.length })).map(([x, d]) => ({
          what: `unsqueeze(${x}, ${d})`,
          inputs: [x],
          fn: (t: Tensor) => t.unsqueeze(d).mul(t.unsqueeze(d)),
        })),
      ),
    },
  ],
  slice: [
    {
      label: "negative and clipped bounds",
      arb: shapes({ minRank: 1 }).chain((s) =>
        fc
          .tuple(
            f64(s),
            fc.integer({ min: 0, max: s.length - 1 }),
            fc.integer({ min: -6, max: 6 }),
            fc.integer({ min: -6, max: 6 }),
          )
          .map(([x, d, a, b]) => ({
            what: `slice(${x}, ${d}, ${a}, ${b})`,
            inputs: [x],
            fn: (t: Tensor) => t.slice(d, a, b).exp().sum().add(t.sum()),
          })),
      ),
    },
  ],
  cat: [
    {
      label: "2-3 tensors of different sizes along a random dim",
      arb: shapes({ minRank: 1 }).chain((s) =>
        fc
          .tuple(
            fc.integer({ min: 0, max: s.length - 1 }),
            fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 2, maxLength: 3 }),
          )
          .chain(([dim, sizes]) =>
            fc.tuple(...sizes.map((n) => f64(s.map((m, i) => (i === dim ? n : m))))).map((xs) => ({
              what: `cat dim ${dim}`,
              inputs: xs,
              fn: (...ts: Tensor[]) => cat(ts, dim).sin(),
            })),
          ),
      ),
    },
  ],
  stack: [
    {
      label: "3 tensors along a random new dim",
      arb: shapes({}).chain((s) =>
        fc
          .tuple(f64(s), f64(s), f64(s), fc.integer({ min: -(s.length + 1), max: s.length }))
          .map(([a, b, c, dim]) => ({
            what: `stack dim ${dim}`,
            inputs: [a, b, c],
            fn: (...ts: Tensor[]) => stack(ts, dim).exp(),
          })),
      ),
    },
  ],
  split: [
    {
      label: "by size, pieces weighted differently",
      arb: shapes({ minRank: 1 }).chain((s) =>
        fc
          .tuple(f64(s), fc.integer({ min: 0, max: s.length - 1 }), fc.integer({ min: 1, max: 4 }))
          .map(([x, dim, size]) => ({
            what: `split(${x}, ${size}, ${dim})`,
            inputs: [x],
            fn: (t: Tensor) =>
              stack(
                split(t, size, dim).map((p, i) =>
                  p
                    .exp()
                    .sum()
                    .mul(i + 1),
                ),
              ),
          })),
      ),
    },
    {
      label: "by sections",
      arb: fc
        .tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 3 }))
        .chain(([a, b, r]) =>
          f64([r, a + b]).map((x) => ({
            what: `split(${x}, [${a}, ${b}], 1)`,
            inputs: [x],
            fn: (t: Tensor) => {
              const [p, q] = split(t, [a, b], 1);
              return p!.sum().mul(2).add(q!.sin().sum());
            },
          })),
        ),
    },
  ],
  chunk: [
    {
      label: "random number of chunks",
      arb: shapes({ minRank: 1 }).chain((s) =>
        fc
          .tuple(f64(s), fc.integer({ min: 0, max: s.length - 1 }), fc.integer({ min: 1, max: 5 }))
          .map(([x, dim, n]) => ({
            what: `chunk(${x}, ${n}, ${dim})`,
            inputs: [x],
            fn: (t: Tensor) =>
              stack(
                chunk(t, n, dim).map((p, i) =>
                  p
                    .sin()
                    .sum()
                    .mul(i + 1),
                ),
              ),
          })),
      ),
    },
  ],
  tril: [
    {
      label: "diagonal -2..2",
      arb: shapes({ minRank: 2 }).chain((s) =>
        fc.tuple(f64(s), fc.integer({ min: -2, max: 2 })).map(([x, k]) => ({
          what: `tril(${x}, ${k})`,
          inputs: [x],
          fn: (t: Tensor) => t.tril(k).exp(),
        })),
      ),
    },
  ],
  triu: [
    {
      label: "diagonal -2..2",
      arb: shapes({ minRank: 2 }).chain((s) =>
        fc.tuple(f64(s), fc.integer({ min: -2, max: 2 })).map(([x, k]) => ({
          what: `triu(${x}, ${k})`,
          inputs: [x],
          fn: (t: Tensor) => t.triu(k).exp(),
        })),
      ),
    },
  ],
  embedding: [
    {
      label: "ids [B, T] into a table [V, D], repeated ids accumulate",
      arb: fc
        .tuple(
          fc.integer({ min: 1, max: 5 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 4 }),
        )
        .chain(([V, D, B, T]) =>
          fc.tuple(f64([V, D]), arbInts(B * T, V)).map(([w, ids]) => ({
            what: `embedding(${JSON.stringify(ids)}, ${w})`,
            inputs: [w],
            fn: (t: Tensor) => embedding(int32(ids, [B, T]), t).sin(),
          })),
        ),
    },
  ],
  crossEntropy: (["mean", "sum", "none"] as const).flatMap((reduction) =>
    [0, 0.1].map(
      (label_smoothing): GradCase => ({
        label: `reduction ${reduction}, label_smoothing ${label_smoothing}, some targets -100`,
        arb: fc
          .tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 2, max: 5 }))
          .chain(([N, C]) =>
            fc.tuple(
              f64([N, C], LOGITS),
              fc.array(fc.oneof(fc.integer({ min: 0, max: C - 1 }), fc.constant(-100)), {
                minLength: N,
                maxLength: N,
              }),
              fc.integer({ min: 0, max: C - 1 }),
            ),
          )
          .map(([logits, targets, first]) => {
            const t = [first, ...targets.slice(1)]; // at least one kept target, else the mean is NaN
            return {
              what: `crossEntropy(${logits}, ${JSON.stringify(t)})`,
              inputs: [logits],
              fn: (x: Tensor) => crossEntropy(x, int32(t, [t.length]), { reduction, label_smoothing }),
            };
          }),
      }),
    ),
  ),
  dropout: [
    unary(
      (x) => {
        manualSeed(7); // the same mask on every evaluation
        return dropout(x, 0.3).mul(x);
      },
      {},
      "fixed seed inside fn",
    ),
  ],
  defineOp: [
    unary((x) => square(x.sin()), {}, "unary custom op"),
    binary((a, b) => mulSin(a, b).exp()),
    unary((x) => asDouble(x).mul(x.sin()), {}, "forward returns its input unchanged"),
  ],
};

// ---- second order: the vjp rules are ops too, so their gradients must match finite differences ----

/**
 * x -> d(sum f(x))/dx through backward({ createGraph: true }). When gradcheck evaluates it at perturbed
 * points (under noGrad, with plain tensors), a fresh leaf is made there, so the values are the same function.
 */
function gradOf(f: (x: Tensor) => Tensor): (x: Tensor) => Tensor {
  return (x) =>
    withGradMode(true, () => {
      const leaf = x.requiresGrad ? x : x.detach().requiresGrad_();
      const prev = leaf.grad;
      leaf.grad = null;
      f(leaf).sum().backward(undefined, { createGraph: true });
      const g = leaf.grad!;
      leaf.grad = prev;
      return g;
    });
}

const W = tensor(Float64Array.from([0.5, -1, 2, 0.25, -0.75, 1.5]), { shape: [3, 2], dtype: "float64" });

const secondOrder: Record<string, [(x: Tensor) => Tensor, TensorOptions]> = {
  "sin, cos": [(x) => x.sin().mul(x.cos()), {}],
  "exp, log": [(x) => x.exp().add(x.mul(x).add(1).log()), {}],
  "tanh, sigmoid, erf": [(x) => x.tanh().mul(x.sigmoid()).add(x.erf()), {}],
  "sqrt, rsqrt, reciprocal": [(x) => x.sqrt().add(x.rsqrt()).add(x.reciprocal()), { min: 0.3, max: 3 }],
  "pow, div": [(x) => x.pow(3).div(x.add(4)), {}],
  "softmax, logsumexp": [(x) => x.softmax(-1).mul(x).add(x.logsumexp(-1, true)), {}],
  "gelu, silu": [(x) => gelu(x).add(silu(x)).add(gelu(x, "tanh")), {}],
  "matmul, transpose": [(x) => x.reshape(-1, 2).matmul(W.transpose(0, 1)).tanh(), {}],
  "narrow, cat": [(x) => cat([x.narrow(-1, 1, 1).exp(), x.narrow(-1, 0, 1).sin()], -1).mul(x), {}],
  "gather, indexSelect": [
    (x) =>
      x
        .reshape(-1, 2)
        .indexSelect(1, int32([1, 1, 0], [3]))
        .gather(1, int32([2, 0], [1, 2]).expand(x.numel / 2, 2))
        .exp(),
    {},
  ],
  "max (distinct values)": [(x) => x.max(-1, true).mul(x).exp(), {}],
  "where (away from the branch point)": [
    (x) => where(x.gt(0), x.mul(x), x.exp()).mul(x),
    { avoidZero: 0.05 },
  ],
};

describe("second-order gradients match central differences of the gradient", () => {
  for (const [name, [f, o]] of Object.entries(secondOrder)) {
    it(name, () => {
      const isMax = name.startsWith("max"); // distinct values: no ties
      run({
        label: name,
        arb: fc
          .tuple(fc.integer({ min: 1, max: 3 }), fc.constant(2))
          .chain((s) => (isMax ? arbDistinct(s) : f64(s, o)))
          .map((x) => ({ what: `${x}`, inputs: [x], fn: gradOf(f) })),
      });
    });
  }
});

// ---- broadcast gradients have their input's shape ----

describe("broadcast gradients reduce to each input's shape", () => {
  const ops: Record<string, (a: Tensor, b: Tensor) => Tensor> = {
    add: (a, b) => a.add(b),
    sub: (a, b) => a.sub(b),
    mul: (a, b) => a.mul(b),
    div: (a, b) => a.div(b.abs().add(1)),
    pow: (a, b) => a.abs().add(1).pow(b),
    maximum: (a, b) => a.maximum(b),
    where: (a, b) => where(a.gt(b), a, b),
    // outer products [..., n, 1] x [..., 1, m] with broadcast batch dims (0-d operands use mul)
    matmul: (a, b) => (a.ndim > 0 && b.ndim > 0 ? a.unsqueeze(-1).matmul(b.unsqueeze(-2)) : a.mul(b)),
  };
  for (const [name, f] of Object.entries(ops)) {
    it(name, () => {
      fc.assert(
        fc.property(arbPair(), ([a, b]) => {
          const [x, y] = [a.detach().requiresGrad_(), b.detach().requiresGrad_()];
          f(x, y).sum().backward();
          expect(x.grad!.shape).toEqual(x.shape);
          expect(y.grad!.shape).toEqual(y.shape);
        }),
        { numRuns: RUNS },
      );
    });
  }
});

// ---- float32 gradients agree with float64 ones ----

describe("float32 autograd matches float64 autograd within the f32 tolerance", () => {
  // A small MLP with every kind of rule on the path: matmul, gelu, layer-norm-like centring, softmax,
  // maximum, indexing and crossEntropy. The float64 gradients are the reference.
  const model = (x: Tensor, w1: Tensor, w2: Tensor) => {
    const h = gelu(x.matmul(w1));
    const centred = h.sub(h.mean(-1, true)).div(h.var(-1, { keepdim: true }).add(1e-5).sqrt());
    // the maximum's kink sits at centred = 0.6, away from the all-equal rows (centred = 0) that edge-case
    // inputs produce; float32 and float64 could fall on different sides of a kink at 0
    const logits = centred.maximum(centred.mul(0.5).add(0.3)).matmul(w2);
    const picked = logits
      .indexSelect(1, int32([0, 2], [2]))
      .softmax(-1)
      .sum();
    return crossEntropy(logits, int32([0, 1, 2, -100], [4]), { label_smoothing: 0.1 }).add(picked);
  };
  it("MLP gradients", () => {
    fc.assert(
      // avoidZero keeps float64 subnormals (which are 0 in float32) out of the inputs
      fc.property(
        fc.tuple(f64([4, 5], { avoidZero: 0.1 }), f64([5, 6], { avoidZero: 0.1 }), f64([6, 3])),
        (ins) => {
          const grads = (dtype: "float32" | "float64") => {
            const leaves = ins.map((t) => t.to(dtype).detach().requiresGrad_());
            model(leaves[0]!, leaves[1]!, leaves[2]!).backward();
            return leaves.map((l) => {
              expect(l.grad!.dtype).toBe(dtype);
              return l.grad!.dataSync();
            });
          };
          const [g32, g64] = [grads("float32"), grads("float64")];
          for (const [i, g] of g32.entries()) expectAllClose(g, g64[i]!, TOLERANCES.f32);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

// ---- the helpers themselves ----

describe("the public testing helpers", () => {
  it("arbBroadcastShapes always gives shapes that broadcast, and arbTensor honours min, max and avoidZero", () => {
    fc.assert(
      fc.property(arbBroadcastShapes(), ([a, b]) => {
        const out = broadcastShapes("test", a, b);
        expect(out.length).toBe(Math.max(a.length, b.length));
      }),
    );
    fc.assert(
      fc.property(arbTensor(arbShape({ minRank: 1 }), { min: -1, max: 1, avoidZero: 0.25 }), (t) => {
        for (const v of t.dataSync()) expect(Math.abs(v) >= 0.25 && Math.abs(v) <= 1).toBe(true);
        expect(t.dtype).toBe("float64");
      }),
    );
  });

  it("gradcheck catches a custom op with a wrong backward, and assertGradients says where", () => {
    const wrong = defineOp({
      name: "wrongCube",
      forward: (x: Tensor) => x.pow(3),
      backward: (dy, { inputs: [x] }) => [dy.mul(x.mul(x)).mul(2)], // should be 3 x^2
    });
    const x = tensor(Float64Array.from([0.5, -1, 2]), { dtype: "float64" });
    expect(() => assertGradients((t) => wrong(t), [x])).toThrow(
      /gradient mismatch for input 0 \(shape \[3\]\) at element \d: autograd .*, finite differences/,
    );
    // a large input is checked along random directions, and the mismatch is still caught
    const big = tensor(
      Float64Array.from({ length: 100 }, (_, i) => 1 + i / 100),
      { dtype: "float64" },
    );
    expect(() => assertGradients((t) => wrong(t), [big])).toThrow(/along a random direction/);
  });
});

// ---- running them ----

function run(c: GradCase): void {
  fc.assert(
    fc.property(c.arb, (check) => {
      assertGradients(check.fn, check.inputs, check.options);
    }),
    { numRuns: RUNS },
  );
}

beforeEach(() => manualSeed(1234));

describe("every differentiable primitive matches central differences", () => {
  it("the non-differentiable list is exactly the ops vjpRules marks so", () => {
    const marked = Object.entries(vjpRules)
      .filter(([, rule]) => rule === NON_DIFFERENTIABLE)
      .map(([name]) => name)
      .sort();
    expect(marked).toEqual([...NON_DIFF].sort());
    const withCases = Object.keys(primitiveCases).sort();
    const differentiable = [
      ...Object.keys(vjpRules).filter((k) => !marked.includes(k)),
      ...Object.keys(viewVjpRules),
    ].sort();
    expect(withCases).toEqual(differentiable);
  });

  for (const [op, cases] of Object.entries(primitiveCases)) {
    for (const c of cases) it(`${op}: ${c.label}`, () => run(c));
  }
});

describe("compositions match central differences", () => {
  for (const [op, cases] of Object.entries(compositeCases)) {
    for (const c of cases) it(`${op}: ${c.label}`, () => run(c));
  }
});
