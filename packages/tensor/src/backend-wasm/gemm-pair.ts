// Two products of one A in one pass of the wasm sgemm (gemm.ts): C = A B and C2 = A B2, where B2 has at
// most 16 columns. Each block of A is packed once and multiplied by both. These are LoRA's pairs: x W^T
// with x A^T in the forward, dy W with dy (s B) in the backward. Run apart, the narrow product packed A
// again (a [T, in] activation read back from memory for 8 columns of output) and ran at 30-45 GFLOP/s in
// the training step; here its 8 columns are one more column panel of the big product's blocks.

import { add, type Code, call, eq, Func, forRange, get, i32c, ifThen, minI, mul, set, sub } from "./emit.js";
import { NR } from "./gemm-pack.js";

/** The most columns B2 may have. */
export const PAIR_MAX_N2 = 2 * NR;

/** The module's layout the pair builds on (gemm.ts): block sizes, workspace offsets, function indices. */
export interface PairLayout {
  mr: number;
  mc: number;
  kc: number;
  nc: number;
  /** Workspace offsets of the B pack, the tile scratch and B2's pack (the A pack is at the start). */
  packBAt: number;
  scratchAt: number;
  packB2At: number;
  fn: { packA: number; packB: number; gebp: number };
}

/**
 * sgemm_pair(M, N, K, a, ars, acs, b, brs, bcs, c, N2, b2, brs2, bcs2, c2, work): C[M, N] = A[M, K] B[K, N]
 * and C2[M, N2] = A B2[K, N2] (N2 <= PAIR_MAX_N2), C and C2 row-major and contiguous (row strides 4 N and
 * 4 N2). Operands strided as in sgemm; `work` is a WORKSPACE_BYTES block of the calling thread.
 */
export function sgemmPair(L: PairLayout): Func {
  const f = new Func("sgemm_pair", 16);
  const [M, N, K, a, ars, acs, b, brs, bcs, c, N2, b2, brs2, bcs2, c2, work] = Array.from(
    { length: 16 },
    (_, i) => i,
  );
  const [jc, pc, ic, nc, kc, mc, first, x, y] = Array.from({ length: 9 }, () => f.local());
  const [pa, pb, pb2, scratch] = [
    get(work),
    add(get(work), i32c(L.packBAt)),
    add(get(work), i32c(L.packB2At)),
    add(get(work), i32c(L.scratchAt)),
  ];
  // gebp over the packed A block and a packed B block: C[mc, cols] (+)= A B
  const gebp = (cols: Code, packed: Code, cAt: Code, ldc: Code): Code =>
    call(
      L.fn.gebp,
      get(mc),
      cols,
      get(kc),
      pa,
      packed,
      cAt,
      ldc,
      scratch,
      get(first),
      i32c(4 * L.mr),
      mul(get(kc), i32c(4)),
      i32c(4 * NR),
      mul(get(kc), i32c(4)),
    );
  f.body = forRange(
    jc,
    i32c(0),
    get(N),
    L.nc,
    set(nc, minI(sub(get(N), get(jc)), i32c(L.nc), x, y)),
    forRange(
      pc,
      i32c(0),
      get(K),
      L.kc,
      set(kc, minI(sub(get(K), get(pc)), i32c(L.kc), x, y)),
      set(first, eq(get(pc), i32c(0))),
      call(
        L.fn.packB,
        pb,
        add(get(b), add(mul(get(pc), get(brs)), mul(get(jc), get(bcs)))),
        get(brs),
        get(bcs),
        get(kc),
        get(nc),
      ),
      // B2 rides with the first column block
      ifThen(
        eq(get(jc), i32c(0)),
        call(L.fn.packB, pb2, add(get(b2), mul(get(pc), get(brs2))), get(brs2), get(bcs2), get(kc), get(N2)),
      ),
      forRange(
        ic,
        i32c(0),
        get(M),
        L.mc,
        set(mc, minI(sub(get(M), get(ic)), i32c(L.mc), x, y)),
        call(
          L.fn.packA,
          pa,
          add(get(a), add(mul(get(ic), get(ars)), mul(get(pc), get(acs)))),
          get(ars),
          get(acs),
          get(mc),
          get(kc),
        ),
        gebp(
          get(nc),
          pb,
          add(get(c), add(mul(get(ic), mul(get(N), i32c(4))), mul(get(jc), i32c(4)))),
          mul(get(N), i32c(4)),
        ),
        ifThen(
          eq(get(jc), i32c(0)),
          gebp(get(N2), pb2, add(get(c2), mul(get(ic), mul(get(N2), i32c(4)))), mul(get(N2), i32c(4))),
        ),
      ),
    ),
  );
  return f;
}
