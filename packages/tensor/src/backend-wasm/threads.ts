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
/** The next chunk to claim. */
const NEXT = 5;
/** The job: [table address, chunk count, K, ars, acs, brs, bcs, ldc]. */
const JOB = 8;
/** Per worker: the address of its workspace. */
const WORK = 16;
/** Int32 words per chunk of the table: [a, b, c, M, N] (addresses in bytes). */
export const CHUNK_WORDS = 5;

// Runs inside each worker, as a script or as a module (the worker inherits --input-type): instantiate,
// then claim chunks of each job until QUIT.
const WORKER_SOURCE = `
const { workerData } = process.getBuiltinModule("node:worker_threads");
const { module, memory, control, id } = workerData;
const ctrl = new Int32Array(control);
const sgemm = new WebAssembly.Instance(module, { env: { memory } }).exports.sgemm;
const work = ctrl[${WORK} + id];
// read the generation before reporting ready: the first job may be posted right after
let gen = Atomics.load(ctrl, ${GEN});
Atomics.add(ctrl, ${READY}, 1);
Atomics.notify(ctrl, ${READY});
for (;;) {
  Atomics.wait(ctrl, ${GEN}, gen);
  gen = Atomics.load(ctrl, ${GEN});
  if (Atomics.load(ctrl, ${QUIT}) !== 0) break;
  try {
    const [table, count, K, ars, acs, brs, bcs, ldc] = ctrl.subarray(${JOB}, ${JOB} + 8);
    const t = new Int32Array(memory.buffer, table, count * ${CHUNK_WORDS});
    for (let i = Atomics.add(ctrl, ${NEXT}, 1); i < count; i = Atomics.add(ctrl, ${NEXT}, 1)) {
      const e = ${CHUNK_WORDS} * i;
      sgemm(t[e + 3], t[e + 4], K, t[e], ars, acs, t[e + 1], brs, bcs, t[e + 2], ldc, work);
    }
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

/** A split matmul: a table of chunks in the shared memory and the parameters they share. */
export interface GemmJob {
  table: number;
  count: number;
  K: number;
  ars: number;
  acs: number;
  brs: number;
  bcs: number;
  ldc: number;
}

export class WorkerPool {
  private readonly ctrl: Int32Array;
  private readonly workers: WorkerLike[] = [];

  private constructor(readonly size: number) {
    this.ctrl = new Int32Array(new SharedArrayBuffer(4 * (WORK + size)));
  }

  /**
   * Starts `size` workers without waiting for them: a blocked caller could keep them from starting (ESM
   * module evaluation does). Use the pool once `ready` is true, or await `whenReady()`.
   */
  static start(
    Worker: WorkerCtor,
    module: object,
    memory: WasmMemory,
    workspaces: readonly number[],
  ): WorkerPool {
    const size = workspaces.length;
    const pool = new WorkerPool(size);
    pool.ctrl.set(workspaces, WORK);
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

  /** Runs the job's chunks on every worker and, through `runChunk`, here; returns when all are done. */
  run(job: GemmJob, runChunk: (i: number) => void): void {
    const c = this.ctrl;
    c.set([job.table, job.count, job.K, job.ars, job.acs, job.brs, job.bcs, job.ldc], JOB);
    Atomics.store(c, NEXT, 0);
    Atomics.store(c, DONE, 0);
    Atomics.add(c, GEN, 1);
    Atomics.notify(c, GEN);
    let error: unknown = null;
    try {
      for (let i = Atomics.add(c, NEXT, 1); i < job.count; i = Atomics.add(c, NEXT, 1)) runChunk(i);
    } catch (e) {
      error = e;
      Atomics.store(c, NEXT, job.count); // let the workers stop claiming
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
