// Worker threads for the wasm fused kernels (on the shared machinery of worker-group.ts, like the matmul's
// pool in threads.ts): each worker instantiates the fused module over the shared memory; a job is a table
// of calls (a function index and its arguments, as f64 words) that the calling thread writes into the
// shared memory, typically one rows function over a block of rows each.

import type { Heap, WasmMemory } from "./heap.js";
import { FIRST_FREE, NEXT, WorkerGroup, workerCtor, workerSource } from "./worker-group.js";

/** The job: [table address, call count]. */
const JOB = FIRST_FREE;
const CONTROL_WORDS = JOB + 2;
/** f64 words per call: [function index, argument count, arguments...]. */
export const CALL_WORDS = 16;

const WORKER_SOURCE = workerSource(
  `const { module, memory, names } = workerData;
const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
const fns = names.map((n) => ex[n]);`,
  `    const count = ctrl[${JOB + 1}];
    const t = new Float64Array(memory.buffer, ctrl[${JOB}], count * ${CALL_WORDS});
    for (let i = Atomics.add(ctrl, ${NEXT}, 1); i < count; i = Atomics.add(ctrl, ${NEXT}, 1)) {
      const e = ${CALL_WORDS} * i;
      fns[t[e]](...t.subarray(e + 2, e + 2 + t[e + 1]));
    }`,
);

/** A call: the index of an exported function in `names`, then its arguments. */
export type Call = number[];

export class FusedPool {
  private constructor(private readonly group: WorkerGroup) {}

  /** Starts `size` workers (null where worker threads do not exist); use it once `ready`. */
  static start(size: number, module: object, memory: WasmMemory, names: readonly string[]): FusedPool | null {
    const Worker = workerCtor();
    if (!Worker || size < 1) return null;
    return new FusedPool(
      new WorkerGroup(size, CONTROL_WORDS, Worker, WORKER_SOURCE, () => ({ module, memory, names })),
    );
  }

  get size(): number {
    return this.group.size;
  }

  get ready(): boolean {
    return this.group.ready;
  }

  whenReady(): Promise<boolean> {
    return this.group.whenReady();
  }

  /** Runs every call, on the workers and here (`fns` are this thread's exports by index); returns when all are done. */
  run(calls: readonly Call[], fns: readonly ((...a: number[]) => void)[], heap: Heap): void {
    const c = this.group.ctrl;
    const count = calls.length;
    const bytes = 8 * CALL_WORDS * count;
    const table = heap.alloc(bytes, false);
    try {
      const t = new Float64Array(heap.buffer, table, CALL_WORDS * count);
      calls.forEach((call, i) => {
        t[CALL_WORDS * i] = call[0]!;
        t[CALL_WORDS * i + 1] = call.length - 1;
        t.set(call.slice(1), CALL_WORDS * i + 2);
      });
      c[JOB] = table;
      c[JOB + 1] = count;
      this.group.dispatch(
        () => {
          for (let i = Atomics.add(c, NEXT, 1); i < count; i = Atomics.add(c, NEXT, 1)) {
            const call = calls[i]!;
            fns[call[0]!]!(...call.slice(1));
          }
        },
        () => Atomics.store(c, NEXT, count),
        "wasm backend: a fused kernel failed in a worker thread",
      );
    } finally {
      heap.release(table, bytes);
    }
  }

  stop(): void {
    this.group.stop();
  }
}

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

/** Runs a rows function here, or split into blocks of rows over a pool of `threads() - 1` workers. */
export class FusedRunner {
  private pool: FusedPool | null = null;
  private readonly fns: ((...a: number[]) => void)[];
  /** Calls that were split over threads. */
  threaded = 0;
  constructor(
    private readonly ex: Record<string, (...a: number[]) => void>,
    private readonly module: object,
    private readonly heap: Heap,
    private readonly threads: () => number,
    private readonly minWork: number,
  ) {
    this.fns = SPLIT_FUNCS.map((n) => ex[n]!);
  }

  /** The pool for the current thread count, started (not yet ready) on first use; null on one thread. */
  private poolFor(): FusedPool | null {
    const size = this.threads() - 1;
    if (this.pool && this.pool.size !== size) {
      this.pool.stop();
      this.pool = null;
    }
    if (size >= 1 && !this.pool)
      this.pool = FusedPool.start(size, this.module, this.heap.memory, SPLIT_FUNCS);
    return this.pool;
  }

  /** Starts the workers now; resolves when they are ready (false on one thread or if they failed). */
  async start(): Promise<boolean> {
    const p = this.poolFor();
    return p ? p.whenReady() : false;
  }

  /**
   * fn over R rows of `work` elements in all: `args(r0, nr)` gives its arguments for rows [r0, r0 + nr);
   * blocks start at multiples of `align` rows.
   */
  rows(fn: SplitFunc, R: number, work: number, args: (r0: number, nr: number) => number[], align = 1): void {
    const p = work >= this.minWork ? this.poolFor() : null;
    if (!p?.ready || R < 2 * align) {
      this.ex[fn]!(...args(0, R));
      return;
    }
    const P = p.size + 1;
    const per = Math.ceil(Math.ceil(R / (CALLS_PER_THREAD * P)) / align) * align;
    const calls: Call[] = [];
    const index = SPLIT_FUNCS.indexOf(fn);
    for (let r0 = 0; r0 < R; r0 += per) calls.push([index, ...args(r0, Math.min(per, R - r0))]);
    this.threaded++;
    p.run(calls, this.fns, this.heap);
  }
}
