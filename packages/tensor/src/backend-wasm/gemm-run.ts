// Runs the emitted sgemm for one matmul on the wasm backend: on the calling thread, or split over the worker
// pool above a size threshold. Split work is a table of chunks in the shared memory that every thread,
// this one included, claims from a counter: whole batch entries when there are enough, else B of each
// entry packed once (shared) by a few pack chunks and row (or column) blocks that multiply by it.

import type { View } from "../backend/backend.js";
import { stridedOffsets } from "../backend-cpu/storage.js";
import { KC, MR, NR, WORKSPACE_BYTES } from "./gemm.js";
import type { Heap, WasmMemory } from "./heap.js";
import {
  CHUNK_PACK_B,
  CHUNK_PACKED,
  CHUNK_SGEMM,
  CHUNK_WORDS,
  type GemmExports,
  WorkerPool,
} from "./threads.js";

/**
 * Chunks per thread when a matmul is split: more balance under load. Chunks share one packed B, so more
 * of them cost no packing; with 2 threads and M = 1024 a chunk is 128 rows, one MC block.
 */
const CHUNKS_PER_THREAD = 4;
const MIN_CHUNK_ROWS = 32;

export interface GemmContext {
  heap: Heap;
  /** The compiled gemm module and its instance's exports on this thread. */
  module: object;
  memory: WasmMemory;
  exports: GemmExports;
  /** node:worker_threads' Worker, where there is one. */
  worker: unknown;
  /** Threads to use, the calling one included (read at each call: the backend can drop to 1). */
  threads: () => number;
  /** Smallest T M N K split over the threads. */
  minThreaded: number;
  counters: { matmulWasm: number; matmulThreaded: number };
}

export interface Gemm {
  /** C (row-major at byte address cBase) = A B for T batch entries; see run below. */
  run(
    a: View,
    b: View,
    aAddr: number,
    bAddr: number,
    cBase: number,
    M: number,
    N: number,
    K: number,
    T: number,
  ): void;
  /** Starts the workers now; resolves true when they are ready, false when there are none. */
  startThreads(): Promise<boolean>;
  stopThreads(): void;
}

export function createGemm(ctx: GemmContext): Gemm {
  const { heap } = ctx;
  const sgemm = ctx.exports.sgemm;
  let work = -1;
  let pool: WorkerPool | null = null;
  let workerWork: number[] = [];

  const getPool = (): WorkerPool | null => {
    const threads = ctx.threads();
    if (threads < 2 || !ctx.worker) return null;
    if (!pool) {
      workerWork = Array.from({ length: threads - 1 }, () => heap.alloc(WORKSPACE_BYTES));
      pool = WorkerPool.start(
        ctx.worker as Parameters<typeof WorkerPool.start>[0],
        ctx.module,
        ctx.memory,
        workerWork,
      );
    }
    return pool;
  };

  /** C (row-major at byte address cBase) = A B, with A and B addressed as `aAddr + 4 * element offset`. */
  const run = (
    a: View,
    b: View,
    aAddr: number,
    bAddr: number,
    cBase: number,
    M: number,
    N: number,
    K: number,
    T: number,
  ): void => {
    const r = a.layout.shape.length;
    const flops = T * M * N * K;
    const aBatch = stridedOffsets(
      a.layout.shape.slice(0, -2),
      a.layout.strides.slice(0, -2),
      a.layout.offset,
    );
    const bBatch = stridedOffsets(
      b.layout.shape.slice(0, -2),
      b.layout.strides.slice(0, -2),
      b.layout.offset,
    );
    const ars = a.layout.strides[r - 2]! * 4;
    const acs = a.layout.strides[r - 1]! * 4;
    const brs = b.layout.strides[r - 2]! * 4;
    const bcs = b.layout.strides[r - 1]! * 4;
    const ldc = N * 4;
    if (work < 0) work = heap.alloc(WORKSPACE_BYTES);
    const pool = flops >= ctx.minThreaded ? getPool() : null;
    const p = pool?.ready ? pool : null; // until the workers are up, run here
    if (!p) {
      ctx.counters.matmulWasm++;
      for (let t = 0; t < T; t++)
        sgemm(
          M,
          N,
          K,
          aAddr + aBatch[t]! * 4,
          ars,
          acs,
          bAddr + bBatch[t]! * 4,
          brs,
          bcs,
          cBase + t * M * N * 4,
          ldc,
          work,
        );
      return;
    }
    // Chunks that every thread, this one included, claims from a shared counter, so a thread slowed by other
    // load takes fewer. With enough batch entries a chunk is whole entries (each packs its own panels).
    // Otherwise B of each entry is packed once, shared, by a few pack chunks, and the compute chunks are
    // row blocks (column blocks when there are too few rows) that only pack their part of A.
    const P = p.size + 1;
    const want = CHUNKS_PER_THREAD * P;
    const shared = T < want;
    const per = Math.ceil(want / T);
    let mCh = M;
    let nCh = N;
    if (shared) {
      mCh = Math.max(MIN_CHUNK_ROWS, Math.ceil(M / per / MR) * MR);
      if (Math.ceil(M / mCh) < Math.min(per, P)) {
        mCh = M;
        nCh = Math.max(MIN_CHUNK_ROWS, Math.ceil(N / per / NR) * NR);
      }
    }
    const npad = Math.ceil(N / NR) * NR;
    const kBlocks = Math.ceil(K / KC);
    // pack chunks: about two per thread in all, each a range of whole panels of one K block
    const packW = Math.ceil(N / Math.max(1, Math.ceil((2 * P) / (T * kBlocks))) / NR) * NR;
    const packs = shared ? T * kBlocks * Math.ceil(N / packW) : 0;
    const chunks = packs + T * Math.ceil(M / mCh) * Math.ceil(N / nCh);
    const pbBytes = shared ? 4 * T * K * npad : 0;
    const pb = shared ? heap.alloc(pbBytes, false) : 0;
    ctx.counters.matmulThreaded++;
    const tableBytes = 4 * CHUNK_WORDS * chunks;
    const table = heap.alloc(tableBytes, false);
    const tab = new Int32Array(heap.buffer, table, CHUNK_WORDS * chunks);
    let c = 0;
    for (let t = 0; t < T && shared; t++)
      for (let pc = 0; pc < K; pc += KC)
        for (let j0 = 0; j0 < N; j0 += packW, c += CHUNK_WORDS) {
          const kc = Math.min(KC, K - pc);
          tab[c] = CHUNK_PACK_B;
          tab[c + 1] = pb + 4 * (t * K * npad + pc * npad + j0 * kc);
          tab[c + 2] = bAddr + bBatch[t]! * 4 + pc * brs + j0 * bcs;
          tab[c + 3] = kc;
          tab[c + 4] = Math.min(packW, N - j0);
        }
    for (let t = 0; t < T; t++)
      for (let m0 = 0; m0 < M; m0 += mCh)
        for (let n0 = 0; n0 < N; n0 += nCh, c += CHUNK_WORDS) {
          const a0 = aAddr + aBatch[t]! * 4 + m0 * ars;
          const c0 = cBase + t * M * N * 4 + m0 * ldc + n0 * 4;
          const rows = Math.min(mCh, M - m0);
          const cols = Math.min(nCh, N - n0);
          if (shared) tab.set([CHUNK_PACKED, a0, pb + 4 * t * K * npad, c0, rows, cols, npad, n0], c);
          else tab.set([CHUNK_SGEMM, a0, bAddr + bBatch[t]! * 4 + n0 * bcs, c0, rows, cols], c);
        }
    try {
      p.run({ table, count: chunks, packs, K, ars, acs, brs, bcs, ldc }, ctx.exports, work, heap.buffer);
    } finally {
      heap.release(table, tableBytes);
      if (shared) heap.release(pb, pbBytes);
    }
  };

  return {
    run,
    startThreads(): Promise<boolean> {
      const p = getPool();
      return p ? p.whenReady() : Promise.resolve(false);
    },
    stopThreads(): void {
      pool?.stop();
      pool = null;
      for (const w of workerWork) heap.release(w, WORKSPACE_BYTES);
      workerWork = [];
    },
  };
}
