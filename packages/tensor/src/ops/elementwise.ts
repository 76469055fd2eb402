// Elementwise ops: scalars and dtype promotion (PyTorch rules) are settled here, broadcasting in apply().

import { type DType, isFloat, promoteTypes, promoteWithScalar } from "../dtype.js";
import { broadcastShapes, fmt, shapesEqual } from "../shape.js";
import { Tensor, type TensorLike } from "../tensor.js";
import { apply } from "./apply.js";
import { scalar } from "./creation.js";
import type { OpName } from "./signatures.js";

/** Same data in another dtype (differentiable for floats). A no-op when the dtype already matches. */
export function cast(x: Tensor, dtype: DType): Tensor {
  return x.dtype === dtype ? x : apply("cast", [x], { dtype });
}

function commonDType(op: string, vals: readonly TensorLike[]): DType {
  const tensors = vals.filter((v): v is Tensor => v instanceof Tensor);
  let dtype: DType | null = null;
  for (const t of tensors) dtype = dtype === null ? t.dtype : promoteTypes(dtype, t.dtype);
  for (const v of vals) {
    if (typeof v === "number" || typeof v === "boolean")
      dtype = dtype === null ? "float32" : promoteWithScalar(dtype, v);
    else if (!(v instanceof Tensor))
      throw new TypeError(`${op}: expected a Tensor or a number, got ${typeof v}`);
  }
  return dtype!;
}

/** Tensors for all of vals, converted to one dtype and put on the backend of the first tensor. */
function coerce(op: string, vals: readonly TensorLike[], floatResult = false): Tensor[] {
  let dtype = commonDType(op, vals);
  if (floatResult && !isFloat(dtype)) dtype = "float32";
  const backend = vals.find((v): v is Tensor => v instanceof Tensor)?.backend;
  return vals.map((v) => (v instanceof Tensor ? cast(v, dtype) : scalar(v, dtype, backend)));
}

function binary(op: OpName, a: TensorLike, b: TensorLike, floatResult = false): Tensor {
  return apply(op, coerce(op, [a, b], floatResult), {});
}

function unaryFloat(op: OpName, x: Tensor): Tensor {
  return apply(op, [isFloat(x.dtype) ? x : cast(x, "float32")], {});
}

/** b * alpha; a plain number stays a number, so it promotes as a scalar (int - 2 * 2 stays int). */
function scaled(b: TensorLike, alpha?: number): TensorLike {
  if (alpha === undefined || alpha === 1) return b;
  return typeof b === "number" ? b * alpha : mul(b, alpha);
}
export function add(a: TensorLike, b: TensorLike, alpha?: number): Tensor {
  return binary("add", a, scaled(b, alpha));
}
export function sub(a: TensorLike, b: TensorLike, alpha?: number): Tensor {
  return binary("sub", a, scaled(b, alpha));
}
export const mul = (a: TensorLike, b: TensorLike): Tensor => binary("mul", a, b);
/** True division: integer inputs give float32, as in PyTorch. */
export const div = (a: TensorLike, b: TensorLike): Tensor => binary("div", a, b, true);
export const pow = (a: TensorLike, b: TensorLike): Tensor => binary("pow", a, b, true);
export const maximum = (a: TensorLike, b: TensorLike): Tensor => binary("maximum", a, b);
export const minimum = (a: TensorLike, b: TensorLike): Tensor => binary("minimum", a, b);
export const eq = (a: TensorLike, b: TensorLike): Tensor => binary("eq", a, b);
export const ne = (a: TensorLike, b: TensorLike): Tensor => binary("ne", a, b);
export const lt = (a: TensorLike, b: TensorLike): Tensor => binary("lt", a, b);
export const le = (a: TensorLike, b: TensorLike): Tensor => binary("le", a, b);
export const gt = (a: TensorLike, b: TensorLike): Tensor => binary("gt", a, b);
export const ge = (a: TensorLike, b: TensorLike): Tensor => binary("ge", a, b);
export const logicalAnd = (a: Tensor, b: Tensor): Tensor => apply("logicalAnd", [a, b], {});
export const logicalOr = (a: Tensor, b: Tensor): Tensor => apply("logicalOr", [a, b], {});
export const logicalNot = (x: Tensor): Tensor => apply("logicalNot", [x], {});

export const neg = (x: Tensor): Tensor => apply("neg", [x], {});
export const abs = (x: Tensor): Tensor => apply("abs", [x], {});
export const sign = (x: Tensor): Tensor => apply("sign", [x], {});
export const exp = (x: Tensor): Tensor => unaryFloat("exp", x);
export const log = (x: Tensor): Tensor => unaryFloat("log", x);
export const sqrt = (x: Tensor): Tensor => unaryFloat("sqrt", x);
export const rsqrt = (x: Tensor): Tensor => unaryFloat("rsqrt", x);
export const reciprocal = (x: Tensor): Tensor => unaryFloat("recip", x);
export const sin = (x: Tensor): Tensor => unaryFloat("sin", x);
export const cos = (x: Tensor): Tensor => unaryFloat("cos", x);
export const tanh = (x: Tensor): Tensor => unaryFloat("tanh", x);
export const sigmoid = (x: Tensor): Tensor => unaryFloat("sigmoid", x);
export const erf = (x: Tensor): Tensor => unaryFloat("erf", x);
export const square = (x: Tensor): Tensor => mul(x, x);

/** `cond ? a : b` elementwise, with broadcasting; cond must be bool. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  if (!(cond instanceof Tensor) || cond.dtype !== "bool") {
    throw new TypeError(
      `where: condition must be a bool tensor, got ${cond instanceof Tensor ? cond.dtype : typeof cond}`,
    );
  }
  const [ta, tb] = coerce("where", [a, b]);
  return apply("where", [cond, ta!, tb!], {});
}

/** x with `value` wherever mask is true; mask broadcasts to x's shape. */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  if (mask.dtype !== "bool") throw new TypeError(`maskedFill: mask must be bool, got ${mask.dtype}`);
  // checked before the where, so the error names maskedFill rather than where
  const shape = broadcastShapes("maskedFill", mask.shape, x.shape);
  if (!shapesEqual(shape, x.shape)) {
    throw new RangeError(
      `maskedFill: mask shape ${fmt(mask.shape)} must broadcast to the input's shape ${fmt(x.shape)}`,
    );
  }
  return where(mask, scalar(value, x.dtype, x.backend), x);
}

/** Limits x to [min, max]. The gradient passes where min <= x <= max, as in PyTorch. */
export function clamp(x: Tensor, min?: number | null, max?: number | null): Tensor {
  if (min == null && max == null) throw new RangeError("clamp: at least one of min and max must be given");
  let out = x;
  if (max != null) out = where(x.gt(max), max, out);
  if (min != null) out = where(x.lt(min), min, out);
  return out;
}
