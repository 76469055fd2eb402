// Worker threads for the wasm kernels. Each worker instantiates the same compiled module over the shared
// memory and waits on a control word; a job is a list of sgemm calls the calling thread wrote into the
// shared memory. Dispatch is synchronous (kernels are): the caller bumps the generation, runs its own share
// and then blocks in Atomics.wait until every worker has reported. No postMessage per call.

import type { WasmMemory } from "./heap.js";

/** Int32 words of the control block. */
const GEN = 0;
const DONE = 1;
const READY = 2;
const FAILED = 3;
const QUIT = 4;
const JOBS = 8;
/** Per worker: [table address, call count, M, N, K, ars, acs, brs, bcs, ldc, work]. */
export const JOB_WORDS = 11;

// Runs inside each worker, as a script or as a module (the worker inherits --input-type): instantiate,
// then serve jobs until QUIT.
const WORKER_SOURCE = `
const { workerData } = process.getBuiltinModule("node:worker_threads");
const { module, memory, control, id } = workerData;
const ctrl = new Int32Array(control);
const sgemm = new WebAssembly.Instance(module, { env: { memory } }).exports.sgemm;
// read the generation before reporting ready: the first job may be posted right after
let gen = Atomics.load(ctrl, ${GEN});
Atomics.add(ctrl, ${READY}, 1);
Atomics.notify(ctrl, ${READY});
for (;;) {
  Atomics.wait(ctrl, ${GEN}, gen);
  gen = Atomics.load(ctrl, ${GEN});
  if (Atomics.load(ctrl, ${QUIT}) !== 0) break;
  try {
    const j = ${JOBS} + id * ${JOB_WORDS};
    const [table, count, M, N, K, ars, acs, brs, bcs, ldc, work] = ctrl.subarray(j, j + ${JOB_WORDS});
    const t = new Int32Array(memory.buffer, table, count * 3);
    for (let i = 0; i < count; i++) sgemm(M, N, K, t[3 * i], ars, acs, t[3 * i + 1], brs, bcs, t[3 * i + 2], ldc, work);
  } catch (e) {
    Atomics.store(ctrl, ${FAILED}, 1);
  }
  Atomics.add(ctrl, ${DONE}, 1);
  Atomics.notify(ctrl, ${DONE});
}
`;

interface WorkerLike {
  on(event: "error", listener: (e: unknown) => void): void;
  unref(): void;
  terminate(): Promise<number>;
}
type WorkerCtor = new (
  src: string,
  options: { eval: true; workerData: unknown; stdout?: boolean; stderr?: boolean },
) => WorkerLike;

/** One sgemm call list per worker; the caller's own share is run by the caller. */
export interface GemmJob {
  table: number;
  count: number;
  M: number;
  N: number;
  K: number;
  ars: number;
  acs: number;
  brs: number;
  bcs: number;
  ldc: number;
  work: number;
}

export class WorkerPool {
  private readonly ctrl: Int32Array;
  private readonly workers: WorkerLike[] = [];

  private constructor(readonly size: number) {
    this.ctrl = new Int32Array(new SharedArrayBuffer(4 * (JOBS + JOB_WORDS * size)));
  }

  /**
   * Starts `size` workers without waiting for them: a blocked caller could keep them from starting (ESM
   * module evaluation does). Use the pool once `ready` is true, or await `whenReady()`.
   */
  static start(Worker: WorkerCtor, module: object, memory: WasmMemory, size: number): WorkerPool {
    const pool = new WorkerPool(size);
    for (let id = 0; id < size; id++) {
      const w = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { module, memory, control: pool.ctrl.buffer, id },
      });
      w.on("error", () => {
        pool.broken = true;
      });
      w.unref();
      pool.workers.push(w);
    }
    return pool;
  }

  private broken = false;

  /** Every worker has instantiated the module and waits for jobs. */
  get ready(): boolean {
    return !this.broken && Atomics.load(this.ctrl, READY) === this.size;
  }

  /** Resolves once `ready` (false if a worker failed or 30 s passed). */
  async whenReady(): Promise<boolean> {
    const deadline = Date.now() + 30_000;
    while (!this.ready && !this.broken && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    return this.ready;
  }

  /** Runs `jobs[i]` on worker i while `own` runs here; returns when all are done. */
  run(jobs: readonly GemmJob[], own: () => void): void {
    const c = this.ctrl;
    const n = Math.min(jobs.length, this.size);
    for (let i = 0; i < n; i++) {
      const j = jobs[i]!;
      c.set(
        [j.table, j.count, j.M, j.N, j.K, j.ars, j.acs, j.brs, j.bcs, j.ldc, j.work],
        JOBS + i * JOB_WORDS,
      );
    }
    for (let i = n; i < this.size; i++) c[JOBS + i * JOB_WORDS + 1] = 0;
    Atomics.store(c, DONE, 0);
    Atomics.add(c, GEN, 1);
    Atomics.notify(c, GEN);
    let error: unknown = null;
    try {
      own();
    } catch (e) {
      error = e;
    }
    for (let d = Atomics.load(c, DONE); d < this.size; d = Atomics.load(c, DONE)) Atomics.wait(c, DONE, d);
    if (error !== null) throw error;
    if (Atomics.exchange(c, FAILED, 0) !== 0) throw new Error("wasm backend: a worker thread's sgemm failed");
  }

  stop(): void {
    Atomics.store(this.ctrl, QUIT, 1);
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
    for (const w of this.workers) void w.terminate();
  }
}
