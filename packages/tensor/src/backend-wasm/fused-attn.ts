// float32 WebAssembly SIMD kernels for the attention softmax and the AdamW update. masked_softmax is
// softmax(x * scale + mask) over rows with the mask row shared by G blocks of Q rows (x [A, G, Q, C],
// mask [A, 1, Q, C]): z = x * scale + mask in float32 like the composition, stored with its row maximum in
// one pass, then exp(z - max) on the fast exp's branch-free path for arguments <= 0 (masked scores give
// exactly 0 without the exp's wide path: 35% faster at the attention's shapes) and the f64 row sum; four
// masked scores in a row skip the exp (a causal mask's upper half).
// adamw computes in float32 like torch (the TypeScript kernel's double arithmetic in f64x2 lanes measured
// 2.7x slower: f64x2 division and square root dominate it).

import {
  add,
  type Code,
  cat,
  eq,
  Func,
  f32add,
  f32c,
  f32FromF64,
  f32load,
  f32mul,
  f32store,
  f32x4add,
  f32x4div,
  f32x4mul,
  f32x4sub,
  f64c,
  f64div,
  f64sub,
  forRange,
  get,
  i32c,
  ifThen,
  inc,
  mul,
  set,
  v128load,
  v128store,
  v128zero,
} from "./emit.js";
import {
  Acc,
  at,
  both,
  f32eq,
  f32gt,
  f32x4c,
  f32x4lane,
  f32x4pmax,
  f32x4splat,
  i32and,
  rowLoop,
  rowsFunc,
  simd,
  vstore,
} from "./fused-exp.js";

/** Whether all four lanes of v are -inf (i32x4.all_true of f32x4.eq). */
const allMasked = (v: Code): Code => [
  ...v,
  ...f32x4c(Number.NEGATIVE_INFINITY),
  ...simd(0x41),
  ...simd(0xa3),
];

/**
 * masked_softmax(R, C, x, o, m, Q, G, q, g, scale): R rows of x from block row q of group g; m is the
 * mask block [Q, C] of the first row's batch. Per row: o = z = x * scale + mask[q], then softmax(z).
 */
function maskedSoftmax(): Func {
  const [x, o, m, Q, G, q, g, scale] = [2, 3, 4, 5, 6, 7, 8, 9];
  return rowsFunc(
    "masked_softmax",
    9,
    [x, o],
    (w, ex) => {
      const { f } = w;
      const mrow = f.local();
      const sc = f.local("v128");
      const mx = f.local("f32");
      const mv = f.local("v128");
      const acc = new Acc(f);
      const inv = f.local("v128");
      const e = (v: Code): Code => ex.ofNonPositive(f32x4sub(v, get(mv)));
      const z = f.local("v128");
      const vmax = f.local("v128");
      const zs = f.local("f32");
      const upd = (v: Code): Code => cat(set(zs, v), ifThen(f32gt(get(zs), get(mx)), set(mx, get(zs))));
      return cat(
        set(mrow, add(get(m), mul(get(q), get(w.cb)))),
        set(sc, f32x4splat(get(scale))),
        // o = z and its maximum in one pass (NaNs ignored as rowMax does; all -inf gives 0)
        set(vmax, f32x4c(Number.NEGATIVE_INFINITY)),
        set(mx, f32c(Number.NEGATIVE_INFINITY)),
        rowLoop(
          w,
          cat(
            set(z, f32x4add(f32x4mul(v128load(at(x, w.k)), get(sc)), v128load(at(mrow, w.k)))),
            v128store(at(o, w.k), get(z)),
            set(vmax, f32x4pmax(get(vmax), get(z))),
          ),
          cat(
            set(zs, f32add(f32mul(f32load(at(x, w.k)), get(scale)), f32load(at(mrow, w.k)))),
            f32store(at(o, w.k), get(zs)),
            upd(get(zs)),
          ),
        ),
        ...[0, 1, 2, 3].map((l) => upd(f32x4lane(get(vmax), l))),
        ifThen(f32eq(get(mx), f32c(Number.NEGATIVE_INFINITY)), set(mx, f32c(0))),
        set(mv, f32x4splat(get(mx))),
        acc.init(),
        acc.rowLoop(
          w,
          cat(
            set(z, v128load(at(o, w.k))),
            // four masked scores (the causal mask's upper half): their exps are 0, so skip them
            ifThen(
              allMasked(get(z)),
              v128store(at(o, w.k), v128zero()),
              cat(set(acc.v, e(get(z))), v128store(at(o, w.k), get(acc.v)), acc.add(get(acc.v))),
            ),
          ),
          cat(
            set(acc.v, e(f32x4splat(f32load(at(o, w.k))))),
            f32store(at(o, w.k), f32x4lane(get(acc.v), 0)),
            acc.add0(get(acc.v)),
          ),
        ),
        set(inv, f32x4splat(f32FromF64(f64div(f64c(1), acc.total())))),
        both(w, [o], (v) => f32x4mul(v, get(inv)), vstore, o),
        // the next row: q wraps at Q into the next group; after G groups the mask moves to the next batch
        inc(q, 1),
        ifThen(
          eq(get(q), get(Q)),
          cat(
            set(q, i32c(0)),
            inc(g, 1),
            ifThen(eq(get(g), get(G)), cat(set(g, i32c(0)), inc(m, mul(get(Q), get(w.cb))))),
          ),
        ),
      );
    },
    ["f32"],
  );
}

/** scaled_softmax_backward(R, C, dy, y, o, scale): o = y (dy - sum(dy y)) * scale. */
function scaledSoftmaxBackward(): Func {
  const [dy, y, o, scale] = [2, 3, 4, 5];
  return rowsFunc(
    "scaled_softmax_backward",
    5,
    [dy, y, o],
    (w) => {
      const { f } = w;
      const acc = new Acc(f);
      const sv = f.local("v128");
      const sc = f.local("v128");
      const ld = (p: number): Code => v128load(at(p, w.k));
      const ld0 = (p: number): Code => f32x4splat(f32load(at(p, w.k)));
      return cat(
        acc.init(),
        acc.rowLoop(w, acc.add(f32x4mul(ld(dy), ld(y))), acc.add0(f32x4mul(ld0(dy), ld0(y)))),
        set(sv, f32x4splat(f32FromF64(acc.total()))),
        set(sc, f32x4splat(get(scale))),
        both(w, [dy, y], (gr, p) => f32x4mul(f32x4mul(p, f32x4sub(gr, get(sv))), get(sc)), vstore, o),
      );
    },
    ["f32"],
  );
}

const f32x4sqrt = (a: Code): Code => [...a, ...simd(0xe3)];

/**
 * adamw(n, p, g, m, v, P, M, V, decay, step, b1, b2, bc2Sqrt, eps) over n floats, in float32 arithmetic
 * as torch's float32 AdamW (the attributes rounded to float32 like torch's scalars): M = b1 m + (1 - b1) g,
 * V = b2 v + (1 - b2) g^2, P = p decay - step (M / (sqrt(V) / bc2Sqrt + eps)).
 */
function adamw(): Func {
  const f = new Func("adamw", [...new Array<"i32">(8).fill("i32"), "f64", "f64", "f64", "f64", "f64", "f64"]);
  const [n, p, g, m, v, P, M, V] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [decay, step, b1, b2, bc2, eps] = [8, 9, 10, 11, 12, 13];
  const k = f.local();
  const nb = f.local();
  const n4 = f.local();
  const names = ["decay", "step", "b1", "b1c", "b2", "b2c", "bc2", "eps"];
  const c = Object.fromEntries(names.map((s) => [s, f.local("v128")])) as Record<string, number>;
  const C = (s: string): Code => get(c[s]!);
  const gi = f.local("v128");
  const mi = f.local("v128");
  const vi = f.local("v128");
  const ptr = (b: number): Code => add(get(b), get(k));
  const body = (ld: (a: Code) => Code, st: (a: Code, v: Code) => Code): Code =>
    cat(
      set(gi, ld(ptr(g))),
      set(mi, f32x4add(f32x4mul(C("b1"), ld(ptr(m))), f32x4mul(C("b1c"), get(gi)))),
      set(vi, f32x4add(f32x4mul(C("b2"), ld(ptr(v))), f32x4mul(C("b2c"), f32x4mul(get(gi), get(gi))))),
      st(ptr(M), get(mi)),
      st(ptr(V), get(vi)),
      st(
        ptr(P),
        f32x4sub(
          f32x4mul(ld(ptr(p)), C("decay")),
          f32x4mul(C("step"), f32x4div(get(mi), f32x4add(f32x4div(f32x4sqrt(get(vi)), C("bc2")), C("eps")))),
        ),
      ),
    );
  const sp = (s: string, e: Code): Code => set(c[s]!, f32x4splat(f32FromF64(e)));
  f.body = cat(
    sp("decay", get(decay)),
    sp("step", get(step)),
    sp("b1", get(b1)),
    sp("b1c", f64sub(f64c(1), get(b1))),
    sp("b2", get(b2)),
    sp("b2c", f64sub(f64c(1), get(b2))),
    sp("bc2", get(bc2)),
    sp("eps", get(eps)),
    set(nb, mul(get(n), i32c(4))),
    set(n4, i32and(get(nb), i32c(-16))),
    forRange(k, i32c(0), get(n4), 16, body(v128load, v128store)),
    forRange(
      k,
      get(n4),
      get(nb),
      4,
      body(
        (a) => f32x4splat(f32load(a)),
        (a, x) => f32store(a, f32x4lane(x, 0)),
      ),
    ),
  );
  return f;
}

export function attnFuncs(): Func[] {
  return [maskedSoftmax(), scaledSoftmaxBackward(), adamw()];
}
