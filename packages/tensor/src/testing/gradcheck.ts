// Autograd against central finite differences in float64 (style guide 6.2). Non-scalar outputs are
// reduced with a fixed random projection, so fn may return any shape.

import { noGrad } from "../autograd/grad-mode.js";
import { fromTypedArray, randn } from "../ops/creation.js";
import { fmt } from "../shape.js";
import { Tensor } from "../tensor.js";

export interface GradcheckOptions {
  /** Finite-difference step. */
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Inputs with at most this many elements are checked coordinate by coordinate; larger ones along random directions. */
  maxPerCoordinate?: number;
  /** Random directions per large input. */
  directions?: number;
}

export interface GradcheckResult {
  ok: boolean;
  maxAbsError: number;
  maxRelError: number;
  /** The worst comparison: which input, which element (-1 for a random direction), both values. */
  worst: { input: number; index: number; analytic: number; numeric: number } | null;
}

const DEFAULTS = { eps: 1e-6, atol: 1e-6, rtol: 1e-5, maxPerCoordinate: 64, directions: 3 };

function toLeaf(t: Tensor): Tensor {
  const data = Float64Array.from(t.dataSync());
  const leaf = fromTypedArray(data, t.shape, "float64");
  leaf.requiresGrad = true;
  return leaf;
}

/**
 * Compares the gradients of `fn` at `inputs` from backward() with central differences, in float64.
 * Inputs are copied to float64 leaves; `fn` must be deterministic.
 * @example
 * const r = gradcheck((a, b) => a.mul(b).sum(), [randn([3]), randn([3])]);
 * expect(r.ok).toBe(true);
 */
export function gradcheck(
  fn: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  options: GradcheckOptions = {},
): GradcheckResult {
  const o = { ...DEFAULTS, ...options };
  const leaves = inputs.map(toLeaf);
  const y0 = fn(...leaves);
  if (!(y0 instanceof Tensor)) throw new TypeError("gradcheck: fn must return a Tensor");
  // A fixed random projection turns any output into a scalar: L = sum(y * v).
  const v = noGrad(() => randn(y0.shape, { dtype: "float64" }));
  const loss = (xs: Tensor[]) =>
    fn(...xs)
      .to("float64")
      .mul(v)
      .sum();
  const L = y0.to("float64").mul(v).sum();
  if (!L.requiresGrad)
    throw new Error("gradcheck: the output does not depend on any input through differentiable ops");
  L.backward();
  const values = leaves.map((l) => l.dataSync() as Float64Array);
  const evalAt = (k: number, data: Float64Array) =>
    noGrad(() =>
      loss(
        leaves.map((l, i) => (i === k ? fromTypedArray(data, l.shape, "float64") : l.detach())),
      ).itemSync(),
    );
  const result: GradcheckResult = { ok: true, maxAbsError: 0, maxRelError: 0, worst: null };
  let worstExcess = Number.NEGATIVE_INFINITY;
  const compare = (input: number, index: number, analytic: number, numeric: number) => {
    const abs = Math.abs(analytic - numeric);
    const rel = abs / Math.max(Math.abs(numeric), Number.MIN_VALUE);
    result.maxAbsError = Math.max(result.maxAbsError, abs);
    result.maxRelError = Math.max(result.maxRelError, Number.isFinite(rel) ? rel : 0);
    const excess = abs - (o.atol + o.rtol * Math.abs(numeric));
    if (excess > worstExcess || Number.isNaN(abs)) {
      worstExcess = Number.isNaN(abs) ? Number.POSITIVE_INFINITY : excess;
      result.worst = { input, index, analytic, numeric };
    }
    if (!(excess <= 0)) result.ok = false;
  };
  leaves.forEach((leaf, k) => {
    const x = values[k]!;
    const g = leaf.grad ? (leaf.grad.dataSync() as Float64Array) : new Float64Array(x.length);
    if (x.length <= o.maxPerCoordinate) {
      for (let i = 0; i < x.length; i++) {
        const plus = Float64Array.from(x);
        const minus = Float64Array.from(x);
        plus[i]! += o.eps;
        minus[i]! -= o.eps;
        compare(k, i, g[i]!, (evalAt(k, plus) - evalAt(k, minus)) / (2 * o.eps));
      }
      return;
    }
    for (let d = 0; d < o.directions; d++) {
      const dir = noGrad(() => randn([x.length], { dtype: "float64" })).dataSync() as Float64Array;
      let norm = 0;
      for (const u of dir) norm += u * u;
      norm = Math.sqrt(norm);
      let analytic = 0;
      const plus = Float64Array.from(x);
      const minus = Float64Array.from(x);
      for (let i = 0; i < x.length; i++) {
        const u = dir[i]! / norm;
        analytic += g[i]! * u;
        plus[i]! += o.eps * u;
        minus[i]! -= o.eps * u;
      }
      compare(k, -1, analytic, (evalAt(k, plus) - evalAt(k, minus)) / (2 * o.eps));
    }
  });
  return result;
}

/** gradcheck that throws a readable error naming the input, the element, and both values. */
export function assertGradients(
  fn: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  options?: GradcheckOptions,
): void {
  const r = gradcheck(fn, inputs, options);
  if (!r.ok) {
    const w = r.worst!;
    const where = w.index < 0 ? "along a random direction" : `at element ${w.index}`;
    throw new Error(
      `gradient mismatch for input ${w.input} (shape ${fmt(inputs[w.input]!.shape)}) ${where}: autograd ${w.analytic}, finite differences ${w.numeric} (max abs error ${r.maxAbsError.toExponential(3)}, max rel error ${r.maxRelError.toExponential(3)})`,
    );
  }
}
