// float32 WebAssembly SIMD kernels for the exp-heavy fused ops (softmax, logSoftmax, cross-entropy and
// SwiGLU, forward and backward), on the fast f32x4 exp of fused-exp.ts. Row sums are kept in f64x2 lanes
// like the TypeScript kernels' double accumulators; the row log is a scalar f64 series. Everything else is
// float32 arithmetic, so results differ from the TS kernels by a few ulp.

import {
  add,
  type Code,
  call,
  cat,
  encodeModule,
  eq,
  Func,
  f32c,
  f32FromF64,
  f32load,
  f32store,
  f32x4add,
  f32x4div,
  f32x4mul,
  f32x4neg,
  f32x4sub,
  f64add,
  f64c,
  f64div,
  f64FromF32,
  f64sub,
  forRange,
  get,
  i32c,
  i32load,
  ifThen,
  inc,
  mul,
  set,
  v128load,
  v128store,
  v128zero,
} from "./emit.js";
import { attnFuncs } from "./fused-attn.js";
import {
  Acc,
  at,
  both,
  FLOG,
  f32eq,
  f32gt,
  f32x4c,
  f32x4lane,
  f32x4pmax,
  f32x4splat,
  i32and,
  log64,
  type Row,
  rowLoop,
  rowsFunc,
  VExp,
  vstore,
  withFma,
} from "./fused-exp.js";
import { normFuncs } from "./fused-norm.js";
import type { MEMORY_LIMITS } from "./gemm.js";

/** m (f32 local) = the row's maximum, NaNs ignored (as `if (x > m) m = x`); an all -inf row gives 0. */
function rowMax(w: Row, x: number, m: number): Code {
  const acc = w.f.local("v128");
  const v = w.f.local("f32");
  const upd = (e: Code): Code => cat(set(v, e), ifThen(f32gt(get(v), get(m)), set(m, get(v))));
  return cat(
    set(acc, f32x4c(Number.NEGATIVE_INFINITY)),
    forRange(w.k, i32c(0), get(w.c4), 16, set(acc, f32x4pmax(get(acc), v128load(at(x, w.k))))),
    set(m, f32c(Number.NEGATIVE_INFINITY)),
    ...[0, 1, 2, 3].map((l) => upd(f32x4lane(get(acc), l))),
    forRange(w.k, get(w.c4), get(w.cb), 4, upd(f32load(at(x, w.k)))),
    ifThen(f32eq(get(m), f32c(Number.NEGATIVE_INFINITY)), set(m, f32c(0))),
  );
}

/** softmax(R, C, x, o) and log_softmax(R, C, x, o) over rows. */
function softmaxRows(log: boolean): Func {
  const [x, o] = [2, 3];
  return rowsFunc(log ? "log_softmax" : "softmax", 4, [x, o], (w, ex) => {
    const { f } = w;
    const m = f.local("f32");
    const mv = f.local("v128");
    const acc = new Acc(f);
    const s = f.local("f64");
    const e = (v: Code): Code => ex.of(f32x4sub(v, get(mv)));
    const sums = log
      ? acc.rowLoop(w, acc.add(e(v128load(at(x, w.k)))), acc.add0(e(f32x4splat(f32load(at(x, w.k))))))
      : acc.rowLoop(
          w,
          cat(set(acc.v, e(v128load(at(x, w.k)))), v128store(at(o, w.k), get(acc.v)), acc.add(get(acc.v))),
          cat(
            set(acc.v, e(f32x4splat(f32load(at(x, w.k))))),
            f32store(at(o, w.k), f32x4lane(get(acc.v), 0)),
            acc.add0(get(acc.v)),
          ),
        );
    const hi = f.local("v128");
    const lo = f.local("v128");
    const l = f.local("f64");
    const write = log
      ? cat(
          // y = x - l with l split into float32 hi + lo: x - hi is exact when close, so y is nearly exact
          set(l, f64add(f64FromF32(get(m)), call(FLOG, get(s)))),
          set(hi, f32x4splat(f32FromF64(get(l)))),
          set(lo, f32x4splat(f32FromF64(f64sub(get(l), f64FromF32(f32x4lane(get(hi), 0)))))),
          both(w, [x], (v) => f32x4sub(f32x4sub(v, get(hi)), get(lo)), vstore, o),
        )
      : cat(
          set(hi, f32x4splat(f32FromF64(f64div(f64c(1), get(s))))),
          both(w, [o], (v) => f32x4mul(v, get(hi)), vstore, o),
        );
    return cat(rowMax(w, x, m), set(mv, f32x4splat(get(m))), acc.init(), sums, set(s, acc.total()), write);
  });
}

/** lse_rows(R, C, x, o64, withSum): o64[2 r] = logsumexp(x[r]), o64[2 r + 1] = sum(x[r]) when withSum (f64). */
function lseRows(): Func {
  const [x, o, withSum] = [2, 3, 4];
  return rowsFunc("lse_rows", 5, [x], (w, ex) => {
    const { f } = w;
    const m = f.local("f32");
    const mv = f.local("v128");
    const acc = new Acc(f);
    const sx = new Acc(f);
    const e = (v: Code): Code => ex.of(f32x4sub(v, get(mv)));
    return cat(
      rowMax(w, x, m),
      set(mv, f32x4splat(get(m))),
      acc.init(),
      acc.rowLoop(w, acc.add(e(v128load(at(x, w.k)))), acc.add0(e(f32x4splat(f32load(at(x, w.k)))))),
      [...get(o), ...f64add(f64FromF32(get(m)), call(FLOG, acc.total())), 0x39, 3, 0], // f64.store
      sx.init(),
      ifThen(
        get(withSum),
        cat(sx.rowLoop(w, sx.add(v128load(at(x, w.k))), sx.add0(f32x4splat(f32load(at(x, w.k))))), [
          ...get(o),
          ...sx.total(),
          0x39,
          3,
          8,
        ]),
      ),
      inc(o, 16),
    );
  });
}

/** softmax_backward(R, C, dy, y, o): o = y (dy - sum(dy y)); log_softmax_backward: o = dy - exp(y) sum(dy). */
function softmaxBackRows(log: boolean): Func {
  const [dy, y, o] = [2, 3, 4];
  return rowsFunc(log ? "log_softmax_backward" : "softmax_backward", 5, [dy, y, o], (w, ex) => {
    const { f } = w;
    const acc = new Acc(f);
    const sv = f.local("v128");
    const term = (g: Code, p: Code): Code => (log ? g : f32x4mul(g, p));
    const ld = (p: number): Code => v128load(at(p, w.k));
    const ld0 = (p: number): Code => f32x4splat(f32load(at(p, w.k)));
    return cat(
      acc.init(),
      acc.rowLoop(w, acc.add(term(ld(dy), ld(y))), acc.add0(term(ld0(dy), ld0(y)))),
      set(sv, f32x4splat(f32FromF64(acc.total()))),
      both(
        w,
        [dy, y],
        (g, p) => (log ? f32x4sub(g, f32x4mul(ex.of(p), get(sv))) : f32x4mul(p, f32x4sub(g, get(sv)))),
        vstore,
        o,
      ),
    );
  });
}

/**
 * ce_backward(R, C, g, x, t, lse, o, ignore, u): o[r] = g[r] (exp(x[r] - lse[r]) - u), or 0 where
 * t[r] = ignore (g, t, lse one value per row; the caller subtracts the target's term).
 */
function ceBackward(): Func {
  const [g, x, t, lse, o, ignore, u] = [2, 3, 4, 5, 6, 7, 8];
  return rowsFunc(
    "ce_backward",
    7,
    [x, o],
    (w, ex) => {
      const { f } = w;
      const gv = f.local("v128");
      const lv = f.local("v128");
      const uv = f.local("v128");
      return cat(
        ifThen(
          eq(i32load(get(t)), get(ignore)),
          rowLoop(w, v128store(at(o, w.k), v128zero()), f32store(at(o, w.k), f32c(0))),
          cat(
            set(gv, f32x4splat(f32load(get(g)))),
            set(lv, f32x4splat(f32load(get(lse)))),
            set(uv, f32x4splat(get(u))),
            both(w, [x], (v) => f32x4mul(get(gv), f32x4sub(ex.of(f32x4sub(v, get(lv))), get(uv))), vstore, o),
          ),
        ),
        inc(g, 4),
        inc(t, 4),
        inc(lse, 4),
      );
    },
    ["i32", "f32"],
  );
}

/** An elementwise function over n floats: name(n, ...inputs, ...outputs). */
function elementwise(
  name: string,
  ins: number,
  outs: number,
  fn: (ex: VExp, f: Func, ...v: Code[]) => Code[],
): Func {
  const f = new Func(name, 1 + ins + outs);
  const k = f.local();
  const nb = f.local();
  const n4 = f.local();
  const ex = new VExp(f);
  const tmp = Array.from({ length: outs }, () => f.local("v128"));
  const ptr = (i: number): Code => add(get(1 + i), get(k));
  const body = (load: (p: Code) => Code, store: (p: Code, v: Code) => Code): Code => {
    const vals = fn(ex, f, ...Array.from({ length: ins }, (_, i) => load(ptr(i))));
    return cat(...vals.map((v, j) => set(tmp[j]!, v)), ...tmp.map((v, j) => store(ptr(ins + j), get(v))));
  };
  const vec = body(v128load, vstore);
  const tail = body(
    (p) => f32x4splat(f32load(p)),
    (p, v) => f32store(p, f32x4lane(v, 0)),
  );
  f.body = cat(
    ex.init(),
    set(nb, mul(get(0), i32c(4))),
    set(n4, i32and(get(nb), i32c(-16))),
    forRange(k, i32c(0), get(n4), 16, vec),
    forRange(k, get(n4), get(nb), 4, tail),
  );
  return f;
}

/** swiglu(n, g, u, y): y = g sigmoid(g) u; swiglu_backward(n, dy, g, u, dg, du). */
function swiglu(): Func {
  return elementwise("swiglu", 2, 1, (ex, _f, g, u) => [
    f32x4mul(f32x4div(g!, f32x4add(f32x4c(1), ex.of(f32x4neg(g!)))), u!),
  ]);
}
function swigluBackward(): Func {
  let z = -1;
  let sg = -1;
  let d = -1;
  return elementwise("swiglu_backward", 3, 2, (ex, f, dy, g, u) => {
    if (z < 0) [z, sg, d] = [f.local("v128"), f.local("v128"), f.local("v128")];
    const dgv = cat(
      set(z, g!),
      set(d, dy!),
      set(sg, f32x4div(f32x4c(1), f32x4add(f32x4c(1), ex.of(f32x4neg(get(z)))))),
      // d u sig (1 + z (1 - sig))
      f32x4mul(
        f32x4mul(f32x4mul(get(d), u!), get(sg)),
        f32x4add(f32x4c(1), f32x4mul(get(z), f32x4sub(f32x4c(1), get(sg)))),
      ),
    );
    return [dgv, f32x4mul(f32x4mul(get(d), get(z)), get(sg))];
  });
}

/** exp(n, x, o) over n floats (the fast exp alone, for tests). */
function expF32(): Func {
  return elementwise("exp", 1, 1, (ex, _f, x) => [ex.of(x!)]);
}

/** The module's bytes; `fma`: the exp uses relaxed SIMD's fused multiply-add (withFma). */
export function fusedModuleBytes(memory: typeof MEMORY_LIMITS, fma = false): Uint8Array {
  const funcs = withFma(fma, () => [
    log64(),
    expF32(),
    softmaxRows(false),
    softmaxRows(true),
    lseRows(),
    softmaxBackRows(false),
    softmaxBackRows(true),
    ceBackward(),
    swiglu(),
    swigluBackward(),
    ...normFuncs(),
    ...attnFuncs(),
  ]);
  return encodeModule(funcs, memory);
}
