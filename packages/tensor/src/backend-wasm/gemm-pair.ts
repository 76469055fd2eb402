// Two products of one A in one pass of the wasm sgemm (gemm.ts): C = A B and C2 = A B2, where B2 has at
// most 16 columns. Each block of A is packed once and multiplied by both. These are LoRA's pairs: x W^T
// with x A^T in the forward, dy W with dy (s B) in the backward. Run apart, the narrow product packed A
// again (a [T, in] activation read back from memory for 8 columns of output) and ran at 30-45 GFLOP/s in
// the training step; here its 8 columns are one more column panel of the big product's blocks.
// Optionally a third product reads the same packed blocks: C3 = s A^T D for a D of A's rows (LoRA's
// dB = s dy^T (x A^T)), which run apart read dy once more, in place, at 25-35 GFLOP/s.

import {
  add,
  type Code,
  call,
  cat,
  doWhile,
  eq,
  Func,
  f32x4add,
  f32x4madd,
  f32x4mul,
  forRange,
  get,
  i32c,
  ifThen,
  inc,
  lane32,
  load32splat,
  lt,
  minI,
  mul,
  ne,
  set,
  sub,
  v128load,
  v128store,
  v128zero,
} from "./emit.js";
import { f32x4splat } from "./fused-exp.js";
import { blockLoops, NR, rowBlockLoops } from "./gemm-pack.js";
import type { GemmTile } from "./gemm-tile.js";

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
  fn: { packA: number; packB: number; gebp: number; pairT: number };
}

/**
 * pair_t(pa, mc, kc, d, ldd, c3, N3, scale): C3[kc, N3] += scale A^T D for one packed block of A (mc rows,
 * kc deep, in the MR-row panels pack_a writes, zero past mc) and D's matching rows [mc, N3] at d (row
 * stride ldd bytes), C3 row-major with N3 columns, N3 a multiple of 8. Per panel and 8 columns the MR
 * rows of D (times scale) stay in registers while k runs down the panel: two accumulators of C3's row k
 * take MR multiply-adds each, A's MR values splatted as in the register tile (gemm-tile.ts).
 */
export function pairT(tile: GemmTile): Func {
  const MR = tile.mr;
  const f = new Func("pair_t", ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "f32"]);
  const [pa, mc, kc, d, ldd, c3, N3, scale] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [ip, rows, j, ap, end, cp, x, y] = Array.from({ length: 8 }, () => f.local());
  const dv = Array.from({ length: 2 * MR }, () => f.local("v128"));
  const [sv, acc0, acc1, av, sp] = Array.from({ length: 5 }, () => f.local("v128"));
  const loadD: Code[] = [];
  for (let r = 0; r < MR; r++)
    for (let h = 0; h < 2; h++) {
      const row = add(get(d), add(mul(add(get(ip), i32c(r)), get(ldd)), get(j)));
      loadD.push(
        ifThen(
          lt(i32c(r), get(rows)),
          set(dv[2 * r + h]!, f32x4mul(v128load(row, 16 * h), get(sv))),
          set(dv[2 * r + h]!, v128zero()),
        ),
      );
    }
  const step: Code[] = [set(acc0, v128load(get(cp))), set(acc1, v128load(get(cp), 16))];
  if (tile.fma) step.push(set(av, v128load(get(ap))));
  for (let r = 0; r < MR; r++) {
    step.push(set(sp, tile.fma && r < 4 ? lane32(get(av), r) : load32splat(get(ap), 4 * r)));
    for (const [h, acc] of [
      [0, acc0],
      [1, acc1],
    ] as const) {
      const v = get(dv[2 * r + h]!);
      step.push(
        set(acc, tile.fma ? f32x4madd(get(sp), v, get(acc)) : f32x4add(get(acc), f32x4mul(get(sp), v))),
      );
    }
  }
  step.push(
    v128store(get(cp), get(acc0)),
    v128store(get(cp), get(acc1), 16),
    inc(ap, 4 * MR),
    inc(cp, mul(get(N3), i32c(4))),
  );
  f.body = cat(
    set(sv, f32x4splat(get(scale))),
    forRange(
      ip,
      i32c(0),
      get(mc),
      MR,
      set(rows, minI(sub(get(mc), get(ip)), i32c(MR), x, y)),
      forRange(
        j,
        i32c(0),
        mul(get(N3), i32c(4)),
        4 * NR,
        ...loadD,
        set(ap, add(get(pa), mul(get(ip), mul(get(kc), i32c(4))))),
        set(end, add(get(ap), mul(get(kc), i32c(4 * MR)))),
        set(cp, add(get(c3), get(j))),
        // do ... while (ap != end), as the register tile's k loop
        doWhile(ne(get(ap), get(end)), ...step),
      ),
    ),
  );
  return f;
}

/**
 * sgemm_pair(M, N, K, a, ars, acs, b, brs, bcs, c, N2, b2, brs2, bcs2, c2, d, ldd, c3, N3, scale, work):
 * C[M, N] = A[M, K] B[K, N] and C2[M, N2] = A B2[K, N2] (N2 <= PAIR_MAX_N2), C and C2 row-major and
 * contiguous (row strides 4 N and 4 N2). When d is not 0, also C3[K, N3] += scale A^T D for D [M, N3] at d
 * (row stride ldd bytes, N3 a multiple of 8) into a row-major C3 (pair_t; C3 comes zeroed). Operands
 * strided as in sgemm; `work` is a WORKSPACE_BYTES block of the calling thread.
 */
export function sgemmPair(L: PairLayout): Func {
  const f = new Func("sgemm_pair", [...new Array<"i32">(19).fill("i32"), "f32", "i32"]);
  const [M, N, K, a, ars, acs, b, brs, bcs, c, N2, b2, brs2, bcs2, c2, d, ldd, c3, N3, scale, work] =
    Array.from({ length: 21 }, (_, i) => i);
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
  f.body = blockLoops(
    { jc, pc, nc, kc, N, K, t1: x, t2: y },
    L.nc,
    L.kc,
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
    rowBlockLoops(
      { ic, mc, M, a: a, ars, acs, pc, kc, t1: x, t2: y },
      L.mc,
      L.fn.packA,
      pa,
      (_, packCall) => packCall,
      gebp(
        get(nc),
        pb,
        add(get(c), add(mul(get(ic), mul(get(N), i32c(4))), mul(get(jc), i32c(4)))),
        mul(get(N), i32c(4)),
      ),
      ifThen(
        eq(get(jc), i32c(0)),
        cat(
          gebp(get(N2), pb2, add(get(c2), mul(get(ic), mul(get(N2), i32c(4)))), mul(get(N2), i32c(4))),
          ifThen(
            ne(get(d), i32c(0)),
            call(
              L.fn.pairT,
              pa,
              get(mc),
              get(kc),
              add(get(d), mul(get(ic), get(ldd))),
              get(ldd),
              add(get(c3), mul(get(pc), mul(get(N3), i32c(4)))),
              get(N3),
              get(scale),
            ),
          ),
        ),
      ),
    ),
  );
  return f;
}
