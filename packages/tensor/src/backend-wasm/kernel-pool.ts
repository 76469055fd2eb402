// The wasm backend's one set of worker threads, shared by the matmul (gemm-run.ts) and the fused kernels
// (fused-threads.ts). Each worker instantiates every kernel module over the shared memory; a job is a table
// of calls (a function index and its arguments, as f64 words) that the calling thread writes into the
// shared memory, and every thread, this one included, claims calls from a counter. One set rather than one
// per kind of kernel: the workers spin between jobs (worker-group.ts), and two sets spinning at once would
// take the cores from each other and from the calling thread.

import type { Heap, WasmMemory } from "./heap.js";
import { FIRST_FREE, NEXT, type WorkerCtor, WorkerGroup, workerCtor, workerSource } from "./worker-group.js";

/** Calls of the leading group (see run) finished, or failed. */
const LEAD_DONE = FIRST_FREE;
/** The job: [table address, call count, calls in the leading group]. */
const JOB = FIRST_FREE + 1;
/** Per worker: the address of its workspace. */
const WORK = JOB + 3;
/** f64 words per call: [function index, argument count, 1 if the thread's workspace is appended, arguments...]. */
export const CALL_WORDS = 20;
/** Argument slots per call, the appended workspace included. */
const ARG_SLOTS = CALL_WORDS - 3;
/**
 * The claim loop every thread runs, the workers from their source and the caller through `claim` below:
 * take the next call from NEXT, write this thread's workspace into its slot when the call wants it (only
 * the claiming thread touches that call), and run it. The leading calls count into LEAD_DONE; the others
 * first wait for all of them. Each call passes every argument slot straight from the table (a wasm export
 * ignores arguments past its own): no argument array or spread per call, which cost about a microsecond
 * each with a few hundred calls per job (causal attention's blocks).
 */
const CALL = `fn(${Array.from({ length: ARG_SLOTS }, (_, j) => `t[e + ${3 + j}]`).join(", ")})`;
const CLAIM_LOOP = `for (let i = Atomics.add(ctrl, ${NEXT}, 1); i < count; i = Atomics.add(ctrl, ${NEXT}, 1)) {
  const e = ${CALL_WORDS} * i;
  if (t[e + 2] === 1) t[e + 3 + t[e + 1]] = work;
  const fn = fns[t[e]];
  if (i < lead) {
    try {
      ${CALL};
    } finally {
      Atomics.add(ctrl, ${LEAD_DONE}, 1);
    }
  } else {
    while (Atomics.load(ctrl, ${LEAD_DONE}) < lead);
    ${CALL};
  }
}`;
type Claim = (
  ctrl: Int32Array,
  t: Float64Array,
  count: number,
  lead: number,
  fns: readonly KernelFn[],
  work: number,
) => void;
const claim = new Function("ctrl", "t", "count", "lead", "fns", "work", CLAIM_LOOP) as Claim;

/** A call: the index of a function in the pool's list, then its arguments. */
export type Call = number[];
export type KernelFn = (...args: number[]) => void;

/** A module the workers instantiate, and the exports, in order, that calls may name. */
export interface PoolModule {
  module: object;
  names: readonly string[];
}

const WORKER_SOURCE = workerSource(
  `const { modules, memory, id } = workerData;
const fns = [];
for (const { module, names } of modules) {
  const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
  for (const n of names) fns.push(ex[n]);
}
const work = ctrl[${WORK} + id];`,
  `    const [table, count, lead] = ctrl.subarray(${JOB}, ${JOB} + 3);
    const t = new Float64Array(memory.buffer, table, count * ${CALL_WORDS});
${CLAIM_LOOP}`,
);

export class KernelPool {
  private constructor(private readonly group: WorkerGroup) {}

  /**
   * Starts one worker per workspace without waiting for them (a blocked caller could keep them from
   * starting: ESM module evaluation does). Use the pool once `ready` is true, or await `whenReady()`.
   */
  static start(
    Worker: WorkerCtor,
    memory: WasmMemory,
    modules: readonly PoolModule[],
    workspaces: readonly number[],
  ): KernelPool {
    const size = workspaces.length;
    return new KernelPool(
      new WorkerGroup(
        size,
        WORK + size,
        Worker,
        WORKER_SOURCE,
        (id) => ({ modules, memory, id }),
        (ctrl) => ctrl.set(workspaces, WORK),
      ),
    );
  }

  get size(): number {
    return this.group.size;
  }

  /** Every worker has instantiated the modules and waits for jobs. */
  get ready(): boolean {
    return this.group.ready;
  }

  /** Resolves once `ready` (false if a worker failed or 30 s passed). */
  whenReady(): Promise<boolean> {
    return this.group.whenReady();
  }

  /**
   * Runs every call on the workers and here (`fns` are this thread's functions in the pool's order, `work`
   * this thread's workspace) and returns when all are done. The first `lead` calls (packing a shared
   * operand) all finish before any later call starts; they take microseconds, so the others spin for them.
   * `withWork(call)`: the thread's workspace is appended to that call's arguments.
   */
  run(
    calls: readonly Call[],
    fns: readonly KernelFn[],
    heap: Heap,
    options: { lead?: number; work?: number; withWork?: (call: Call) => boolean } = {},
  ): void {
    const lead = options.lead ?? 0;
    const work = options.work ?? 0;
    const withWork = options.withWork ?? (() => false);
    const c = this.group.ctrl;
    const count = calls.length;
    const bytes = 8 * CALL_WORDS * count;
    const table = heap.alloc(bytes, false);
    try {
      const t = new Float64Array(heap.buffer, table, CALL_WORDS * count);
      calls.forEach((call, i) => {
        const e = CALL_WORDS * i;
        const appended = withWork(call);
        if (call.length - 1 + (appended ? 1 : 0) > ARG_SLOTS)
          throw new Error(`KernelPool: a call has more than ${ARG_SLOTS} arguments, the workspace included`);
        t[e] = call[0]!;
        t[e + 1] = call.length - 1;
        t[e + 2] = appended ? 1 : 0;
        for (let j = 1; j < call.length; j++) t[e + 2 + j] = call[j]!;
      });
      c.set([table, count, lead], JOB);
      Atomics.store(c, LEAD_DONE, 0);
      this.group.dispatch(
        () => claim(c, t, count, lead, fns, work),
        () => {
          Atomics.store(c, NEXT, count); // let the workers stop claiming
          Atomics.store(c, LEAD_DONE, lead); // and stop waiting for the leading calls
        },
        "wasm backend: a kernel failed in a worker thread",
      );
    } finally {
      heap.release(table, bytes);
    }
  }

  stop(): void {
    this.group.stop();
  }
}

/**
 * A pool for the current thread count, started on first use (the workers then get ready in the
 * background) and restarted when the count changes; each worker gets a workspace of `workspaceBytes`.
 */
export class PoolHolder {
  private pool: KernelPool | null = null;
  private workspaces: number[] = [];
  constructor(
    private readonly heap: Heap,
    private readonly modules: readonly PoolModule[],
    /** Threads to use, the calling one included (read at each call). */
    private readonly threads: () => number,
    private readonly workspaceBytes = 0,
  ) {}

  /** The pool (maybe not ready yet); null on one thread or where there are no worker threads. */
  get(): KernelPool | null {
    const size = this.threads() - 1;
    if (this.pool && this.pool.size !== size) this.stop();
    if (size < 1) return null;
    if (!this.pool) {
      const Worker = workerCtor();
      if (!Worker) return null;
      this.workspaces = Array.from({ length: size }, () =>
        this.workspaceBytes > 0 ? this.heap.alloc(this.workspaceBytes) : 0,
      );
      this.pool = KernelPool.start(Worker, this.heap.memory, this.modules, this.workspaces);
    }
    return this.pool;
  }

  /** Starts the workers now; resolves true once they are ready, false when there are none. */
  start(): Promise<boolean> {
    const p = this.get();
    return p ? p.whenReady() : Promise.resolve(false);
  }

  stop(): void {
    this.pool?.stop();
    this.pool = null;
    for (const w of this.workspaces) if (w > 0) this.heap.release(w, this.workspaceBytes);
    this.workspaces = [];
  }
}
