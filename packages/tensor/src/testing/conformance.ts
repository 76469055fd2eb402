// Backend conformance: runs every kernel of a backend on the same inputs as the plain TypeScript CPU kernels
// and compares the results. Inputs cover every dtype an op accepts, odd sizes (1, 3, 17, 65, 257, and
// empty), and non-contiguous views (transposed, sliced with an offset, broadcast with stride 0). Results must
// be identical, NaN matching NaN, except float32 matmul, which may sum in float32 in any order: its error
// must stay within the float32 summation bound (K + 2) 2^-23 sum_k |a_ik b_kj|. Outputs of the backend under
// test start as NaN (integers: a bit pattern) rather than zero, except for ACCUMULATING_OPS: a kernel must
// write every element of its output, which therefore skips the zero fill.
// No test framework is imported: a test calls runConformance and it throws with every mismatch.

import type { Backend, View } from "../backend/backend.js";
import { cpuKernels, createCpuBackend } from "../backend-cpu/index.js";
import { fillPoison } from "../backend-cpu/pool.js";
import { type DType, type TypedArray, typedArrayFor } from "../dtype.js";
import { shapeRules } from "../ops/shape-rules.js";
import { ACCUMULATING_OPS, type OpName } from "../ops/signatures.js";
import { contiguousStrides, fmt, numel } from "../shape.js";
import { type Case, CONFORMANCE_OPS, fill, layoutOf, OP_GROUPS, Rng } from "./conformance-cases.js";

export { CONFORMANCE_OPS, type LayoutKind } from "./conformance-cases.js";

export interface ConformanceOptions {
  /** Only these ops (default: every op). */
  ops?: readonly OpName[];
  /** Seed of the input values. */
  seed?: number;
}

export interface ConformanceReport {
  backend: string;
  /** Cases run per op. */
  cases: Partial<Record<OpName, number>>;
  total: number;
  failures: string[];
}

// ---- running ----

type AnyKernel = (inputs: View[], attrs: unknown, out: View) => void;

interface Outcome {
  data?: TypedArray;
  error?: string;
}

async function runOn(
  backend: Backend,
  kernel: AnyKernel,
  c: Case,
  values: TypedArray[],
  out: { shape: number[]; dtype: DType },
  poisoned: boolean,
): Promise<Outcome> {
  const views: View[] = c.inputs.map((spec, i) => {
    const { strides, offset } = layoutOf(spec);
    return {
      storage: backend.fromArray(values[i]!, spec.dtype),
      dtype: spec.dtype,
      layout: { shape: spec.shape, strides, offset },
    };
  });
  const outView: View = {
    storage: poisoned
      ? backend.fromArray(poisonedArray(out.dtype, numel(out.shape)), out.dtype)
      : backend.alloc(out.dtype, numel(out.shape)),
    dtype: out.dtype,
    layout: { shape: out.shape, strides: contiguousStrides(out.shape), offset: 0 },
  };
  try {
    kernel(views, c.attrs, outView);
    const data = backend.readSync ? backend.readSync(outView) : await backend.read(outView);
    return { data };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  } finally {
    for (const v of views) backend.free(v.storage);
    backend.free(outView.storage);
  }
}

function poisonedArray(dtype: DType, n: number): TypedArray {
  const a = typedArrayFor(dtype, n);
  fillPoison(a);
  return a;
}

function describeCase(c: Case): string {
  const ins = c.inputs.map((s) => `${s.dtype}${fmt(s.shape)}:${s.kind}`).join(", ");
  return `${c.op}(${ins}) ${JSON.stringify(c.attrs)}`;
}

/** |c - ref| <= (K + 2) 2^-23 sum_k |a_ik b_kj| for float32 matmul; identical values for everything else. */
function compare(c: Case, got: TypedArray, want: TypedArray, bound: TypedArray | null): string | null {
  if (got.length !== want.length) return `length ${got.length} vs ${want.length}`;
  const K = c.op === "matmul" ? c.inputs[0]!.shape.at(-1)! : 0;
  const eps = (K + 2) * 2 ** -23;
  for (let i = 0; i < got.length; i++) {
    const x = got[i]!;
    const y = want[i]!;
    if (x === y || (Number.isNaN(x) && Number.isNaN(y))) continue;
    if (bound && Math.abs(x - y) <= eps * bound[i]!) continue;
    return `element ${i}: ${x} vs reference ${y}${bound ? ` (allowed ${eps * bound[i]!})` : ""}`;
  }
  return null;
}

/**
 * Runs every op's cases on `makeBackend()` and on a fresh plain TypeScript CPU backend, and throws listing
 * every mismatch (values, or one throwing where the other does not). Returns the case counts.
 */
export async function runConformance(
  name: string,
  makeBackend: () => Backend | Promise<Backend>,
  options: ConformanceOptions = {},
): Promise<ConformanceReport> {
  const backend = await makeBackend();
  const reference = createCpuBackend("conformance-reference");
  const rng = new Rng(options.seed ?? 1234);
  const report: ConformanceReport = { backend: name, cases: {}, total: 0, failures: [] };
  for (const op of options.ops ?? CONFORMANCE_OPS) {
    const kernel = (backend.kernels[op] ?? cpuKernels[op]) as AnyKernel;
    const refKernel = cpuKernels[op] as AnyKernel;
    for (const c of OP_GROUPS[op](rng)) {
      let meta: { shape: number[]; dtype: DType };
      try {
        const rule = shapeRules[op] as (m: unknown[], a: unknown) => { shape: number[]; dtype: DType };
        meta = rule(c.inputs, c.attrs);
      } catch {
        continue; // an input combination the op rejects before any kernel runs
      }
      const values = c.inputs.map((spec) => fill(spec, layoutOf(spec).storageSize, rng));
      const want = await runOn(reference, refKernel, c, values, meta, false);
      const got = await runOn(backend, kernel, c, values, meta, !ACCUMULATING_OPS.has(op));
      report.total++;
      report.cases[op] = (report.cases[op] ?? 0) + 1;
      let problem: string | null = null;
      if (want.error !== undefined || got.error !== undefined) {
        if ((want.error === undefined) !== (got.error === undefined))
          problem = `reference ${want.error ?? "succeeded"}; backend ${got.error ?? "succeeded"}`;
      } else {
        let bound: TypedArray | null = null;
        if (op === "matmul" && meta.dtype === "float32") {
          const abs = values.map((v) => v.map(Math.abs) as TypedArray);
          bound = (await runOn(reference, refKernel, c, abs, meta, false)).data ?? null;
        }
        problem = compare(c, got.data!, want.data!, bound);
      }
      if (problem !== null) report.failures.push(`${name}: ${describeCase(c)}: ${problem}`);
    }
  }
  if (report.failures.length > 0) {
    const shown = report.failures.slice(0, 20).join("\n  ");
    throw new Error(
      `conformance: ${report.failures.length} of ${report.total} cases differ from the CPU reference\n  ${shown}`,
    );
  }
  return report;
}
