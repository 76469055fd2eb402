// Elementwise kernels are generated per op from one expression, so each gets its own monomorphic loop
// (a shared loop calling a per-op closure runs several times slower in V8). Inputs and output are
// strided views of equal shape: broadcasting arrives here as stride 0.

import type { View } from "../backend/backend.js";
import { isContiguous, numel } from "../shape.js";
import { dataOf } from "./storage.js";

type Loop = (
  shape: readonly number[],
  out: unknown,
  oS: readonly number[],
  oOff: number,
  ...ins: unknown[]
) => void;

const NAMES = ["x", "y", "z"];

function generate(arity: number, expr: string): Loop {
  const args = NAMES.slice(0, arity);
  const params = args.flatMap((n) => [`${n}A`, `${n}S`, `${n}O`]).join(", ");
  const load = (off: (n: string) => string) => args.map((n) => `const ${n} = ${n}A[${off(n)}];`).join(" ");
  const src = `
    const R = shape.length;
    let total = 1;
    for (let i = 0; i < R; i++) total *= shape[i];
    if (total === 0) return;
    if (R === 0) { ${load((n) => `${n}O`)} out[oOff] = ${expr}; return; }
    if (flat) {
      for (let i = 0; i < total; i++) { ${load((n) => `${n}O + i`)} out[oOff + i] = ${expr}; }
      return;
    }
    const last = shape[R - 1];
    const oL = oS[R - 1]; ${args.map((n) => `const ${n}L = ${n}S[R - 1];`).join(" ")}
    const outer = total / last;
    const idx = new Int32Array(R);
    let oo = oOff; ${args.map((n) => `let ${n}o = ${n}O;`).join(" ")}
    for (let t = 0; t < outer; t++) {
      for (let j = 0, o = oo${args.map((n) => `, ${n}i = ${n}o`).join("")}; j < last; j++, o += oL${args.map((n) => `, ${n}i += ${n}L`).join("")}) {
        ${load((n) => `${n}i`)} out[o] = ${expr};
      }
      for (let d = R - 2; d >= 0; d--) {
        idx[d]++; oo += oS[d]; ${args.map((n) => `${n}o += ${n}S[d];`).join(" ")}
        if (idx[d] < shape[d]) break;
        idx[d] = 0; oo -= oS[d] * shape[d]; ${args.map((n) => `${n}o -= ${n}S[d] * shape[d];`).join(" ")}
      }
    }`;
  return new Function("erf", `return function(shape, out, oS, oOff, flat, ${params}) {${src}}`)(erf) as Loop;
}

/** A kernel body computing `expr` (in terms of x, y, z) over equal-shaped strided views. */
export function mapKernel(arity: 1 | 2 | 3, expr: string): (inputs: readonly View[], out: View) => void {
  const loop = generate(arity, expr);
  return (inputs, out) => {
    const { shape } = out.layout;
    const flat =
      isContiguous(shape, out.layout.strides) &&
      inputs.every((v) => isContiguous(v.layout.shape, v.layout.strides)) &&
      numel(shape) > 0;
    const args: unknown[] = [];
    for (const v of inputs) args.push(dataOf(v), v.layout.strides, v.layout.offset);
    (loop as (...a: unknown[]) => void)(
      shape,
      dataOf(out),
      out.layout.strides,
      out.layout.offset,
      flat,
      ...args,
    );
  };
}

/**
 * erf to about 1e-15 relative: erf(x) = 2/sqrt(pi) e^(-x^2) sum_n x (2x^2)^n / (2n+1)!!, a series of
 * positive terms (no cancellation); beyond |x| = 6 erf is 1 to double precision.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return x;
  const ax = Math.abs(x);
  if (ax > 6) return Math.sign(x);
  const x2 = 2 * ax * ax;
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 200 && term > 1e-17 * sum; n++) {
    term *= x2 / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * Math.min(1, (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum);
}
