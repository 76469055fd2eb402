// The wasm backend's fused kernels: the TypeScript ones (they run on the same typed-array storage), with
// float32 kernels in WebAssembly SIMD above a size threshold for every op: softmax, logSoftmax,
// cross-entropy and SwiGLU on the fast exp (fused-simd.ts), RMSNorm and RoPE (fused-norm.ts), forward and
// backward, the attention's masked softmax and the AdamW update (fused-attn.ts). Operands outside the
// wasm memory ("js" storage) are copied in and results copied out; even so the kernels are 3-8x faster
// than the TypeScript ones at the LoRA training step's shapes (AdamW ~2.7x). With more than one thread,
// the largest ones split their rows over the backend's worker threads (fused-threads.ts).

import type { View } from "../backend/backend.js";
import { cpuFusedKernels } from "../backend-cpu/kernels-fused.js";
import { dataOf } from "../backend-cpu/storage.js";
import type { FusedKernel, FusedKernelTable, FusedName } from "../fused/signatures.js";
import { fusedModuleBytes } from "./fused-simd.js";
import { DEFAULT_MIN_FUSED_THREADED, FusedRunner, SPLIT_FUNCS, type SplitFunc } from "./fused-threads.js";
import { MEMORY_LIMITS } from "./gemm.js";
import { type Heap, type WasmApi, wasmApi } from "./heap.js";
import { type KernelPool, PoolHolder } from "./kernel-pool.js";
import { relaxedSimdAvailable } from "./relaxed.js";
import { type Stage, staged } from "./stage.js";

export interface FusedContext {
  heap: Heap;
  /** Whether a view's storage lies in this backend's memory (else it must be staged in). */
  inHeap: (v: View) => boolean;
  /** Smallest tensor (elements of the largest operand) sent to WebAssembly; default DEFAULT_MIN_FUSED. */
  minSize?: number;
  /** Threads to split big kernels over, the calling thread included (read at each call); default 1. */
  threads?: () => number;
  /** Smallest work (elements) split over threads; default DEFAULT_MIN_FUSED_THREADED. */
  minThreaded?: number;
  /**
   * The backend's worker pool, whose functions from `poolOffset` on are SPLIT_FUNCS of fusedModule(); without
   * it the table starts a pool of its own for `threads`.
   */
  pool?: () => KernelPool | null;
  poolOffset?: number;
}

/** Below this many elements the TypeScript kernels are as fast (measured on the 2-core Zen 5 dev machine). */
export const DEFAULT_MIN_FUSED = 512;

/** How many fused calls ran in WebAssembly and on the TypeScript kernels, per kernel table. */
export interface WasmFusedCounters {
  wasm: number;
  ts: number;
  /** Of the wasm calls, those split over worker threads. */
  readonly threaded: number;
  /** Starts the fused kernels' worker threads now (else at the first big call); resolves when ready. */
  start(): Promise<boolean>;
}
const countersOf = new WeakMap<object, WasmFusedCounters>();
export function wasmFusedCounters(table: object): WasmFusedCounters | undefined {
  return countersOf.get(table);
}

let compiled: object | null = null;

/** The compiled fused-kernel module (compiled once per process; with FMA where relaxed SIMD is there). */
export function fusedModule(api: WasmApi): object {
  compiled ??= new api.Module(fusedModuleBytes(MEMORY_LIMITS, relaxedSimdAvailable(api)));
  return compiled;
}

type Fn = (...args: number[]) => void;

/** Rows and row length of a contiguous view over its last dim, and its element count. */
function rowsOf(v: View): [number, number, number] {
  const s = v.layout.shape;
  const C = s.length === 0 ? 1 : s[s.length - 1]!;
  let n = 1;
  for (const d of s) n *= d;
  return [C === 0 ? 0 : n / C, C, n];
}

function checkTarget(t: number, N: number, C: number, ignore: number, n: number): void {
  if (t !== ignore && !(t >= 0 && t < C))
    throw new RangeError(
      `crossEntropy: every target must be in [0, ${C}) or equal ignore_index ${ignore} (logits [${N}, ${C}]); target[${n}] is ${t}`,
    );
}

export function wasmFusedKernels(ctx: FusedContext): FusedKernelTable {
  const api = wasmApi();
  if (!api) return { ...cpuFusedKernels };
  const module = fusedModule(api);
  const ex = new api.Instance(module, { env: { memory: ctx.heap.memory } }).exports as Record<string, Fn>;
  const min = ctx.minSize ?? DEFAULT_MIN_FUSED;
  const own = ctx.pool
    ? null
    : new PoolHolder(ctx.heap, [{ module, names: SPLIT_FUNCS }], ctx.threads ?? (() => 1));
  const pool = ctx.pool ?? (() => own!.get());
  const run = new FusedRunner(
    ex,
    ctx.heap,
    pool,
    ctx.pool ? (ctx.poolOffset ?? 0) : 0,
    ctx.minThreaded ?? DEFAULT_MIN_FUSED_THREADED,
  );
  const counters: WasmFusedCounters = {
    wasm: 0,
    ts: 0,
    get threaded() {
      return run.threaded;
    },
    start: () => {
      const p = pool();
      return p ? p.whenReady() : Promise.resolve(false);
    },
  };

  /** Runs `body` with a Stage when x is float32 and big enough, else the TypeScript kernel. */
  /** `scale`: the threshold's multiple for this kernel (RoPE wins from about twice the others' size). */
  const wrap = <K extends FusedName>(
    name: K,
    body: (st: Stage, ...a: Parameters<FusedKernel<K>>) => void,
    scale = 1,
  ) =>
    ((inputs, attrs, outs) => {
      const x = inputs[name === "crossEntropyBackward" ? 1 : 0]! as View;
      const [, C, n] = rowsOf(x);
      if (x.dtype !== "float32" || n < min * scale || C === 0) {
        counters.ts++;
        (cpuFusedKernels[name] as FusedKernel<K>)(inputs, attrs, outs);
        return;
      }
      counters.wasm++;
      staged(ctx.heap, (st) => body(st, inputs, attrs, outs), ctx.inHeap);
    }) as FusedKernel<K>;

  const softmaxLike =
    (fn: SplitFunc) =>
    (st: Stage, [xv]: readonly View[], _: unknown, [yv]: readonly View[]) => {
      const [R, C, n] = rowsOf(xv!);
      const x = st.in(xv!, n);
      const o = st.out(yv!, n);
      run.rows(fn, R, n, (r0, nr) => [nr, C, x + 4 * C * r0, o + 4 * C * r0]);
    };
  const backLike =
    (fn: SplitFunc) =>
    (st: Stage, [dyv, yv]: readonly View[], _: unknown, [dxv]: readonly View[]) => {
      const [R, C, n] = rowsOf(yv!);
      const dy = st.in(dyv!, n);
      const y = st.in(yv!, n);
      const o = st.out(dxv!, n);
      run.rows(fn, R, n, (r0, nr) => [nr, C, dy + 4 * C * r0, y + 4 * C * r0, o + 4 * C * r0]);
    };

  const table: FusedKernelTable = {
    ...cpuFusedKernels,
    softmax: wrap("softmax", softmaxLike("softmax")),
    logSoftmax: wrap("logSoftmax", softmaxLike("log_softmax")),
    softmaxBackward: wrap("softmaxBackward", backLike("softmax_backward")),
    logSoftmaxBackward: wrap("logSoftmaxBackward", backLike("log_softmax_backward")),
    swiglu: wrap("swiglu", (st, [gv, uv], _, [yv]) => {
      const [, , n] = rowsOf(gv);
      const g = st.in(gv, n);
      const u = st.in(uv, n);
      const o = st.out(yv, n);
      run.rows("swiglu", n, n, (i, m) => [m, g + 4 * i, u + 4 * i, o + 4 * i], 16);
    }),
    swigluBackward: wrap("swigluBackward", (st, [dyv, gv, uv], _, [dgv, duv]) => {
      const [, , n] = rowsOf(gv);
      const dy = st.in(dyv, n);
      const g = st.in(gv, n);
      const u = st.in(uv, n);
      const [dg, du] = [st.out(dgv, n), st.out(duv, n)];
      const at = (p: number, i: number) => p + 4 * i;
      run.rows(
        "swiglu_backward",
        n,
        n,
        (i, m) => [m, at(dy, i), at(g, i), at(u, i), at(dg, i), at(du, i)],
        16,
      );
    }),
    crossEntropy: wrap("crossEntropy", (st, [lv, tv], { ignore_index, label_smoothing: ls }, [nv, sv]) => {
      const [N, C, n] = rowsOf(lv);
      const t = dataOf(tv);
      const to = tv.layout.offset;
      for (let r = 0; r < N; r++) checkTarget(t[to + r]!, N, C, ignore_index, r);
      const x = st.in(lv, n);
      const o = st.alloc(16 * N);
      run.rows("lse_rows", N, n, (r0, nr) => [nr, C, x + 4 * C * r0, o + 16 * r0, ls > 0 ? 1 : 0]);
      const rows = new Float64Array(ctx.heap.buffer, o, 2 * N);
      const [xs, nll, lse] = [dataOf(lv), dataOf(nv), dataOf(sv)];
      const lo = lv.layout.offset;
      for (let r = 0; r < N; r++) {
        const l = rows[2 * r]!;
        lse[r] = l;
        const k = t[to + r]!;
        if (k === ignore_index) {
          nll[r] = 0;
          continue;
        }
        // -log p[k] mixed with the uniform target: (1 - ls) (lse - x[k]) + ls (lse - mean x)
        nll[r] = (1 - ls) * (l - xs[lo + r * C + k]!) + (ls > 0 ? ls * (l - rows[2 * r + 1]! / C) : 0);
      }
    }),
    crossEntropyBackward: wrap(
      "crossEntropyBackward",
      (st, [gv, lv, tv, sv], { ignore_index, label_smoothing: ls }, [dv]) => {
        const [N, C, n] = rowsOf(lv);
        const g = st.in(gv, N);
        const x = st.in(lv, n);
        const t = st.in(tv, N);
        const lse = st.in(sv, N);
        const o = st.out(dv, n);
        const row = (p: number, r0: number) => p + 4 * r0;
        run.rows("ce_backward", N, n, (r0, nr) => [
          nr,
          C,
          row(g, r0),
          x + 4 * C * r0,
          row(t, r0),
          row(lse, r0),
          o + 4 * C * r0,
          ignore_index,
          ls / C,
        ]);
        // the target's term, after the copy out (done() runs first for staged outputs)
        st.after(() => {
          const [gd, td, d] = [dataOf(gv), dataOf(tv), dataOf(dv)];
          for (let r = 0; r < N; r++) {
            const k = td[tv.layout.offset + r]!;
            if (k === ignore_index) continue;
            const i = dv.layout.offset + r * C + k;
            d[i] = d[i]! - gd[gv.layout.offset + r]! * (1 - ls);
          }
        });
      },
    ),
  };
  table.rmsNorm = wrap("rmsNorm", (st, [xv, wv], { eps }, [yv, sv]) => {
    const [R, C, n] = rowsOf(xv);
    const x = st.in(xv, n);
    const w = st.in(wv, C);
    const [y, s] = [st.out(yv, n), st.out(sv, R)];
    run.rows("rms_norm", R, n, (r0, nr) => [nr, C, x + 4 * C * r0, w, y + 4 * C * r0, s + 4 * r0, eps]);
  });
  table.rmsNormBackward = wrap("rmsNormBackward", (st, [dyv, xv, wv, sv], _, [dxv, dwv]) => {
    const [R, C, n] = rowsOf(xv);
    const dy = st.in(dyv, n);
    const x = st.in(xv, n);
    const w = st.in(wv, C);
    const s = st.in(sv, R);
    const dw = st.alloc(8 * C, true);
    ex.rms_norm_backward!(R, C, dy, x, w, s, st.out(dxv, n), dw);
    (dataOf(dwv) as Float32Array).set(new Float64Array(ctx.heap.buffer, dw, C), dwv.layout.offset);
  });
  table.rope = wrap(
    "rope",
    (st, [xv, cv, sv], { transpose, xBTHD, yBTHD }, [yv]) => {
      const s4 = xv.layout.shape as [number, number, number, number];
      const [B, H, T, D] = xBTHD ? [s4[0], s4[2], s4[1], s4[3]] : s4;
      const n = B * H * T * D;
      const x = st.in(xv, n);
      const c = st.in(cv, B * T * D);
      const s = st.in(sv, B * T * D);
      const half = 2 * D; // bytes
      // byte strides of a row step in h and in t: [B, H, T, D] or [B, T, H, D]
      const hs = (bthd: boolean) => (bthd ? 4 * D : 4 * T * D);
      const ts = (bthd: boolean) => (bthd ? 4 * H * D : 4 * D);
      ex.rope!(
        B,
        H,
        T,
        D,
        x,
        c,
        s,
        st.out(yv, n),
        transpose ? half : 0,
        transpose ? 0 : half,
        hs(xBTHD),
        ts(xBTHD),
        hs(yBTHD),
        ts(yBTHD),
        transpose ? -1 : 1,
      );
    },
    2,
  );
  table.maskedSoftmax = wrap("maskedSoftmax", (st, [xv, mv], { scale }, [yv]) => {
    const [, G, Q, C] = xv.layout.shape as [number, number, number, number];
    const [R, , n] = rowsOf(xv);
    const x = st.in(xv, n);
    const m = st.in(mv, rowsOf(mv)[2]);
    const o = st.out(yv, n);
    run.rows("masked_softmax", R, n, (r0, nr) => {
      const blk = Math.floor(r0 / Q);
      const a = Math.floor(blk / G);
      return [nr, C, x + 4 * C * r0, o + 4 * C * r0, m + 4 * C * Q * a, Q, G, r0 % Q, blk % G, scale];
    });
  });
  table.maskedSoftmaxBackward = wrap("maskedSoftmaxBackward", (st, [dyv, yv], { scale }, [dxv]) => {
    const [R, C, n] = rowsOf(yv);
    const [dy, y, o] = [st.in(dyv, n), st.in(yv, n), st.out(dxv, n)];
    const row = (p: number, r0: number) => p + 4 * C * r0;
    run.rows("scaled_softmax_backward", R, n, (r0, nr) => [
      nr,
      C,
      row(dy, r0),
      row(y, r0),
      row(o, r0),
      scale,
    ]);
  });
  table.adamw = wrap("adamw", (st, [pv, gv, mv, vv], a, [po, mo, vo]) => {
    const [, , n] = rowsOf(pv);
    const [p, g, m, v] = [pv, gv, mv, vv].map((t) => st.in(t, n)) as [number, number, number, number];
    const [P, M, V] = [po, mo, vo].map((t) => st.out(t, n)) as [number, number, number];
    const at = (q: number, i: number) => q + 4 * i;
    const decay = 1 - a.lr * a.weight_decay;
    const step = a.lr / a.bc1;
    // work n / 4: split from 256K elements. With workers that spin between jobs two threads update 1M
    // floats in 0.54 ms instead of 0.89 (256K: 0.15-0.18 vs 0.22-0.24); below that a split did not pay
    run.rows(
      "adamw",
      n,
      n / 4,
      (i, k) => [
        k,
        ...[p, g, m, v, P, M, V].map((q) => at(q, i)),
        decay,
        step,
        a.beta1,
        a.beta2,
        a.bc2Sqrt,
        a.eps,
      ],
      16,
    );
  });
  countersOf.set(table, counters);
  return table;
}
