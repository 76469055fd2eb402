// The packing routines of the wasm sgemm (gemm.ts): B into k-major panels of NR = 8 columns, A into k-major
// panels of MR = 4 or 5 rows (the register tile's), zero-padded past the edge so the micro-kernel always
// runs the full tile. Operands are strided (bytes). When the packed direction is the contiguous one in
// memory (B transposed, A row-major) four k values of each row/column are read as one vector and 4 x 4
// blocks are transposed in registers; elementwise gathers of those cases ran at a third of the speed.

import {
  add,
  and,
  type Code,
  call,
  cat,
  eq,
  Func,
  f32c,
  f32load,
  f32store,
  forRange,
  get,
  i32c,
  ifThen,
  inc,
  lt,
  minI,
  mul,
  remU,
  set,
  sub,
  transpose4,
  v128load,
  v128store,
} from "./emit.js";

export const NR = 8;

/**
 * The drivers' loop over A's row blocks in K block pc (kc deep): ic over M in blocks of mc <= mcMax rows,
 * each packed into `pa` by pack_a (function index `packA`) or as `pack` does it with that call, then
 * `body`. Locals by index; t1 and t2 are scratch.
 */
export function rowBlockLoops(
  v: Record<"ic" | "mc" | "M" | "a" | "ars" | "acs" | "pc" | "kc" | "t1" | "t2", number>,
  mcMax: number,
  packA: number,
  pa: Code,
  pack: (src: Code, packCall: Code) => Code,
  ...body: Code[]
): Code {
  const src = add(get(v.a), add(mul(get(v.ic), get(v.ars)), mul(get(v.pc), get(v.acs))));
  return forRange(
    v.ic,
    i32c(0),
    get(v.M),
    mcMax,
    set(v.mc, minI(sub(get(v.M), get(v.ic)), i32c(mcMax), v.t1, v.t2)),
    pack(src, call(packA, pa, src, get(v.ars), get(v.acs), get(v.mc), get(v.kc))),
    ...body,
  );
}

/**
 * The gemm drivers' outer loops (Goto/BLIS): column blocks jc of nc <= ncMax columns of N and, in each, K
 * blocks pc of kc <= kcMax; `body` runs per (jc, pc). Locals by index; t1 and t2 are scratch.
 */
export function blockLoops(
  v: Record<"jc" | "pc" | "nc" | "kc" | "N" | "K" | "t1" | "t2", number>,
  ncMax: number,
  kcMax: number,
  ...body: Code[]
): Code {
  return forRange(
    v.jc,
    i32c(0),
    get(v.N),
    ncMax,
    set(v.nc, minI(sub(get(v.N), get(v.jc)), i32c(ncMax), v.t1, v.t2)),
    forRange(
      v.pc,
      i32c(0),
      get(v.K),
      kcMax,
      set(v.kc, minI(sub(get(v.K), get(v.pc)), i32c(kcMax), v.t1, v.t2)),
      ...body,
    ),
  );
}

/** pack_b(dst, src, rs, cs, kc, nc): panels of 8 columns, k-major, zero-padded past nc. */
export function packB(): Func {
  const f = new Func("pack_b", 6);
  const [dst, src, rs, cs, kc, nc] = [0, 1, 2, 3, 4, 5];
  const [jp, cols, s, p, jj, t1, t2, kc4, q, nc16] = Array.from({ length: 10 }, () => f.local());
  const col = Array.from({ length: NR }, () => f.local("v128"));
  const tmp = Array.from({ length: 4 }, () => f.local("v128"));
  // B row-major: a row of the panel is two vectors.
  const rowsContiguous = forRange(
    p,
    i32c(0),
    get(kc),
    1,
    v128store(get(dst), v128load(get(s))),
    v128store(get(dst), v128load(get(s), 16), 16),
    inc(dst, 4 * NR),
    inc(s, get(rs)),
  );
  // B transposed (rs = 4): four k of each of the 8 columns, two 4 x 4 transposes, four panel rows.
  const loads: Code[] = [set(q, get(s))];
  col.forEach((c, j) => {
    if (j > 0) loads.push(inc(q, get(cs)));
    loads.push(set(c, v128load(get(q))));
  });
  const stores: Code[] = [];
  for (let r = 0; r < 4; r++) {
    stores.push(v128store(get(dst), get(col[r]!), 32 * r));
    stores.push(v128store(get(dst), get(col[4 + r]!), 32 * r + 16));
  }
  const gatherRow: Code[] = [];
  for (let j = 0; j < NR; j++)
    gatherRow.push(f32store(get(dst), f32load(j === 0 ? get(s) : add(get(s), mul(get(cs), i32c(j)))), 4 * j));
  const colsContiguous = [
    set(kc4, and(get(kc), i32c(-4))),
    forRange(
      p,
      i32c(0),
      get(kc4),
      4,
      ...loads,
      transpose4(col.slice(0, 4), col.slice(0, 4), tmp),
      transpose4(col.slice(4), col.slice(4), tmp),
      ...stores,
      inc(dst, 16 * NR),
      inc(s, 16),
    ),
    forRange(p, get(kc4), get(kc), 1, ...gatherRow, inc(dst, 4 * NR), inc(s, 4)),
  ].flat();
  const partial = forRange(
    p,
    i32c(0),
    get(kc),
    1,
    forRange(
      jj,
      i32c(0),
      i32c(NR),
      1,
      ifThen(
        lt(get(jj), get(cols)),
        f32store(get(dst), f32load(add(get(s), mul(get(jj), get(cs))))),
        f32store(get(dst), f32c(0)),
      ),
      inc(dst, 4),
    ),
    inc(s, get(rs)),
  );
  // B row-major, two panels at a time: each k then reads one 64-byte line of B once (see pack_a).
  const d1 = f.local();
  const pairs = [
    set(nc16, and(get(nc), i32c(-16))),
    forRange(
      jp,
      i32c(0),
      get(nc16),
      16,
      set(s, add(get(src), mul(get(jp), i32c(4)))),
      set(d1, add(get(dst), mul(get(kc), i32c(32)))),
      forRange(
        p,
        i32c(0),
        get(kc),
        1,
        v128store(get(dst), v128load(get(s))),
        v128store(get(dst), v128load(get(s), 16), 16),
        v128store(get(d1), v128load(get(s), 32)),
        v128store(get(d1), v128load(get(s), 48), 16),
        inc(dst, 32),
        inc(d1, 32),
        inc(s, get(rs)),
      ),
      set(dst, get(d1)),
    ),
  ].flat();
  f.body = cat(
    ifThen(eq(get(cs), i32c(4)), pairs, set(nc16, i32c(0))),
    forRange(
      jp,
      get(nc16),
      get(nc),
      NR,
      set(cols, minI(sub(get(nc), get(jp)), i32c(NR), t1, t2)),
      set(s, add(get(src), mul(get(jp), get(cs)))),
      ifThen(
        eq(get(cols), i32c(NR)),
        ifThen(eq(get(cs), i32c(4)), rowsContiguous, ifThen(eq(get(rs), i32c(4)), colsContiguous, partial)),
        partial,
      ),
    ),
  );
  return f;
}

/**
 * pack_a(dst, src, rs, cs, mc, kc): panels of `mr` rows (the tile's, 4 or 5: gemm.ts), k-major, zero-padded
 * past mc. A fifth row travels as a scalar beside the vector of the first four.
 */
export function packA(mr: number, suffix = ""): Func {
  const f = new Func(`pack_a${suffix}`, 6);
  const [dst, src, rs, cs, mc, kc] = [0, 1, 2, 3, 4, 5];
  const [ip, rows, s, p, ii, t1, t2, kc4, q, mcG] = Array.from({ length: 10 }, () => f.local());
  const row = Array.from({ length: 4 }, () => f.local("v128"));
  const tmp = Array.from({ length: 4 }, () => f.local("v128"));
  const gatherCol = (rowStride: Code): Code[] =>
    Array.from({ length: mr }, (_, r) =>
      f32store(get(dst), f32load(r === 0 ? get(s) : add(get(s), mul(rowStride, i32c(r)))), 4 * r),
    );
  /** One panel column (mr contiguous floats) from `from` + off to `to` + toOff. */
  const column = (to: Code, from: Code, off = 0, toOff = 0): Code[] => [
    v128store(to, v128load(from, off), toOff),
    ...(mr > 4 ? [f32store(to, f32load(from, off + 16), toOff + 16)] : []),
  ];
  // A transposed (rs = 4): a panel column is contiguous.
  const colsContiguous = forRange(
    p,
    i32c(0),
    get(kc),
    1,
    ...column(get(dst), get(s)),
    inc(dst, 4 * mr),
    inc(s, get(cs)),
  );
  // A row-major (cs = 4): four k of each of the first 4 rows, one 4 x 4 transpose, four panel columns (a
  // fifth row's four k are copied as scalars).
  const loads: Code[] = [set(q, get(s))];
  row.forEach((r, i) => {
    if (i > 0) loads.push(inc(q, get(rs)));
    loads.push(set(r, v128load(get(q))));
  });
  const fifth: Code[] = [];
  if (mr > 4) {
    fifth.push(inc(q, get(rs)));
    for (let k = 0; k < 4; k++) fifth.push(f32store(get(dst), f32load(get(q), 4 * k), 4 * mr * k + 16));
  }
  const rowsContiguous = [
    set(kc4, and(get(kc), i32c(-4))),
    forRange(
      p,
      i32c(0),
      get(kc4),
      4,
      ...loads,
      ...fifth,
      transpose4(row, row, tmp),
      ...row.map((r, i) => v128store(get(dst), get(r), 4 * mr * i)),
      inc(dst, 16 * mr),
      inc(s, 16),
    ),
    forRange(p, get(kc4), get(kc), 1, ...gatherCol(get(rs)), inc(dst, 4 * mr), inc(s, 4)),
  ].flat();
  const strided = forRange(p, i32c(0), get(kc), 1, ...gatherCol(get(rs)), inc(dst, 4 * mr), inc(s, get(cs)));
  const partial = forRange(
    p,
    i32c(0),
    get(kc),
    1,
    forRange(
      ii,
      i32c(0),
      i32c(mr),
      1,
      ifThen(
        lt(get(ii), get(rows)),
        f32store(get(dst), f32load(add(get(s), mul(get(ii), get(rs))))),
        f32store(get(dst), f32c(0)),
      ),
      inc(dst, 4),
    ),
    inc(s, get(cs)),
  );
  // A transposed, four panels at a time: each k then reads 4 mr consecutive floats of A once. Panel by
  // panel, a line was read four times, and with a row stride of a multiple of 4 KiB its k rows all fall in
  // the same L1 set and were evicted in between.
  const d = Array.from({ length: 4 }, () => f.local());
  const group = 4 * mr;
  const groups = [
    set(mcG, sub(get(mc), remU(get(mc), i32c(group)))),
    forRange(
      ip,
      i32c(0),
      get(mcG),
      group,
      set(s, add(get(src), mul(get(ip), i32c(4)))),
      ...d.map((l, j) => set(l, add(get(dst), mul(get(kc), i32c(4 * mr * j))))),
      forRange(
        p,
        i32c(0),
        get(kc),
        1,
        ...d.flatMap((l, j) => column(get(l), get(s), 4 * mr * j)),
        ...d.map((l) => inc(l, 4 * mr)),
        inc(s, get(cs)),
      ),
      inc(dst, mul(get(kc), i32c(4 * group))),
    ),
  ].flat();
  f.body = cat(
    ifThen(eq(get(rs), i32c(4)), groups, set(mcG, i32c(0))),
    forRange(
      ip,
      get(mcG),
      get(mc),
      mr,
      set(rows, minI(sub(get(mc), get(ip)), i32c(mr), t1, t2)),
      set(s, add(get(src), mul(get(ip), get(rs)))),
      ifThen(
        eq(get(rows), i32c(mr)),
        ifThen(eq(get(rs), i32c(4)), colsContiguous, ifThen(eq(get(cs), i32c(4)), rowsContiguous, strided)),
        partial,
      ),
    ),
  );
  return f;
}
