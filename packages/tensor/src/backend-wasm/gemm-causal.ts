// The sub-products of a causal attention matmul (see CausalSpec in backend.ts): per batch entry, blocks of
// RB rows each multiplied over only the columns (or the k range) the causal mask can reach, so the part of
// the product above the diagonal, which the mask or a zero probability cancels, is not computed.

import type { CausalSpec } from "../backend/backend.js";

/** Register tiles per block of rows: smaller blocks skip more but pack B more often. */
const TILES_PER_BLOCK = 8;

/** One sub-product of an M x N x K product: rows [r0, r0 + rows), columns [0, cols), k in [k0, k0 + kLen). */
export interface CausalPart {
  r0: number;
  rows: number;
  cols: number;
  k0: number;
  kLen: number;
}

/**
 * The sub-products for C[M, N] = A[M, K] B[K, N] under `spec`. "cols" and "k": rows are (group, t) with
 * t = row mod period, and row t needs columns (or k) below t + offset + 1. "kT": rows are s, k runs over
 * (group, t), and only t >= s - offset counts; the k range starts there within the first group (later
 * groups are taken whole, their skipped part being zeros).
 */
export function causalParts(spec: CausalSpec, M: number, N: number, K: number, mr: number): CausalPart[] {
  const { period, offset, kind } = spec;
  const RB = TILES_PER_BLOCK * mr; // rows per block, whole register tiles (`mr` rows)
  const parts: CausalPart[] = [];
  if (kind === "kT") {
    for (let s0 = 0; s0 < M; s0 += RB) {
      const k0 = Math.min(Math.max(0, s0 - offset), K - 1);
      parts.push({ r0: s0, rows: Math.min(RB, M - s0), cols: N, k0, kLen: K - k0 });
    }
    return parts;
  }
  for (let g0 = 0; g0 < M; g0 += period)
    for (let t0 = 0; t0 < period; t0 += RB) {
      const rows = Math.min(RB, period - t0);
      const reach = t0 + rows + offset; // the last row's t + offset + 1
      parts.push(
        kind === "cols"
          ? { r0: g0 + t0, rows, cols: Math.min(N, reach), k0: 0, kLen: K }
          : { r0: g0 + t0, rows, cols: N, k0: 0, kLen: Math.min(K, reach) },
      );
    }
  return parts;
}
