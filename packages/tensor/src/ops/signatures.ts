// The list of primitive ops, defined once. Each entry gives the op's inputs and attributes; the shape
// rules (shape-rules.ts), gradient rules (autograd/vjp-rules.ts) and each backend's kernels are mapped
// types over these names, so forgetting an op in any table is a compile error (style guide 3.4).

import type { View } from "../backend/backend.js";
import type { DType } from "../dtype.js";

type U = { in: ["x"]; attrs: Record<string, never> };
type B = { in: ["a", "b"]; attrs: Record<string, never> };
type R = { in: ["x"]; attrs: { dims: number[] } };

export interface OpSignatures {
  // elementwise, one input
  neg: U;
  exp: U;
  log: U;
  sqrt: U;
  rsqrt: U;
  recip: U;
  sin: U;
  cos: U;
  tanh: U;
  sigmoid: U;
  erf: U;
  abs: U;
  sign: U;
  logicalNot: U;
  cast: { in: ["x"]; attrs: { dtype: DType } };
  // elementwise, two inputs (broadcast by the frontend before the kernel sees them)
  add: B;
  sub: B;
  mul: B;
  div: B;
  pow: B;
  maximum: B;
  minimum: B;
  eq: B;
  ne: B;
  lt: B;
  le: B;
  gt: B;
  ge: B;
  logicalAnd: B;
  logicalOr: B;
  where: { in: ["cond", "a", "b"]; attrs: Record<string, never> };
  // reductions over `dims`; the kernel writes the keepdim shape, the frontend squeezes
  sum: R;
  max: R;
  min: R;
  argmax: { in: ["x"]; attrs: { dim: number } };
  argmin: { in: ["x"]; attrs: { dim: number } };
  // copies: a strided view into a fresh row-major buffer
  contiguous: U;
  // contraction: [..., M, K] x [..., K, N] with equal batch dims (the frontend broadcasts them)
  matmul: B;
  // indexing (torch.gather / scatter_add / index_select / index_add semantics; index is int32)
  gather: { in: ["x", "index"]; attrs: { dim: number } };
  scatterAdd: { in: ["index", "src"]; attrs: { dim: number; shape: number[] } };
  indexSelect: { in: ["x", "index"]; attrs: { dim: number } };
  indexAdd: { in: ["index", "src"]; attrs: { dim: number; size: number } };
}

/**
 * Ops whose kernels add into their output, which must therefore come zero-filled. Every other op's kernels
 * write each element of their output, on every backend, so those outputs skip the zero fill (the
 * TSGRAD_POISON_UNINIT=1 conformance test holds every kernel to it).
 */
export const ACCUMULATING_OPS: ReadonlySet<OpName> = new Set<OpName>(["scatterAdd", "indexAdd"]);

/** Ops that need no kernel: they only change the layout, or assemble their output with `contiguous`. */
export interface ViewOpSignatures {
  reshape: { in: ["x"]; attrs: { shape: number[] } };
  permute: { in: ["x"]; attrs: { dims: number[] } };
  expand: { in: ["x"]; attrs: { shape: number[] } };
  narrow: { in: ["x"]; attrs: { dim: number; start: number; length: number } };
}

export type OpName = keyof OpSignatures;
export type ViewOpName = keyof ViewOpSignatures;
export type Attrs<K extends OpName> = OpSignatures[K]["attrs"];
export type ViewAttrs<K extends ViewOpName> = ViewOpSignatures[K]["attrs"];
export type Arity<K extends OpName> = OpSignatures[K]["in"]["length"];

/** A tuple as long as T with every element V (homomorphic over a tuple type parameter). */
export type TupleOf<T extends readonly unknown[], V> = { [I in keyof T]: V };
/** Input views in signature order: a tuple as long as the op's `in` list. */
export type InputViews<K extends OpName> = TupleOf<OpSignatures[K]["in"], View>;

/** A kernel writes into `out`, a zero-filled row-major view the frontend allocated with the right shape. */
export type Kernel<K extends OpName> = (inputs: InputViews<K>, attrs: Attrs<K>, out: View) => void;
export type KernelTable = { [K in OpName]: Kernel<K> };
