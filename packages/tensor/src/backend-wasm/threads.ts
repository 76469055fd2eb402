// Worker threads for the wasm matmul (on the shared machinery of worker-group.ts). Each worker instantiates
// the gemm module over the shared memory; a job is a table of chunks the calling thread wrote into the
// shared memory: sgemm calls, or the parts of packing one shared B followed by row (or column) blocks that
// multiply by it, so no thread packs B again.

import type { WasmMemory } from "./heap.js";
import { FIRST_FREE, NEXT, type WorkerCtor, WorkerGroup, workerSource } from "./worker-group.js";

/** Pack chunks finished (or failed) in this job. */
const PACKED = FIRST_FREE;
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

// Each worker instantiates the gemm module, then claims chunks of each job. The chunk loop is
// WorkerPool.run's, written again here.
const WORKER_SOURCE = workerSource(
  `const { module, memory, id } = workerData;
const { sgemm, sgemm_packed, pack_b } = new WebAssembly.Instance(module, { env: { memory } }).exports;
const work = ctrl[${WORK} + id];`,
  `    const [table, count, packs, K, ars, acs, brs, bcs, ldc] = ctrl.subarray(${JOB}, ${JOB} + 9);
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
    }`,
);

/** The gemm module's exports a chunk calls. */
export interface GemmExports {
  sgemm(...args: number[]): void;
  sgemm_packed(...args: number[]): void;
  pack_b(...args: number[]): void;
}

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
  private constructor(private readonly group: WorkerGroup) {}

  /**
   * Starts one worker per workspace without waiting for them: a blocked caller could keep them from
   * starting (ESM module evaluation does). Use the pool once `ready` is true, or await `whenReady()`.
   */
  static start(
    Worker: WorkerCtor,
    module: object,
    memory: WasmMemory,
    workspaces: readonly number[],
  ): WorkerPool {
    const size = workspaces.length;
    return new WorkerPool(
      new WorkerGroup(
        size,
        WORK + size,
        Worker,
        WORKER_SOURCE,
        (id) => ({ module, memory, id }),
        (ctrl) => ctrl.set(workspaces, WORK),
      ),
    );
  }

  get size(): number {
    return this.group.size;
  }

  /** Every worker has instantiated the module and waits for jobs. */
  get ready(): boolean {
    return this.group.ready;
  }

  /** Resolves once `ready` (false if a worker failed or 30 s passed). */
  whenReady(): Promise<boolean> {
    return this.group.whenReady();
  }

  /** Runs the job's chunks on every worker and here (with `ex` and the workspace `work`); returns when all are done. */
  run(job: GemmJob, ex: GemmExports, work: number, buffer: ArrayBufferLike): void {
    const c = this.group.ctrl;
    const { table, count, packs, K, ars, acs, brs, bcs, ldc } = job;
    c.set([table, count, packs, K, ars, acs, brs, bcs, ldc], JOB);
    Atomics.store(c, PACKED, 0);
    const t = new Int32Array(buffer, table, count * CHUNK_WORDS);
    this.group.dispatch(
      () => {
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
      },
      () => {
        Atomics.store(c, NEXT, count); // let the workers stop claiming
        Atomics.store(c, PACKED, packs); // and stop waiting for packs
      },
      "wasm backend: a worker thread's sgemm failed",
    );
  }

  stop(): void {
    this.group.stop();
  }
}
