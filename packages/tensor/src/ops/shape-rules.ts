// Shape and dtype rule of every primitive: validates the inputs and says what the output is. Errors name
// the op, the shapes and what was expected. One total table over OpName (style guide 3.4.2).

import { type DType, isFloat } from "../dtype.js";
import { fmt, type Shape, shapesEqual } from "../shape.js";
import type { Attrs, OpName, OpSignatures, TupleOf } from "./signatures.js";

export interface Meta {
  readonly shape: Shape;
  readonly dtype: DType;
}
export interface OutMeta {
  shape: number[];
  dtype: DType;
}
type MetaTuple<K extends OpName> = TupleOf<OpSignatures[K]["in"], Meta>;
export type ShapeRule<K extends OpName> = (inputs: MetaTuple<K>, attrs: Attrs<K>) => OutMeta;

/** Elementwise ops whose inputs the frontend broadcasts to the output shape before the kernel runs. */
export const BROADCAST_OPS: ReadonlySet<OpName> = new Set<OpName>([
  "add",
  "sub",
  "mul",
  "div",
  "pow",
  "maximum",
  "minimum",
  "eq",
  "ne",
  "lt",
  "le",
  "gt",
  "ge",
  "logicalAnd",
  "logicalOr",
  "where",
]);

function float(op: string) {
  return ([x]: [Meta]): OutMeta => {
    if (!isFloat(x.dtype)) throw new TypeError(`${op}: expected a floating-point tensor, got ${x.dtype}`);
    return { shape: [...x.shape], dtype: x.dtype };
  };
}

function numeric(op: string) {
  return ([x]: [Meta]): OutMeta => {
    if (x.dtype === "bool") throw new TypeError(`${op}: expected a numeric tensor, got bool`);
    return { shape: [...x.shape], dtype: x.dtype };
  };
}

function sameShapeDType(op: string, ms: readonly Meta[]): void {
  for (const m of ms.slice(1)) {
    if (!shapesEqual(m.shape, ms[0]!.shape)) {
      throw new RangeError(
        `${op}: inputs must have the same shape after broadcasting, got ${ms.map((x) => fmt(x.shape)).join(" and ")}`,
      );
    }
    if (m.dtype !== ms[0]!.dtype) {
      throw new TypeError(
        `${op}: inputs must have the same dtype, got ${ms.map((x) => x.dtype).join(" and ")}`,
      );
    }
  }
}

function arith(op: string, floatOnly = false) {
  return ([a, b]: [Meta, Meta]): OutMeta => {
    sameShapeDType(op, [a, b]);
    if (a.dtype === "bool")
      throw new TypeError(`${op}: not defined on bool tensors; cast with .int() or use logicalAnd/logicalOr`);
    if (floatOnly && !isFloat(a.dtype))
      throw new TypeError(`${op}: expected floating-point tensors, got ${a.dtype}`);
    return { shape: [...a.shape], dtype: a.dtype };
  };
}

function compare(op: string) {
  return ([a, b]: [Meta, Meta]): OutMeta => {
    sameShapeDType(op, [a, b]);
    return { shape: [...a.shape], dtype: "bool" };
  };
}

function logical(op: string) {
  return (ms: readonly Meta[]): OutMeta => {
    sameShapeDType(op, ms);
    if (ms.some((m) => m.dtype !== "bool"))
      throw new TypeError(`${op}: expected bool tensors, got ${ms.map((m) => m.dtype).join(" and ")}`);
    return { shape: [...ms[0]!.shape], dtype: "bool" };
  };
}

function reduce(op: string) {
  return ([x]: [Meta], { dims }: { dims: number[] }): OutMeta => {
    for (const d of dims)
      if (d < 0 || d >= x.shape.length)
        throw new RangeError(`${op}: dim ${d} out of range for shape ${fmt(x.shape)}`);
    if (op !== "sum") {
      for (const d of dims) {
        if (x.shape[d] === 0)
          throw new RangeError(`${op}: cannot reduce over the empty dim ${d} of shape ${fmt(x.shape)}`);
      }
    }
    const dtype = op === "sum" && (x.dtype === "bool" || x.dtype === "uint8") ? "int32" : x.dtype;
    return { shape: x.shape.map((n, i) => (dims.includes(i) ? 1 : n)), dtype };
  };
}

function argReduce(op: string) {
  return ([x]: [Meta], { dim }: { dim: number }): OutMeta => {
    if (dim < 0 || dim >= x.shape.length)
      throw new RangeError(`${op}: dim ${dim} out of range for shape ${fmt(x.shape)}`);
    if (x.shape[dim] === 0)
      throw new RangeError(`${op}: cannot reduce over the empty dim ${dim} of shape ${fmt(x.shape)}`);
    return { shape: x.shape.map((n, i) => (i === dim ? 1 : n)), dtype: "int32" };
  };
}

function intIndex(op: string, index: Meta): void {
  if (index.dtype !== "int32") throw new TypeError(`${op}: index must be int32, got ${index.dtype}`);
}

export const shapeRules: { [K in OpName]: ShapeRule<K> } = {
  neg: numeric("neg"),
  exp: float("exp"),
  log: float("log"),
  sqrt: float("sqrt"),
  rsqrt: float("rsqrt"),
  recip: float("recip"),
  sin: float("sin"),
  cos: float("cos"),
  tanh: float("tanh"),
  sigmoid: float("sigmoid"),
  erf: float("erf"),
  abs: numeric("abs"),
  sign: numeric("sign"),
  logicalNot: ([x]) => logical("logicalNot")([x]),
  cast: ([x], { dtype }) => ({ shape: [...x.shape], dtype }),
  add: arith("add"),
  sub: arith("sub"),
  mul: arith("mul"),
  div: arith("div", true),
  pow: arith("pow", true),
  maximum: arith("maximum"),
  minimum: arith("minimum"),
  eq: compare("eq"),
  ne: compare("ne"),
  lt: compare("lt"),
  le: compare("le"),
  gt: compare("gt"),
  ge: compare("ge"),
  logicalAnd: ([a, b]) => logical("logicalAnd")([a, b]),
  logicalOr: ([a, b]) => logical("logicalOr")([a, b]),
  where: ([cond, a, b]) => {
    if (cond.dtype !== "bool") throw new TypeError(`where: condition must be bool, got ${cond.dtype}`);
    sameShapeDType("where", [a, b]);
    if (!shapesEqual(cond.shape, a.shape))
      throw new RangeError(`where: condition shape ${fmt(cond.shape)} vs ${fmt(a.shape)}`);
    return { shape: [...a.shape], dtype: a.dtype };
  },
  sum: reduce("sum"),
  max: reduce("max"),
  min: reduce("min"),
  argmax: argReduce("argmax"),
  argmin: argReduce("argmin"),
  contiguous: ([x]) => ({ shape: [...x.shape], dtype: x.dtype }),
  matmul: ([a, b]) => {
    const r = a.shape.length;
    if (r < 2 || b.shape.length !== r) {
      throw new RangeError(
        `matmul: expected two tensors of equal rank >= 2 (after batch broadcasting), got ${fmt(a.shape)} and ${fmt(b.shape)}`,
      );
    }
    const [M, K] = [a.shape[r - 2]!, a.shape[r - 1]!];
    const [K2, N] = [b.shape[r - 2]!, b.shape[r - 1]!];
    if (K !== K2) {
      throw new RangeError(
        `matmul: inner dimensions differ: ${fmt(a.shape)} x ${fmt(b.shape)} (${K} vs ${K2}); expected [..., M, K] x [..., K, N]`,
      );
    }
    if (!shapesEqual(a.shape.slice(0, -2), b.shape.slice(0, -2))) {
      throw new RangeError(`matmul: batch dims differ: ${fmt(a.shape)} x ${fmt(b.shape)}`);
    }
    if (a.dtype !== b.dtype) throw new TypeError(`matmul: dtypes differ: ${a.dtype} and ${b.dtype}`);
    if (a.dtype === "bool") throw new TypeError("matmul: not defined on bool tensors");
    return { shape: [...a.shape.slice(0, -2), M, N], dtype: a.dtype };
  },
  gather: ([x, index], { dim }) => {
    intIndex("gather", index);
    if (index.shape.length !== x.shape.length) {
      throw new RangeError(
        `gather: index rank ${index.shape.length} must equal input rank ${x.shape.length} (input ${fmt(x.shape)}, index ${fmt(index.shape)})`,
      );
    }
    index.shape.forEach((n, d) => {
      if (d !== dim && n > x.shape[d]!) {
        throw new RangeError(
          `gather: index ${fmt(index.shape)} is larger than input ${fmt(x.shape)} at dim ${d}`,
        );
      }
    });
    return { shape: [...index.shape], dtype: x.dtype };
  },
  scatterAdd: ([index, src], { dim, shape }) => {
    intIndex("scatterAdd", index);
    if (!shapesEqual(index.shape, src.shape) || shape.length !== src.shape.length || dim >= shape.length) {
      throw new RangeError(
        `scatterAdd: index ${fmt(index.shape)} and src ${fmt(src.shape)} must match, into ${fmt(shape)} at dim ${dim}`,
      );
    }
    index.shape.forEach((n, d) => {
      if (d !== dim && n > shape[d]!) {
        throw new RangeError(
          `scatterAdd: index ${fmt(index.shape)} is larger than the output ${fmt(shape)} at dim ${d}`,
        );
      }
    });
    return { shape: [...shape], dtype: src.dtype };
  },
  indexSelect: ([x, index], { dim }) => {
    intIndex("indexSelect", index);
    if (index.shape.length !== 1)
      throw new RangeError(`indexSelect: index must be 1-D, got ${fmt(index.shape)}`);
    if (dim < 0 || dim >= x.shape.length)
      throw new RangeError(`indexSelect: dim ${dim} out of range for ${fmt(x.shape)}`);
    return { shape: x.shape.map((n, i) => (i === dim ? index.shape[0]! : n)), dtype: x.dtype };
  },
  indexAdd: ([index, src], { dim, size }) => {
    intIndex("indexAdd", index);
    if (index.shape.length !== 1 || src.shape[dim] !== index.shape[0]) {
      throw new RangeError(
        `indexAdd: index ${fmt(index.shape)} must be 1-D with src ${fmt(src.shape)}'s dim ${dim}`,
      );
    }
    return { shape: src.shape.map((n, i) => (i === dim ? size : n)), dtype: src.dtype };
  },
};
