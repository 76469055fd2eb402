// Splitting the wasm fused kernels over the backend's worker pool (kernel-pool.ts): a rows function over a
// block of rows per call, as many calls as the threads times CALLS_PER_THREAD.

import type { Heap } from "./heap.js";
import type { Call, KernelFn, KernelPool } from "./kernel-pool.js";

/** Exported rows functions of the fused module that may be split over threads, in call-table order. */
export const SPLIT_FUNCS = [
  "softmax",
  "log_softmax",
  "lse_rows",
  "softmax_backward",
  "log_softmax_backward",
  "ce_backward",
  "swiglu",
  "swiglu_backward",
  "rms_norm",
  "masked_softmax",
  "scaled_softmax_backward",
  "adamw",
] as const;
export type SplitFunc = (typeof SPLIT_FUNCS)[number];

/** Smallest work (elements) split over threads: below it waking the workers costs more than it saves. */
export const DEFAULT_MIN_FUSED_THREADED = 1 << 16;
/** Calls per thread of a split kernel (balance when a thread is slowed by other load). */
const CALLS_PER_THREAD = 3;

/** Runs a rows function here, or split into blocks of rows over the backend's worker pool. */
export class FusedRunner {
  private readonly fns: KernelFn[];
  /** Calls that were split over threads. */
  threaded = 0;
  /**
   * `pool()`: the backend's pool, or null on one thread; SPLIT_FUNCS are its functions from index
   * `offset` on.
   */
  constructor(
    private readonly ex: Record<string, KernelFn>,
    private readonly heap: Heap,
    private readonly pool: () => KernelPool | null,
    private readonly offset: number,
    private readonly minWork: number,
  ) {
    this.fns = [];
    SPLIT_FUNCS.forEach((n, i) => {
      this.fns[offset + i] = ex[n]!;
    });
  }

  /**
   * fn over R rows of `work` elements in all: `args(r0, nr)` gives its arguments for rows [r0, r0 + nr);
   * blocks start at multiples of `align` rows.
   */
  rows(fn: SplitFunc, R: number, work: number, args: (r0: number, nr: number) => number[], align = 1): void {
    const p = work >= this.minWork ? this.pool() : null;
    if (!p?.ready || R < 2 * align) {
      this.ex[fn]!(...args(0, R));
      return;
    }
    const P = p.size + 1;
    const per = Math.ceil(Math.ceil(R / (CALLS_PER_THREAD * P)) / align) * align;
    const calls: Call[] = [];
    const index = this.offset + SPLIT_FUNCS.indexOf(fn);
    for (let r0 = 0; r0 < R; r0 += per) calls.push([index, ...args(r0, Math.min(per, R - r0))]);
    this.threaded++;
    p.run(calls, this.fns, this.heap);
  }
}
