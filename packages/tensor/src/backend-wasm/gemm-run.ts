// Runs the emitted sgemm for one matmul on the wasm backend: on the calling thread, or split over the worker
// pool above a size threshold. Split work is a table of calls (kernel-pool.ts) that every thread, this one
// included, claims from a counter: whole batch entries when there are enough, else B of each entry packed
// once (shared) by a few leading pack calls and row (or column) blocks that multiply by it.

import type { CausalSpec, View } from "../backend/backend.js";
import { stridedOffsets } from "../backend-cpu/storage.js";
import { type GemmTile, hasNarrowSet, KC, NR, tileFor } from "./gemm.js";
import { CAUSAL_KIND } from "./gemm-causal.js";
import { PAIR_MAX_N2 } from "./gemm-pair.js";
import type { Heap } from "./heap.js";
import type { Call, KernelFn, KernelPool } from "./kernel-pool.js";

/**
 * The gemm module's exports the pool may call, in the order of their function indices: sgemm,
 * sgemm_packed and pack_b, then sgemm and sgemm_packed of the narrow set (gemm.ts, tileFor), which are the
 * main ones in a module without one, sgemm_causal (gemm-causal.ts) and sgemm_pair (gemm-pair.ts).
 */
export function gemmFuncs(tile: GemmTile): string[] {
  const n = hasNarrowSet(tile) ? "_narrow" : "";
  return ["sgemm", "sgemm_packed", "pack_b", `sgemm${n}`, `sgemm_packed${n}`, "sgemm_causal", "sgemm_pair"];
}
const [SGEMM, SGEMM_PACKED, PACK_B, SGEMM_NARROW, SGEMM_PACKED_NARROW, SGEMM_CAUSAL, SGEMM_PAIR] = [
  0, 1, 2, 3, 4, 5, 6,
];

/**
 * Chunks per thread when a matmul is split: more balance under load. Chunks share one packed B, so more
 * of them cost no packing; with 2 threads and M = 1024 a chunk is 128 rows, one MC block.
 */
const CHUNKS_PER_THREAD = 4;
const MIN_CHUNK_ROWS = 32;

export interface GemmContext {
  heap: Heap;
  /** The gemm module's exports on this thread. */
  exports: Record<string, KernelFn>;
  /** The backend's worker pool (its first functions are gemmFuncs(tile)), or null on one thread. */
  pool: () => KernelPool | null;
  /** This thread's workspace (WORKSPACE_BYTES). */
  work: number;
  /** The module's register tile (gemm.ts). */
  tile: GemmTile;
  /** Smallest T M N K split over the threads. */
  minThreaded: number;
  counters: { matmulWasm: number; matmulThreaded: number };
}

export interface Gemm {
  /** C (row-major at byte address cBase) = A B over the batch entries, or C += A B with `accumulate`. */
  run(a: View, b: View, aAddr: number, bAddr: number, cBase: number, accumulate?: boolean): void;
  /**
   * C = A B and C2 = A B2 (B2 at most PAIR_MAX_N2 columns) with each block of A packed once (gemm-pair.ts);
   * split over the threads, or when A B runs on the narrow tile, the two products one after the other.
   * Adds the third product into its C3 when pair_t can take it; returns whether it did.
   */
  runPair(a: View, b: View, b2: View, addr: PairAddresses, third?: PairThird): boolean;
  /** C = A B over only the parts `spec` keeps, 0 elsewhere (gemm-causal.ts); every element is written. */
  runCausal(a: View, b: View, aAddr: number, bAddr: number, cBase: number, spec: CausalSpec): void;
}

/** Byte addresses of a matmul pair's operands' element 0 (A, B, B2) and of its row-major outputs. */
export interface PairAddresses {
  a: number;
  b: number;
  b2: number;
  c: number;
  c2: number;
}

/**
 * The optional third product of a pair: C3 (row-major [K, N3] at c3, zeroed) += scale A^T D, D [..., M, N3]
 * addressed as `d + 4 * element offset`.
 */
export interface PairThird {
  view: View;
  d: number;
  c3: number;
  scale: number;
}

/** M, N, K and the batch count T of the product a [..., M, K] b [..., K, N]. */
export function productDims(a: View, b: View): { M: number; N: number; K: number; T: number } {
  const s = a.layout.shape;
  const r = s.length;
  let T = 1;
  for (let i = 0; i < r - 2; i++) T *= s[i]!;
  return { M: s[r - 2]!, N: b.layout.shape[r - 1]!, K: s[r - 1]!, T };
}

/** v with its last two dims swapped (no copy). */
export function transposedView(v: View): View {
  const s = v.layout.shape;
  const st = v.layout.strides;
  const r = s.length;
  const swap = <T>(x: readonly T[]): T[] => [...x.slice(0, -2), x[r - 1]!, x[r - 2]!];
  return { ...v, layout: { ...v.layout, shape: swap(s), strides: swap(st) } };
}

/** Element offsets of each batch entry of a and b, and their row and column strides in bytes. */
function operandLayout(a: View, b: View) {
  const batch = (v: View) =>
    stridedOffsets(v.layout.shape.slice(0, -2), v.layout.strides.slice(0, -2), v.layout.offset);
  const st = (v: View, i: number) => v.layout.strides[v.layout.strides.length + i]! * 4;
  return {
    aBatch: batch(a),
    bBatch: batch(b),
    ars: st(a, -2),
    acs: st(a, -1),
    brs: st(b, -2),
    bcs: st(b, -1),
  };
}

export function createGemm(ctx: GemmContext): Gemm {
  const { heap, work } = ctx;
  const fns = gemmFuncs(ctx.tile).map((n) => ctx.exports[n]!);

  /** C (row-major at byte address cBase) (+)= A B, with A and B addressed as `aAddr + 4 * element offset`. */
  const run = (a: View, b: View, aAddr: number, bAddr: number, cBase: number, accumulate = false): void => {
    const { M, N, K, T } = productDims(a, b);
    const acc = accumulate ? 1 : 0;
    const tile = tileFor(ctx.tile, M, N);
    const [SG, SG_PACKED] = tile === ctx.tile ? [SGEMM, SGEMM_PACKED] : [SGEMM_NARROW, SGEMM_PACKED_NARROW];
    const flops = T * M * N * K;
    const { aBatch, bBatch, ars, acs, brs, bcs } = operandLayout(a, b);
    const ldc = N * 4;
    const pool = flops >= ctx.minThreaded ? ctx.pool() : null;
    const p = pool?.ready ? pool : null; // until the workers are up, run here
    if (!p) {
      ctx.counters.matmulWasm++;
      const fn = fns[SG]!;
      for (let t = 0; t < T; t++)
        fn(
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
          acc,
          work,
        );
      return;
    }
    // Chunks that every thread, this one included, claims from a shared counter, so a thread slowed by other
    // load takes fewer. With enough batch entries a chunk is whole entries (each packs its own panels).
    // Otherwise B of each entry is packed once, shared, by a few pack chunks, and the compute chunks are
    // row blocks (column blocks when there are too few rows) that only pack their part of A; or, when B is
    // read in place, column blocks of sgemm calls.
    const P = p.size + 1;
    const want = CHUNKS_PER_THREAD * P;
    const within = T < want; // split inside batch entries
    // a B that sgemm reads in place (gemm.ts, readsInPlace: row-major, M <= 16) is not packed and shared
    const shared = within && !(M <= 16 && bcs === 4 && N % NR === 0);
    const per = Math.ceil(want / T);
    let mCh = M;
    let nCh = N;
    if (within) {
      mCh = Math.max(MIN_CHUNK_ROWS, Math.ceil(M / per / tile.mr) * tile.mr);
      if (Math.ceil(M / mCh) < Math.min(per, P)) {
        mCh = M;
        nCh = Math.max(MIN_CHUNK_ROWS, Math.ceil(N / per / NR) * NR);
      }
    }
    const npad = Math.ceil(N / NR) * NR;
    const kBlocks = Math.ceil(K / KC);
    // pack chunks: about two per thread in all, each a range of whole panels of one K block
    const packW = Math.ceil(N / Math.max(1, Math.ceil((2 * P) / (T * kBlocks))) / NR) * NR;
    const pbBytes = shared ? 4 * T * K * npad : 0;
    const pb = shared ? heap.alloc(pbBytes, false) : 0;
    ctx.counters.matmulThreaded++;
    const calls: Call[] = [];
    for (let t = 0; t < T && shared; t++)
      for (let pc = 0; pc < K; pc += KC)
        for (let j0 = 0; j0 < N; j0 += packW) {
          const dst = pb + 4 * (t * K * npad + pc * npad + j0 * Math.min(KC, K - pc));
          const src = bAddr + bBatch[t]! * 4 + pc * brs + j0 * bcs;
          calls.push([PACK_B, dst, src, brs, bcs, Math.min(KC, K - pc), Math.min(packW, N - j0)]);
        }
    const lead = calls.length;
    for (let t = 0; t < T; t++)
      for (let m0 = 0; m0 < M; m0 += mCh)
        for (let n0 = 0; n0 < N; n0 += nCh) {
          const a0 = aAddr + aBatch[t]! * 4 + m0 * ars;
          const c0 = cBase + t * M * N * 4 + m0 * ldc + n0 * 4;
          const rows = Math.min(mCh, M - m0);
          const cols = Math.min(nCh, N - n0);
          if (shared)
            calls.push([
              SG_PACKED,
              rows,
              cols,
              K,
              a0,
              ars,
              acs,
              pb + 4 * t * K * npad,
              npad,
              n0,
              c0,
              ldc,
              acc,
            ]);
          else
            calls.push([
              SG,
              rows,
              cols,
              K,
              a0,
              ars,
              acs,
              bAddr + bBatch[t]! * 4 + n0 * bcs,
              brs,
              bcs,
              c0,
              ldc,
              acc,
            ]);
        }
    try {
      p.run(calls, fns, heap, { lead, work, withWork: (call) => call[0] !== PACK_B });
    } finally {
      if (shared) heap.release(pb, pbBytes);
    }
  };

  const runCausal = (
    a: View,
    b: View,
    aAddr: number,
    bAddr: number,
    cBase: number,
    spec: CausalSpec,
  ): void => {
    const { M, N, K, T } = productDims(a, b);
    const { aBatch, bBatch, ars, acs, brs, bcs } = operandLayout(a, b);
    const ldc = N * 4;
    const { period, offset } = spec;
    // A call per batch entry, its groups (of rows, or of k for "kT") done in the kernel; split into chunks
    // of whole tiles of the causal rows when there are fewer entries than the threads want.
    const kT = spec.kind === "kT";
    const [rows, depth, groups] = kT ? [M, period, K / period] : [period, K, M / period];
    const pool = T * M * N * K >= ctx.minThreaded ? ctx.pool() : null;
    const p = pool?.ready ? pool : null;
    const want = p ? CHUNKS_PER_THREAD * (p.size + 1) : 1;
    const mr = ctx.tile.mr;
    const chunk = Math.max(8 * mr, Math.ceil(rows / Math.ceil(want / T) / mr) * mr);
    const calls: Call[] = [];
    for (let t = 0; t < T; t++)
      for (let r0 = 0; r0 < rows; r0 += chunk)
        calls.push([
          SGEMM_CAUSAL,
          Math.min(chunk, rows - r0),
          N,
          depth,
          aAddr + aBatch[t]! * 4 + r0 * ars,
          ars,
          acs,
          bAddr + bBatch[t]! * 4,
          brs,
          bcs,
          cBase + t * M * N * 4 + r0 * ldc,
          ldc,
          r0,
          offset,
          CAUSAL_KIND[spec.kind],
          groups,
          period,
        ]);
    if (!p) {
      ctx.counters.matmulWasm++;
      const fn = fns[SGEMM_CAUSAL]!;
      for (const c of calls) fn(...c.slice(1), work);
      return;
    }
    ctx.counters.matmulThreaded++;
    p.run(calls, fns, heap, { work, withWork: () => true });
  };

  const runPair = (a: View, b: View, b2: View, at: PairAddresses, third?: PairThird): boolean => {
    const { M, N, K, T } = productDims(a, b);
    const N2 = b2.layout.shape.at(-1)!;
    const N3 = third ? third.view.layout.shape.at(-1)! : 0;
    const pool = T * M * (N + N2) * K >= ctx.minThreaded ? ctx.pool() : null;
    // split over threads, or a product on the narrow tile (which a pass of the main tile would round
    // differently from a * b alone): the two products one by one, the third left to the caller
    if (pool?.ready || tileFor(ctx.tile, M, N) !== ctx.tile) {
      run(a, b, at.a, at.b, at.c);
      run(a, b2, at.a, at.b2, at.c2);
      return false;
    }
    const dStrides = third?.view.layout.strides ?? [0, 1];
    const fused = third && T === 1 && N3 % NR === 0 && N3 <= PAIR_MAX_N2 && dStrides.at(-1) === 1;
    ctx.counters.matmulWasm++;
    const { aBatch, bBatch, ars, acs, brs, bcs } = operandLayout(a, b);
    const l2 = operandLayout(a, b2);
    const fn = fns[SGEMM_PAIR]!;
    for (let t = 0; t < T; t++)
      fn(
        M,
        N,
        K,
        at.a + aBatch[t]! * 4,
        ars,
        acs,
        at.b + bBatch[t]! * 4,
        brs,
        bcs,
        at.c + t * M * N * 4,
        N2,
        at.b2 + l2.bBatch[t]! * 4,
        l2.brs,
        l2.bcs,
        at.c2 + t * M * N2 * 4,
        fused ? third.d + 4 * third.view.layout.offset : 0,
        fused ? 4 * dStrides.at(-2)! : 0,
        fused ? third.c3 : 0,
        fused ? N3 : 0,
        fused ? third.scale : 0,
        work,
      );
    return fused === true;
  };

  return { run, runPair, runCausal };
}
