// float32 WebAssembly SIMD kernels for RMSNorm (forward and backward) and RoPE, the memory-bound fused
// ops: the TypeScript kernels spend ~2-3 ns an element in double arithmetic, these a fraction of that
// even with the staging copies of "js" storage. Sums over a row and dweight's sums over rows are kept in
// f64 like the TypeScript kernels' accumulators; the rest is float32 arithmetic.

import {
  add,
  type Code,
  cat,
  Func,
  f32FromF64,
  f32load,
  f32store,
  f32x4add,
  f32x4mul,
  f32x4sub,
  f64add,
  f64c,
  f64div,
  f64FromF32,
  f64FromI32,
  f64mul,
  f64x2add,
  f64x2PromoteLow,
  forRange,
  get,
  i32c,
  inc,
  mul,
  set,
  v128load,
  v128store,
} from "./emit.js";
import {
  Acc,
  at,
  both,
  f32x4lane,
  f32x4splat,
  highHalf,
  i32and,
  type Row,
  rowLoop,
  rowsFunc,
  vstore,
} from "./fused-exp.js";

const f64sqrt = (a: Code): Code => [...a, 0x9f];
const f64load = (addr: Code): Code => [...addr, 0x2b, 3, 0];
const f64store = (addr: Code, v: Code): Code => [...addr, ...v, 0x39, 3, 0];

/** rms_norm(R, C, x, w, y, rstd, eps): y = x rstd w, rstd[r] = 1 / sqrt(mean(x[r]^2) + eps). */
function rmsNorm(): Func {
  const [C, x, w, y, rstd, eps] = [1, 2, 3, 4, 5, 6];
  return rowsFunc(
    "rms_norm",
    6,
    [x, y],
    (rw) => {
      const { f } = rw;
      const acc = new Acc(f);
      const s = f.local("f64");
      const sv = f.local("v128");
      const sq = (v: Code): Code => f32x4mul(v, v);
      return cat(
        acc.init(),
        acc.rowLoop(rw, acc.add(sq(v128load(at(x, rw.k)))), acc.add0(sq(f32x4splat(f32load(at(x, rw.k)))))),
        set(s, f64div(f64c(1), f64sqrt(f64add(f64div(acc.total(), f64FromI32(get(C))), get(eps))))),
        f32store(get(rstd), f32FromF64(get(s))),
        inc(rstd, 4),
        set(sv, f32x4splat(f32FromF64(get(s)))),
        both(rw, [x, w], (a, b) => f32x4mul(f32x4mul(a, get(sv)), b), vstore, y),
      );
    },
    ["f64"],
  );
}

/**
 * rms_norm_backward(R, C, dy, x, w, rstd, dx, dw): dx = dy w s - x s^3 mean(dy w x) per row, and
 * dw[c] += dy x s summed over rows into C doubles at dw (zero on entry).
 */
function rmsNormBackward(): Func {
  const [C, dy, x, w, rstd, dx, dw] = [1, 2, 3, 4, 5, 6, 7];
  return rowsFunc("rms_norm_backward", 8, [dy, x, dx], (rw) => {
    const { f } = rw;
    const acc = new Acc(f);
    const s = f.local("f64");
    const sv = f.local("v128");
    const kv = f.local("v128");
    const t = f.local("v128");
    const ld = (p: number): Code => v128load(at(p, rw.k));
    const ld0 = (p: number): Code => f32x4splat(f32load(at(p, rw.k)));
    const dwAt = (off = 0): Code => add(add(get(dw), mul(get(rw.k), i32c(2))), i32c(off));
    const dwVec = cat(
      set(t, f32x4mul(f32x4mul(ld(dy), ld(x)), get(sv))),
      v128store(dwAt(), f64x2add(v128load(dwAt()), f64x2PromoteLow(get(t)))),
      v128store(dwAt(16), f64x2add(v128load(dwAt(16)), f64x2PromoteLow(highHalf(get(t))))),
    );
    const dwTail = f64store(
      dwAt(),
      f64add(f64load(dwAt()), f64FromF32(f32x4lane(f32x4mul(f32x4mul(ld0(dy), ld0(x)), get(sv)), 0))),
    );
    const dxOf = (g: Code, ww: Code, xx: Code): Code =>
      f32x4sub(f32x4mul(f32x4mul(g, ww), get(sv)), f32x4mul(xx, get(kv)));
    return cat(
      set(s, f64FromF32(f32load(get(rstd)))),
      inc(rstd, 4),
      acc.init(),
      acc.rowLoop(
        rw,
        acc.add(f32x4mul(f32x4mul(ld(dy), ld(w)), ld(x))),
        acc.add0(f32x4mul(f32x4mul(ld0(dy), ld0(w)), ld0(x))),
      ),
      // k = s^3 dot / C
      set(
        kv,
        f32x4splat(
          f32FromF64(f64div(f64mul(f64mul(f64mul(get(s), get(s)), get(s)), acc.total()), f64FromI32(get(C)))),
        ),
      ),
      set(sv, f32x4splat(f32FromF64(get(s)))),
      rowLoop(
        rw,
        cat(v128store(at(dx, rw.k), dxOf(ld(dy), ld(w), ld(x))), dwVec),
        cat(f32store(at(dx, rw.k), f32x4lane(dxOf(ld0(dy), ld0(w), ld0(x)), 0)), dwTail),
      ),
    );
  });
}

/**
 * rope(B, H, T, D, x, c, s, y, sA, sB, xh, xt, yh, yt, sg): per row (b, h, t) of x and y, [B, H, T, D] or
 * [B, T, H, D] (byte strides xh, xt / yh, yt of a step in h and in t; each batch entry H T D floats), and
 * its table row (b, t) of c, s [B, T, D]: y1 = x1 c1 - sg x2 s[sA + i], y2 = x2 c2 + sg x1 s[sB + i] over
 * the halves (sA, sB byte offsets 0 or D/2 floats: the forward takes s1 then s2, the transposed map s2
 * then s1 with sg = -1).
 */
function rope(): Func {
  const f = new Func("rope", [...new Array<"i32">(14).fill("i32"), "f32"]);
  const [B, H, T, D, x, c, s, y, sA, sB, xh, xt, yh, yt, sg] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
  ];
  const [b, h, t] = [f.local(), f.local(), f.local()];
  const [x0, y0, xb, yb] = [f.local(), f.local(), f.local(), f.local()]; // row starts of (b, h) and of b
  const tabB = f.local(); // byte offset of the table rows of batch b
  const tab = f.local();
  const rowB = f.local(); // 4 D
  const w: Row = { f, k: f.local(), cb: f.local(), c4: f.local() }; // over the half row
  const sgv = f.local("v128");
  const p = (base: Code, off: number | Code = 0): Code =>
    add(add(base, get(w.k)), typeof off === "number" ? i32c(off) : off);
  const xp = (half: boolean): Code => p(get(x), half ? get(w.cb) : 0);
  const tp = (base: number, off: Code | number): Code => p(add(get(base), get(tab)), off);
  const body = (ld: (a: Code) => Code, st: (a: Code, v: Code) => Code): Code => {
    const [x1, x2] = [ld(xp(false)), ld(xp(true))];
    const [c1, c2] = [ld(tp(c, 0)), ld(tp(c, get(w.cb)))];
    const [s1, s2] = [ld(tp(s, get(sA))), ld(tp(s, get(sB)))];
    return cat(
      st(p(get(y)), f32x4sub(f32x4mul(x1, c1), f32x4mul(get(sgv), f32x4mul(x2, s1)))),
      st(p(get(y), get(w.cb)), f32x4add(f32x4mul(x2, c2), f32x4mul(get(sgv), f32x4mul(x1, s2)))),
    );
  };
  const row = rowLoop(
    w,
    body(v128load, vstore),
    body(
      (a) => f32x4splat(f32load(a)),
      (a, v) => f32store(a, f32x4lane(v, 0)),
    ),
  );
  f.body = cat(
    set(sgv, f32x4splat(get(sg))),
    set(rowB, mul(get(D), i32c(4))),
    set(w.cb, mul(get(D), i32c(2))),
    set(w.c4, i32and(get(w.cb), i32c(-16))),
    set(tabB, i32c(0)),
    set(xb, get(x)),
    set(yb, get(y)),
    forRange(
      b,
      i32c(0),
      get(B),
      1,
      set(x0, get(xb)),
      set(y0, get(yb)),
      forRange(
        h,
        i32c(0),
        get(H),
        1,
        set(tab, get(tabB)),
        set(x, get(x0)),
        set(y, get(y0)),
        forRange(t, i32c(0), get(T), 1, row, inc(x, get(xt)), inc(y, get(yt)), inc(tab, get(rowB))),
        inc(x0, get(xh)),
        inc(y0, get(yh)),
      ),
      inc(tabB, mul(get(T), get(rowB))),
      inc(xb, mul(mul(get(H), get(T)), get(rowB))),
      inc(yb, mul(mul(get(H), get(T)), get(rowB))),
    ),
  );
  return f;
}

export const normFuncs = (): Func[] => [rmsNorm(), rmsNormBackward(), rope()];
