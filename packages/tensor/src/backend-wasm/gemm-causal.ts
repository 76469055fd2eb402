// The causal attention products of the wasm sgemm (see CausalSpec in backend.ts), skipped register tile by
// register tile: each MR x 8 tile of C gets only the k range the causal mask lets through for its rows, and
// a tile the mask cancels entirely is not computed at all, only zeroed (C comes uninitialized).
// A and B are packed once per block as in sgemm (gemm.ts), and a tile's k range is a sub-range of its
// packed panels. Blocks of 40 rows, each its own sgemm over the columns (or k) the block's last row
// reaches, skipped only a quarter of the product instead of about half (0.83-1.01 against 1.15-1.18 ms
// at 16 x 256 x 128 x 64, where this runs in 0.67-0.73).

import type { CausalSpec } from "../backend/backend.js";
import {
  add,
  and,
  type Code,
  call,
  cat,
  divU,
  eq,
  Func,
  f32c,
  f32store,
  forRange,
  ge,
  get,
  gt,
  i32c,
  i32or,
  ifThen,
  lt,
  maxI,
  minI,
  mul,
  select,
  set,
  sub,
  v128store,
  v128zero,
} from "./emit.js";
import { blockLoops, NR, rowBlockLoops } from "./gemm-pack.js";

/** The kinds, as the kernel's `kind` argument takes them. */
export const CAUSAL_KIND = { cols: 0, k: 1, kT: 2 } as const;

/** The module's layout the causal functions build on (gemm.ts): function indices and block sizes. */
export interface CausalLayout {
  mr: number;
  /** Rows of A packed at a time, the K block and the column block. */
  mc: number;
  kc: number;
  nc: number;
  /** Workspace offsets of the B pack and the tile scratch (the A pack is at the start). */
  packBAt: number;
  scratchAt: number;
  /** Function indices: pack_a of the tile, pack_b, panel of the tile, tile_edge, and gebp_causal itself. */
  fn: { packA: number; packB: number; panel: number; tileEdge: number; gebpCausal: number };
}

/**
 * The k range [lo, hi) that rows [t0, t1] of C need under the causal rule, as (lo, hi) in absolute k, or
 * an empty range for a tile at columns from `col` that the mask cancels ("cols"): row t keeps columns up
 * to t + offset; A is zero at k > t + offset ("k"); rows are s and only k >= s - offset counts ("kT").
 */
function tileRange(
  v: Record<"kind" | "t0" | "t1" | "offset" | "col" | "K" | "lo" | "hi", number>,
  tmp: [number, number],
): Code {
  const [kind, t0, t1, offset] = [get(v.kind), get(v.t0), get(v.t1), get(v.offset)];
  return cat(
    set(v.lo, select(sub(t0, offset), i32c(0), eq(kind, i32c(CAUSAL_KIND.kT)))),
    set(
      v.hi,
      select(minI(add(t1, add(offset, i32c(1))), get(v.K), ...tmp), get(v.K), eq(kind, i32c(CAUSAL_KIND.k))),
    ),
    // cols: a tile wholly right of its last row's reach is empty (lo is 0 there)
    ifThen(and(eq(kind, i32c(CAUSAL_KIND.cols)), lt(add(t1, offset), get(v.col))), set(v.hi, get(v.lo))),
  );
}

/**
 * gebp_causal(mc, nc, kc, pa, pb, c, ldc, scratch, row0, col0, k0, K, offset, kind, fresh): C[mc, nc] +=
 * A B over packed panels (as gebp in gemm.ts: A at pa, kc deep, B at pb) of the K block starting at k0,
 * each tile only over the k its rows need; row0 and col0 are the causal row and column of the block's
 * first row and column, K the product's whole depth. With `fresh`, C holds nothing from an earlier call,
 * so a tile's first K block writes it instead of adding to it; a "cols" tile the mask cancels is written
 * zero in the first K block. Every element of C is written.
 */
function gebpCausal(L: CausalLayout): Func {
  const MR = L.mr;
  const f = new Func("gebp_causal", 15);
  const [mc, nc, kc, pa, pb, c, ldc, scratch, row0, col0, k0, K, offset, kind, fresh] = Array.from(
    { length: 15 },
    (_, i) => i,
  );
  const [jp, ip, cols, rows, b, t0, t1, lo, hi, col, first, whole, i0, start, x, y, r, j] = Array.from(
    { length: 18 },
    () => f.local(),
  );
  const panel = (row: Code, k: Code, kLen: Code, tiles: Code, target: Code, ldt: Code, first: Code): Code =>
    call(
      L.fn.panel,
      add(add(get(pa), mul(row, mul(get(kc), i32c(4)))), mul(k, i32c(4 * MR))),
      add(get(b), mul(k, i32c(4 * NR))),
      kLen,
      i32c(4 * MR),
      i32c(4 * NR),
      mul(get(kc), i32c(4)),
      tiles,
      target,
      ldt,
      first,
    );
  const tile = (target: Code, ldt: Code, first: Code): Code =>
    panel(get(ip), get(lo), sub(get(hi), get(lo)), i32c(1), target, ldt, first);
  // "cols": the whole tiles of a full column panel from the first one that reaches it, one run of full k
  const colsRun = cat(
    set(i0, sub(sub(get(col), get(offset)), add(get(row0), i32c(MR - 1)))),
    set(i0, select(mul(divU(add(get(i0), i32c(MR - 1)), i32c(MR)), i32c(MR)), i32c(0), gt(get(i0), i32c(0)))),
    set(i0, minI(get(i0), get(whole), x, y)),
    // the tiles above it are zero (written in the first K block: C comes uninitialized)
    ifThen(
      eq(get(k0), i32c(0)),
      forRange(
        r,
        i32c(0),
        get(i0),
        1,
        set(x, add(get(c), add(mul(get(r), get(ldc)), mul(get(jp), i32c(4))))),
        v128store(get(x), v128zero()),
        v128store(get(x), v128zero(), 16),
      ),
    ),
    ifThen(
      lt(get(i0), get(whole)),
      panel(
        get(i0),
        i32c(0),
        get(kc),
        divU(sub(get(whole), get(i0)), i32c(MR)),
        add(get(c), add(mul(get(i0), get(ldc)), mul(get(jp), i32c(4)))),
        get(ldc),
        and(get(fresh), eq(get(k0), i32c(0))),
      ),
    ),
    set(start, get(whole)),
  );
  f.body = cat(
    set(whole, mul(divU(get(mc), i32c(MR)), i32c(MR))),
    forRange(
      jp,
      i32c(0),
      get(nc),
      NR,
      set(cols, minI(sub(get(nc), get(jp)), i32c(NR), x, y)),
      set(b, add(get(pb), mul(get(jp), mul(get(kc), i32c(4))))),
      set(col, add(get(col0), get(jp))),
      set(start, i32c(0)),
      ifThen(and(eq(get(kind), i32c(CAUSAL_KIND.cols)), eq(get(cols), i32c(NR))), colsRun),
      forRange(
        ip,
        get(start),
        get(mc),
        MR,
        set(rows, minI(sub(get(mc), get(ip)), i32c(MR), x, y)),
        set(t0, add(get(row0), get(ip))),
        set(t1, sub(add(get(t0), get(rows)), i32c(1))),
        tileRange({ kind, t0, t1, offset, col, K, lo, hi }, [x, y]),
        // the range within this K block; the tile's first block when its range starts here
        set(lo, maxI(get(lo), i32c(0), x, y)),
        set(first, and(get(fresh), ge(get(lo), get(k0)))),
        set(lo, maxI(sub(get(lo), get(k0)), i32c(0), x, y)),
        set(hi, minI(sub(get(hi), get(k0)), get(kc), x, y)),
        // a "cols" tile the mask cancels: zeros, once
        ifThen(
          and(ge(get(lo), get(hi)), and(eq(get(kind), i32c(CAUSAL_KIND.cols)), eq(get(k0), i32c(0)))),
          forRange(
            r,
            get(ip),
            add(get(ip), get(rows)),
            1,
            forRange(
              j,
              i32c(0),
              get(cols),
              1,
              f32store(add(get(c), add(mul(get(r), get(ldc)), mul(add(get(jp), get(j)), i32c(4)))), f32c(0)),
            ),
          ),
        ),
        ifThen(
          lt(get(lo), get(hi)),
          ifThen(
            and(eq(get(rows), i32c(MR)), eq(get(cols), i32c(NR))),
            tile(add(get(c), add(mul(get(ip), get(ldc)), mul(get(jp), i32c(4)))), get(ldc), get(first)),
            cat(
              tile(get(scratch), i32c(4 * NR), i32c(1)),
              call(
                L.fn.tileEdge,
                add(get(c), mul(get(ip), get(ldc))),
                get(ldc),
                get(scratch),
                get(jp),
                get(rows),
                get(cols),
                get(first),
              ),
            ),
          ),
        ),
      ),
    ),
  );
  return f;
}

/**
 * sgemm_causal(M, N, K, a, ars, acs, b, brs, bcs, c, ldc, r0, offset, kind, groups, period, work):
 * C[M, N] = A[M, K] B[K, N] over what the causal rule of `kind` keeps, zero elsewhere, rows being
 * causal rows r0 .. r0 + M - 1, for `groups` groups. "cols" and "k": group g is the same product on the
 * rows `period` further down A and C each, with the same B (packed once for all). "kT": k runs over
 * groups, so group g's A and B start K columns and K rows further on and all add into one C. `work` is a
 * WORKSPACE_BYTES block of the calling thread.
 */
function sgemmCausal(L: CausalLayout): Func {
  const f = new Func("sgemm_causal", 17);
  const [M, N, K, a, ars, acs, b, brs, bcs, c, ldc, r0, offset, kind, groups, period, work] = Array.from(
    { length: 17 },
    (_, i) => i,
  );
  const [g, jc, pc, ic, nc, kc, mc, ag, bg, cg, kT, x, y] = Array.from({ length: 13 }, () => f.local());
  const pa = get(work);
  const pb = add(get(work), i32c(L.packBAt));
  f.body = cat(
    set(kT, eq(get(kind), i32c(CAUSAL_KIND.kT))),
    blockLoops(
      { jc, pc, nc, kc, N, K, t1: x, t2: y },
      L.nc,
      L.kc,
      forRange(
        g,
        i32c(0),
        get(groups),
        1,
        // the group's operands: along k ("kT") or down the rows
        set(ag, add(get(a), mul(get(g), select(mul(get(K), get(acs)), mul(get(period), get(ars)), get(kT))))),
        set(bg, add(get(b), select(mul(mul(get(g), get(K)), get(brs)), i32c(0), get(kT)))),
        set(cg, add(get(c), select(i32c(0), mul(mul(get(g), get(period)), get(ldc)), get(kT)))),
        ifThen(
          i32or(get(kT), eq(get(g), i32c(0))),
          call(
            L.fn.packB,
            pb,
            add(get(bg), add(mul(get(pc), get(brs)), mul(get(jc), get(bcs)))),
            get(brs),
            get(bcs),
            get(kc),
            get(nc),
          ),
        ),
        rowBlockLoops(
          { ic, mc, M, a: ag, ars, acs, pc, kc, t1: x, t2: y },
          L.mc,
          L.fn.packA,
          pa,
          (_, packCall) => packCall,
          call(
            L.fn.gebpCausal,
            get(mc),
            get(nc),
            get(kc),
            pa,
            pb,
            add(get(cg), add(mul(get(ic), get(ldc)), mul(get(jc), i32c(4)))),
            get(ldc),
            add(get(work), i32c(L.scratchAt)),
            add(get(r0), get(ic)),
            get(jc),
            get(pc),
            get(K),
            get(offset),
            get(kind),
            i32or(eq(get(kT), i32c(0)), eq(get(g), i32c(0))),
          ),
        ),
      ),
    ),
  );
  return f;
}

/** The causal functions of a gemm module: gebp_causal (at L.fn.gebpCausal), then sgemm_causal. */
export const causalFuncs = (L: CausalLayout): Func[] => [gebpCausal(L), sgemmCausal(L)];

/** The multiply-adds sgemm_causal does for one group of `spec` (rows 0 .. M - 1), tile by tile. */
export function causalWork(spec: CausalSpec, M: number, N: number, K: number, mr: number): number {
  const { offset, kind } = spec;
  let total = 0;
  for (let t0 = 0; t0 < M; t0 += mr) {
    const rows = Math.min(mr, M - t0);
    const t1 = t0 + rows - 1;
    const lo = kind === "kT" ? Math.max(0, t0 - offset) : 0;
    const hi = kind === "k" ? Math.min(K, t1 + offset + 1) : K;
    for (let j = 0; j < N; j += NR)
      if (!(kind === "cols" && t1 + offset < j)) total += rows * Math.min(NR, N - j) * Math.max(0, hi - lo);
  }
  return total;
}
