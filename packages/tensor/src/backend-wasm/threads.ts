// Worker threads for the wasm kernels. Each worker instantiates the same compiled module over the shared
// memory and waits on a control word; a job is a table of chunks the calling thread wrote into the shared
// memory: sgemm calls, or the parts of packing one shared B followed by row (or column) blocks that multiply
// by it, so no thread packs B again. Dispatch is synchronous (kernels are): the caller bumps the generation, runs its own share
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
/** Pack chunks finished (or failed) in this job. */
const PACKED = 6;
/** The job: [table address, chunk count, pack chunk count, K, ars, acs, brs, bcs, ldc]. */
const JOB = 8;
/** Per worker: the address of its workspace. */
const WORK = 24;
/** Int32 words per chunk of the table: [kind, ...arguments] (addresses in bytes). */
export const CHUNK_WORDS = 8;
/** sgemm of one block: [a, b, c, M, N]. */
export const CHUNK_SGEMM = 0;
/** pack_b of one part of a shared packed B: [dst, src, kc, nc]. */
export const CHUNK_PACK_B = 1;
/** sgemm_packed over a shared packed B, once every pack chunk is done: [a, pb, c, M, N, npad, n0]. */
export const CHUNK_PACKED = 2;

// Runs inside each worker, as a script or as a module (the worker inherits --input-type): instantiate,
// then claim chunks of each job until QUIT. The chunk loop is WorkerPool.run's, written again here.
const WORKER_SOURCE = `
const { workerData } = process.getBuiltinModule("node:worker_threads");
const { module, memory, control, id } = workerData;
const ctrl = new Int32Array(control);
const { sgemm, sgemm_packed, pack_b } = new WebAssembly.Instance(module, { env: { memory } }).exports;
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
    const [table, count, packs, K, ars, acs, brs, bcs, ldc] = ctrl.subarray(${JOB}, ${JOB} + 9);
    const t = new Int32Array(memory.buffer, table, count * ${CHUNK_WORDS});
    for (let i = Atomics.add(ctrl, ${NEXT}, 1); i < count; i = Atomics.add(ctrl, ${NEXT}, 1)) {
      const e = ${CHUNK_WORDS} * i;
      const kind = t[e];
      if (kind === ${CHUNK_PACK_B}) {
        try {
          pack_b(t[e + 1], t[e + 2], brs, bcs, t[e + 3], t[e + 4]);
        } finally {
          Atomics.add(ctrl, ${PACKED}, 1);
        }
      } else if (kind === ${CHUNK_PACKED}) {
        while (Atomics.load(ctrl, ${PACKED}) < packs);
        sgemm_packed(t[e + 4], t[e + 5], K, t[e + 1], ars, acs, t[e + 2], t[e + 6], t[e + 7], t[e + 3], ldc, work);
      } else {
        sgemm(t[e + 4], t[e + 5], K, t[e + 1], ars, acs, t[e + 2], brs, bcs, t[e + 3], ldc, work);
      }
    }
  } catch (e) {
    Atomics.store(ctrl, ${FAILED}, 1);
  }
  Atomics.add(ctrl, ${DONE}, 1);
  Atomics.notify(ctrl, ${DONE});
}
`;

/** The gemm module's exports a chunk calls. */
export interface GemmExports {
  sgemm(...args: number[]): void;
  sgemm_packed(...args: number[]): void;
  pack_b(...args: number[]): void;
}

interface WorkerLike {
  on(event: "error", listener: (e: unknown) => void): void;
  unref(): void;
  terminate(): Promise<number>;
}
type WorkerCtor = new (
  src: string,
  options: { eval: true; workerData: unknown; stdout?: boolean; stderr?: boolean },
) => WorkerLike;

/**
 * A split matmul: a table of chunks in the shared memory and the parameters they share. The first `packs`
 * chunks pack a shared B; the CHUNK_PACKED chunks wait for them.
 */
export interface GemmJob {
  table: number;
  count: number;
  packs: number;
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

  /** Runs the job's chunks on every worker and here (with `ex` and the workspace `work`); returns when all are done. */
  run(job: GemmJob, ex: GemmExports, work: number, buffer: ArrayBufferLike): void {
    const c = this.ctrl;
    const { table, count, packs, K, ars, acs, brs, bcs, ldc } = job;
    c.set([table, count, packs, K, ars, acs, brs, bcs, ldc], JOB);
    Atomics.store(c, NEXT, 0);
    Atomics.store(c, DONE, 0);
    Atomics.store(c, PACKED, 0);
    Atomics.add(c, GEN, 1);
    Atomics.notify(c, GEN);
    const t = new Int32Array(buffer, table, count * CHUNK_WORDS);
    let error: unknown = null;
    try {
      for (let i = Atomics.add(c, NEXT, 1); i < count; i = Atomics.add(c, NEXT, 1)) {
        const e = CHUNK_WORDS * i;
        const kind = t[e];
        if (kind === CHUNK_PACK_B) {
          try {
            ex.pack_b(t[e + 1]!, t[e + 2]!, brs, bcs, t[e + 3]!, t[e + 4]!);
          } finally {
            Atomics.add(c, PACKED, 1);
          }
        } else if (kind === CHUNK_PACKED) {
          while (Atomics.load(c, PACKED) < packs); // pack chunks take microseconds: spin
          const [a, pb, cc, M, N, npad, n0] = t.subarray(e + 1, e + 8) as unknown as number[];
          ex.sgemm_packed(M, N, K, a, ars, acs, pb, npad, n0, cc, ldc, work);
        } else {
          ex.sgemm(t[e + 4]!, t[e + 5]!, K, t[e + 1]!, ars, acs, t[e + 2]!, brs, bcs, t[e + 3]!, ldc, work);
        }
      }
    } catch (e) {
      error = e;
      Atomics.store(c, NEXT, count); // let the workers stop claiming
      Atomics.store(c, PACKED, packs); // and stop waiting for packs
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
