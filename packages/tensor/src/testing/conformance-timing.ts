// Times every conformance case on a backend and on the plain TypeScript CPU backend, kernel call against
// kernel call on the same inputs, so a backend can be checked to be nowhere slower than the reference it
// replaces (benchmarks/ops.ts reports it). Timing, not a test: run it on a quiet machine.

import type { Backend, View } from "../backend/backend.js";
import { cpuKernels, createCpuBackend } from "../backend-cpu/index.js";
import type { DType } from "../dtype.js";
import { shapeRules } from "../ops/shape-rules.js";
import type { OpName } from "../ops/signatures.js";
import { contiguousStrides, fmt, numel } from "../shape.js";
import { type Case, CONFORMANCE_OPS, fill, layoutOf, OP_GROUPS, Rng } from "./conformance-cases.js";

export interface CaseTiming {
  op: OpName;
  /** The inputs: dtype, shape and layout of each. */
  what: string;
  /** Microseconds per kernel call (the best of several batches): the backend, then the TS reference. */
  backendUs: number;
  referenceUs: number;
  /**
   * The lowest over the passes of backend time / reference time within a pass. A kernel that is slower
   * stays slower in every pass; timer and JIT noise on a call of a microsecond (which moves the ratio of
   * one kernel timed against itself by +-30%) rarely points the same way in all of them.
   */
  minRatio: number;
}

type AnyKernel = (inputs: View[], attrs: unknown, out: View) => void;

/** Calls per batch so that one batch of `run` lasts at least `minMs`. */
function callsFor(run: () => void, minMs: number): number {
  let n = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) run();
    if (performance.now() - t0 >= minMs) return n;
    n *= 2;
  }
}

/**
 * Best microseconds per call of `a` and of `b`, their batches interleaved (a, b, b, a, ...) so that load
 * from elsewhere, which comes and goes over time, weighs on both alike.
 */
function bestUsPair(a: () => void, b: () => void, minMs: number, batches: number): [number, number] {
  const na = callsFor(a, minMs);
  const nb = callsFor(b, minMs);
  const best: [number, number] = [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
  const order = [
    [0, a, na],
    [1, b, nb],
  ] as const;
  for (let k = 0; k < batches; k++) {
    // alternate which goes first, so neither always runs right after the other's code and data
    for (const [i, run, n] of k % 2 === 0 ? order : [order[1], order[0]]) {
      const t0 = performance.now();
      for (let j = 0; j < n; j++) run();
      best[i] = Math.min(best[i], ((performance.now() - t0) * 1e3) / n);
    }
  }
  return best;
}

/**
 * Kernel call timings of every conformance case (or of `ops`) on `backend` and on the TS reference, for the
 * ops where the backend has a kernel of its own.
 */
export function timeConformance(
  backend: Backend,
  options: { ops?: readonly OpName[]; minMs?: number; batches?: number; seed?: number; passes?: number } = {},
): CaseTiming[] {
  const { passes = 3 } = options;
  const reference = createCpuBackend("timing-reference");
  // Every pass times every case again (same seed, same inputs) and each keeps its best: the first pass
  // meets kernels that the JIT has not settled yet for that op's mix of dtypes and layouts.
  const best = new Map<string, CaseTiming>();
  for (let pass = 0; pass < passes; pass++) {
    for (const t of timePass(backend, reference, options)) {
      const key = `${t.op} ${t.what}`;
      const prev = best.get(key);
      best.set(key, {
        ...t,
        backendUs: Math.min(t.backendUs, prev?.backendUs ?? Number.POSITIVE_INFINITY),
        referenceUs: Math.min(t.referenceUs, prev?.referenceUs ?? Number.POSITIVE_INFINITY),
        minRatio: Math.min(t.minRatio, prev?.minRatio ?? Number.POSITIVE_INFINITY),
      });
    }
  }
  return [...best.values()];
}

function timePass(
  backend: Backend,
  reference: Backend,
  options: { ops?: readonly OpName[]; minMs?: number; batches?: number; seed?: number },
): CaseTiming[] {
  const { minMs = 2, batches = 7 } = options;
  const rng = new Rng(options.seed ?? 1234);
  const out: CaseTiming[] = [];
  for (const op of options.ops ?? CONFORMANCE_OPS) {
    for (const c of OP_GROUPS[op](rng)) {
      let meta: { shape: number[]; dtype: DType };
      try {
        meta = (shapeRules[op] as (m: unknown[], a: unknown) => { shape: number[]; dtype: DType })(
          c.inputs,
          c.attrs,
        );
      } catch {
        continue;
      }
      const values = c.inputs.map((spec) => fill(spec, layoutOf(spec).storageSize, rng));
      const kernel = (backend.kernels[op] ?? cpuKernels[op]) as AnyKernel;
      const refKernel = cpuKernels[op] as AnyKernel;
      // a backend running the reference's own kernel for this op cannot differ from it but by noise
      if (kernel === refKernel) continue;
      const setup = (b: Backend, k: AnyKernel) => {
        const views = caseViews(b, c, values);
        const o: View = {
          storage: b.alloc(meta.dtype, numel(meta.shape)),
          dtype: meta.dtype,
          layout: { shape: meta.shape, strides: contiguousStrides(meta.shape), offset: 0 },
        };
        return {
          run: () => k(views, c.attrs, o),
          free: () => {
            for (const v of [...views, o]) b.free(v.storage);
          },
        };
      };
      const [mine, ref] = [setup(backend, kernel), setup(reference, refKernel)];
      let us: [number, number];
      try {
        mine.run();
        ref.run();
        us = bestUsPair(mine.run, ref.run, minMs, batches);
      } catch {
        continue; // an input the op rejects (an index out of range)
      } finally {
        mine.free();
        ref.free();
      }
      const what = c.inputs.map((s) => `${s.dtype}${fmt(s.shape)}:${s.kind}`).join(", ");
      out.push({
        op,
        what: `${what} ${JSON.stringify(c.attrs)}`,
        backendUs: us[0],
        referenceUs: us[1],
        minRatio: us[0] / us[1],
      });
    }
  }
  return out;
}

function caseViews(b: Backend, c: Case, values: ReturnType<typeof fill>[]): View[] {
  return c.inputs.map((spec, i) => {
    const { strides, offset } = layoutOf(spec);
    return {
      storage: b.fromArray(values[i]!, spec.dtype),
      dtype: spec.dtype,
      layout: { shape: spec.shape, strides, offset },
    };
  });
}
