// The gradient rule of every primitive, as vector-Jacobian products built from ops, so they run on any
// backend and can themselves be differentiated. Rules never reduce over broadcast axes: the engine does.
// Ops without a gradient say so explicitly with NON_DIFFERENTIABLE; a missing entry is a type error.

import * as F from "../ops/index.js";
import type {
  Attrs,
  OpName,
  OpSignatures,
  TupleOf,
  ViewAttrs,
  ViewOpName,
  ViewOpSignatures,
} from "../ops/signatures.js";
import type { Tensor } from "../tensor.js";

export const NON_DIFFERENTIABLE = Symbol("non-differentiable");

type InputTensors<S extends { in: readonly string[] }> = TupleOf<S["in"], Tensor>;
export interface VjpContext<In, A> {
  inputs: In;
  out: Tensor;
  attrs: A;
  /** needs[i]: whether input i wants a gradient; skip the work otherwise (frozen weights). */
  needs: readonly boolean[];
}
export type VjpRule<K extends OpName> = (
  dy: Tensor,
  ctx: VjpContext<InputTensors<OpSignatures[K]>, Attrs<K>>,
) => (Tensor | null)[];
export type ViewVjpRule<K extends ViewOpName> = (
  dy: Tensor,
  ctx: VjpContext<InputTensors<ViewOpSignatures[K]>, ViewAttrs<K>>,
) => (Tensor | null)[];

/** d max(a,b)/da is 1 where a wins, 0 where b wins, 1/2 on ties (PyTorch's convention). */
function tieShare(win: Tensor, tie: Tensor, like: Tensor): Tensor {
  return F.where(win, 1, F.where(tie, 0.5, 0)).to(like.dtype);
}

export const vjpRules: { [K in OpName]: VjpRule<K> | typeof NON_DIFFERENTIABLE } = {
  neg: (dy) => [dy.neg()],
  exp: (dy, { out }) => [dy.mul(out)], // d e^x = e^x
  log: (dy, { inputs: [x] }) => [dy.div(x)], // d ln x = 1/x
  sqrt: (dy, { out }) => [dy.div(out.mul(2))], // d sqrt(x) = 1/(2 sqrt(x))
  rsqrt: (dy, { out }) => [dy.mul(out.pow(3)).mul(-0.5)], // d x^(-1/2) = -1/2 x^(-3/2)
  recip: (dy, { out }) => [dy.mul(out).mul(out).neg()], // d(1/x) = -1/x^2
  sin: (dy, { inputs: [x] }) => [dy.mul(x.cos())],
  cos: (dy, { inputs: [x] }) => [dy.mul(x.sin()).neg()],
  tanh: (dy, { out }) => [dy.mul(F.sub(1, out.mul(out)))], // d tanh = 1 - tanh^2
  sigmoid: (dy, { out }) => [dy.mul(out.mul(F.sub(1, out)))], // d s = s(1 - s)
  erf: (dy, { inputs: [x] }) => [
    dy.mul(
      x
        .mul(x)
        .neg()
        .exp()
        .mul(2 / Math.sqrt(Math.PI)),
    ),
  ], // d erf = 2/sqrt(pi) e^(-x^2)
  abs: (dy, { inputs: [x] }) => [dy.mul(x.sign())], // NOTE: 0 at x = 0, as in PyTorch
  sign: NON_DIFFERENTIABLE,
  logicalNot: NON_DIFFERENTIABLE,
  cast: (dy) => [dy], // the engine casts the gradient back to the input's dtype
  add: (dy) => [dy, dy],
  sub: (dy) => [dy, dy.neg()],
  mul: (dy, { inputs: [a, b], needs }) => [needs[0] ? dy.mul(b) : null, needs[1] ? dy.mul(a) : null],
  div: (dy, { inputs: [, b], out, needs }) => [
    needs[0] ? dy.div(b) : null, // d(a/b)/da = 1/b
    needs[1] ? dy.mul(out).div(b).neg() : null, // d(a/b)/db = -a/b^2 = -out/b
  ],
  pow: (dy, { inputs: [a, b], out, needs }) => [
    // d a^b/da = b a^(b-1), taken as 0 where b == 0 (PyTorch's pow_backward)
    needs[0] ? F.where(b.eq(0), 0, dy.mul(b).mul(a.pow(b.sub(1)))) : null,
    // d a^b/db = a^b ln a, taken as 0 where a == 0 and b >= 0 (PyTorch's pow_backward_exponent)
    needs[1] ? F.where(a.eq(0).logicalAnd(b.ge(0)), 0, dy.mul(out).mul(a.log())) : null,
  ],
  maximum: (dy, { inputs: [a, b] }) => {
    const share = tieShare(a.gt(b), a.eq(b), dy);
    return [dy.mul(share), dy.mul(F.sub(1, share))];
  },
  minimum: (dy, { inputs: [a, b] }) => {
    const share = tieShare(a.lt(b), a.eq(b), dy);
    return [dy.mul(share), dy.mul(F.sub(1, share))];
  },
  eq: NON_DIFFERENTIABLE,
  ne: NON_DIFFERENTIABLE,
  lt: NON_DIFFERENTIABLE,
  le: NON_DIFFERENTIABLE,
  gt: NON_DIFFERENTIABLE,
  ge: NON_DIFFERENTIABLE,
  logicalAnd: NON_DIFFERENTIABLE,
  logicalOr: NON_DIFFERENTIABLE,
  where: (dy, { inputs: [cond], needs }) => [
    null,
    needs[1] ? F.where(cond, dy, 0) : null,
    needs[2] ? F.where(cond, 0, dy) : null,
  ],
  // The kernel keeps reduced dims as size 1, so dy broadcasts straight back.
  sum: (dy, { inputs: [x] }) => [dy.expand(x.shape)],
  // Ties share the gradient equally, as torch.amax does.
  max: (dy, { inputs: [x], out, attrs }) => [spreadOverTies(dy, x, out, attrs.dims)],
  min: (dy, { inputs: [x], out, attrs }) => [spreadOverTies(dy, x, out, attrs.dims)],
  argmax: NON_DIFFERENTIABLE,
  argmin: NON_DIFFERENTIABLE,
  contiguous: (dy) => [dy],
  // dL/dA = dY B^T and dL/dB = A^T dY; for an input stored transposed (a weight W used as W.mT) the
  // gradient is computed transposed, (B dY^T)^T or (dY^T A)^T, so it arrives in the input's own layout and
  // reaches W's .grad without a transposing copy
  matmul: (dy, { inputs: [a, b], needs }) => [
    needs[0] ? (storedTransposed(a) ? b.matmul(dy.mT).mT : dy.matmul(b.mT)) : null,
    needs[1] ? (storedTransposed(b) ? dy.mT.matmul(a).mT : a.mT.matmul(dy)) : null,
  ],
  gather: (dy, { inputs: [x, index], attrs }) => [F.scatterAdd(index, dy, attrs.dim, x.shape), null],
  scatterAdd: (dy, { inputs: [index], attrs }) => [null, F.gather(dy, attrs.dim, index)],
  indexSelect: (dy, { inputs: [x, index], attrs }) => [
    F.indexAdd(index, dy, attrs.dim, x.shape[attrs.dim]!),
    null,
  ],
  indexAdd: (dy, { inputs: [index], attrs }) => [null, F.indexSelect(dy, attrs.dim, index)],
};

/** A matrix (or batch of them) laid out column-major: the transpose of a contiguous tensor. */
function storedTransposed(t: Tensor): boolean {
  const r = t.ndim;
  return (
    r >= 2 &&
    t.shape[r - 1]! > 1 &&
    t.shape[r - 2]! > 1 &&
    t.strides[r - 2] === 1 &&
    t.strides[r - 1] === t.shape[r - 2]
  );
}

function spreadOverTies(dy: Tensor, x: Tensor, out: Tensor, dims: number[]): Tensor {
  const hit = x.eq(out.expand(x.shape));
  const count = hit.to(x.dtype).sum(dims, true);
  return F.where(hit, dy.div(count).expand(x.shape), 0);
}

export const viewVjpRules: { [K in ViewOpName]: ViewVjpRule<K> } = {
  reshape: (dy, { inputs: [x] }) => [dy.reshape(x.shape)],
  permute: (dy, { attrs: { dims } }) => {
    const inverse = new Array<number>(dims.length);
    dims.forEach((d, i) => {
      inverse[d] = i;
    });
    return [dy.permute(inverse)];
  },
  expand: (dy) => [dy], // the engine sums it back to the input's shape
  narrow: (dy, { inputs: [x], attrs: { dim, start } }) => [F.padNarrow(dy, dim, start, x.shape[dim]!)],
};
