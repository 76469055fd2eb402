// Elementwise CPU kernels: one expression each (x, y, z are the input elements).

import type { View } from "../backend/backend.js";
import type { DType } from "../dtype.js";
import type { Kernel, OpName } from "../ops/signatures.js";
import { mapKernel } from "./codegen.js";

function k<K extends OpName>(arity: 1 | 2 | 3, expr: string): Kernel<K> {
  const run = mapKernel(arity, expr);
  return ((inputs: readonly View[], _attrs: unknown, out: View) => run(inputs, out)) as unknown as Kernel<K>;
}

const castExpr: Record<DType, string> = {
  float32: "x",
  float64: "x",
  int32: "x", // Int32Array stores truncate toward zero, as PyTorch's cast does for in-range values
  uint8: "x",
  bool: "(x !== 0 ? 1 : 0)",
};
const castKernels = Object.fromEntries(
  Object.entries(castExpr).map(([dtype, expr]) => [dtype, mapKernel(1, expr)]),
) as Record<DType, (inputs: readonly View[], out: View) => void>;

export const elementwiseKernels = {
  neg: k<"neg">(1, "-x"),
  exp: k<"exp">(1, "Math.exp(x)"),
  log: k<"log">(1, "Math.log(x)"),
  sqrt: k<"sqrt">(1, "Math.sqrt(x)"),
  rsqrt: k<"rsqrt">(1, "1 / Math.sqrt(x)"),
  recip: k<"recip">(1, "1 / x"),
  sin: k<"sin">(1, "Math.sin(x)"),
  cos: k<"cos">(1, "Math.cos(x)"),
  tanh: k<"tanh">(1, "Math.tanh(x)"),
  // NOTE: two branches so exp never overflows for large |x|
  sigmoid: k<"sigmoid">(1, "(x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)))"),
  erf: k<"erf">(1, "erf(x)"),
  abs: k<"abs">(1, "Math.abs(x)"),
  sign: k<"sign">(1, "(x > 0 ? 1 : x < 0 ? -1 : x)"),
  logicalNot: k<"logicalNot">(1, "(x ? 0 : 1)"),
  cast: ((inputs, { dtype }, out) => castKernels[dtype](inputs as readonly View[], out)) as Kernel<"cast">,
  contiguous: k<"contiguous">(1, "x"),
  add: k<"add">(2, "x + y"),
  sub: k<"sub">(2, "x - y"),
  mul: k<"mul">(2, "x * y"),
  div: k<"div">(2, "x / y"),
  pow: k<"pow">(2, "Math.pow(x, y)"),
  // NaN propagates, as in torch.maximum
  maximum: k<"maximum">(2, "(x > y || x !== x ? x : y)"),
  minimum: k<"minimum">(2, "(x < y || x !== x ? x : y)"),
  eq: k<"eq">(2, "(x === y ? 1 : 0)"),
  ne: k<"ne">(2, "(x !== y ? 1 : 0)"),
  lt: k<"lt">(2, "(x < y ? 1 : 0)"),
  le: k<"le">(2, "(x <= y ? 1 : 0)"),
  gt: k<"gt">(2, "(x > y ? 1 : 0)"),
  ge: k<"ge">(2, "(x >= y ? 1 : 0)"),
  logicalAnd: k<"logicalAnd">(2, "(x && y ? 1 : 0)"),
  logicalOr: k<"logicalOr">(2, "(x || y ? 1 : 0)"),
  where: k<"where">(3, "(x ? y : z)"),
};
