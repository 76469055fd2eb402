// The pieces the fused float32 SIMD kernels (fused-simd.ts) are built from: the instructions emit.ts does
// not have, the fast f32x4 exp, the scalar f64 log of the row sums and f64x2 accumulators of float32
// vectors. The exp reduces x = n ln2 + r with a two-constant ln2 (Cody-Waite), evaluates the Cephes expf
// polynomial of degree 6 on |r| <= ln2 / 2 and scales by 2^n as two exponent-field multiplies, so subnormal
// results and overflow to +inf come out right; its error is below 1 ulp over the float32 range (a test
// checks it densely against Math.exp). Then the row loops the kernels share.

import {
  add,
  anyTrue,
  type Code,
  cat,
  Func,
  f32load,
  f32store,
  f32x4add,
  f32x4madd,
  f32x4mul,
  f32x4nmadd,
  f32x4sub,
  f64add,
  f64Bits,
  f64c,
  f64div,
  f64gt,
  f64lt,
  f64mul,
  f64sub,
  f64x2add,
  f64x2extract,
  f64x2PromoteLow,
  forRange,
  get,
  gt,
  i32c,
  ifThen,
  inc,
  mul,
  select,
  set,
  sub,
  type ValType,
  v128load,
  v128store,
  v128zero,
} from "./emit.js";

// ---- instructions emit.ts does not have (the fused kernels' own) ----
export const simd = (op: number): Code => [0xfd, ...uleb1(op)];
export function uleb1(n: number): Code {
  return n < 0x80 ? [n] : [(n & 0x7f) | 0x80, n >> 7];
}
export const op1 =
  (op: number) =>
  (a: Code): Code => [...a, ...simd(op)];
export const op2 =
  (op: number) =>
  (a: Code, b: Code): Code => [...a, ...b, ...simd(op)];
export const f32x4c = (x: number): Code => [
  ...simd(0x0c),
  ...new Uint8Array(new Float32Array([x, x, x, x]).buffer),
];
export const i32x4c = (n: number): Code => [
  ...simd(0x0c),
  ...new Uint8Array(new Int32Array([n, n, n, n]).buffer),
];
export const f32x4splat = op1(0x13);
export const f32x4lane = (v: Code, lane: number): Code => [...v, ...simd(0x1f), lane];
export const f32x4pmax = op2(0xeb); // a < b ? b : a (a NaN b is ignored)
export const f32x4pmin = op2(0xea); // b < a ? b : a
export const f32x4abs = op1(0xe0);
export const f32x4gt = op2(0x44);
export const f32x4lt = op2(0x43);
export const v128andnot = op2(0x4f); // a & ~b
export const f32x4replace0 = (v: Code, x: Code): Code => [...v, ...x, ...simd(0x20), 0];
export const i32x4add = op2(0xae);
export const i32x4sub = op2(0xb1);
export const i32x4shl = op2(0xab); // (v128, i32)
export const i32x4shrS = op2(0xac);
/** The upper two float32 lanes moved to the lower two (for promoting them to f64x2). */
export const highHalf = (v: Code): Code => [
  ...v,
  ...v,
  ...simd(0x0d),
  ...[8, 9, 10, 11, 12, 13, 14, 15],
  ...[8, 9, 10, 11, 12, 13, 14, 15],
];
export const f32gt = (a: Code, b: Code): Code => [...a, ...b, 0x5e];
export const f32eq = (a: Code, b: Code): Code => [...a, ...b, 0x5b];
export const f64eq = (a: Code, b: Code): Code => [...a, ...b, 0x61];
export const i32and = (a: Code, b: Code): Code => [...a, ...b, 0x71];
export const i64and = (a: Code, b: Code): Code => [...a, ...b, 0x83];
export const i64or = (a: Code, b: Code): Code => [...a, ...b, 0x84];
export const i64shrU = (a: Code, b: Code): Code => [...a, ...b, 0x88];
export const i64const = (n: bigint): Code => {
  const out: Code = [0x42];
  for (;;) {
    const byte = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && (byte & 0x40) === 0) || (n === -1n && (byte & 0x40) !== 0)) return [...out, byte];
    out.push(byte | 0x80);
  }
};
export const i32FromI64 = (a: Code): Code => [...a, 0xa7];
export const f64FromI32 = (a: Code): Code => [...a, 0xb7];

// ---- exp ----
export const LOG2E = Math.LOG2E;
export const LN2_HI = 0.693359375; // 9 significant bits: n LN2_HI is exact for |n| <= 150
export const LN2_LO = -2.1219444e-4;
export const EXP_POLY = [
  1.98756915e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1,
];

export const MAGIC = 12582912; // 1.5 2^23: adding it rounds to an integer held in the low mantissa bits

/** Whether the VExp made while a module is built use fused multiply-add (see withFma). */
let buildFma = false;

/**
 * Runs `build` with every VExp it makes using relaxed SIMD's fused multiply-add (relaxed.ts) for the
 * reduction and the polynomial: 20 instead of 28 instructions per vector (the fused softmax, cross-entropy
 * and SwiGLU kernels of a LoRA step took 15-16 instead of 20 ms), and each multiply-add rounds once.
 */
export function withFma<T>(fma: boolean, build: () => T): T {
  const prev = buildFma;
  buildFma = fma;
  try {
    return build();
  } finally {
    buildFma = prev;
  }
}

/**
 * Emits exp of f32x4 expressions in one function, with its temporaries and constants in locals (`init()`
 * sets the constants once per call: V8 rematerializes every v128.const inside a loop).
 */
export class VExp {
  private readonly t: number;
  private readonly n: number;
  private readonly ni: number;
  private readonly consts = new Map<string, [number, Code]>();
  private readonly fma = buildFma;
  constructor(private readonly f: Func) {
    this.t = f.local("v128");
    this.n = f.local("v128");
    this.ni = f.local("v128");
  }
  /** A local holding the constant (f32 lanes, or i32 lanes for `int`). */
  c(x: number, int = false): Code {
    const key = `${int ? "i" : "f"}${x}`;
    let e = this.consts.get(key);
    if (!e) {
      e = [this.f.local("v128"), int ? i32x4c(x) : f32x4c(x)];
      this.consts.set(key, e);
    }
    return get(e[0]);
  }
  /** Sets the constant locals; put it at the start of the function body. */
  init(): Code {
    return cat(...[...this.consts.values()].map(([l, v]) => set(l, v)));
  }
  /**
   * exp of each lane of x: +inf above ~88.72, 0 below ~-103.97 (and for -inf), NaN for NaN. Vectors with
   * every |x| <= 87 take a shorter path (no clamp, one scale 2^n: n stays in [-126, 126]).
   */
  of(x: Code): Code {
    const { t, n, ni } = this;
    const c = (v: number, int = false): Code => this.c(v, int);
    const reduce = this.reduce();
    const scale = (e: Code): Code => i32x4add(i32x4shl(e, i32c(23)), c(ONE_BITS, true));
    // clamp with pmin/pmax (NaN stays NaN); n1 = n >> 1, n2 = n - n1: 2^n1 and 2^n2 are normal floats
    const wide = cat(
      set(t, f32x4pmax(f32x4pmin(get(t), c(89)), c(-104))),
      reduce,
      set(t, i32x4shrS(get(ni), i32c(1))),
      f32x4mul(f32x4mul(get(n), scale(get(t))), scale(i32x4sub(get(ni), get(t)))),
    );
    const narrow = cat(reduce, f32x4mul(get(n), scale(get(ni))));
    // NaN lanes compare false and take the short path, which keeps them NaN
    const big = anyTrue(f32x4gt(f32x4abs(get(t)), c(87)));
    return cat(set(t, x), big, [0x04, 0x7b], wide, [0x05], narrow, [0x0b]);
  }
  /** n = round(t log2 e) (ni its integer bits), t = t - n ln2 in two steps, then n = 1 + t + t^2 q(t). */
  private reduce(): Code {
    const { t, n, ni } = this;
    const c = (v: number, int = false): Code => this.c(v, int);
    // a b + d, and d - a b (exact either way for n LN2_HI); the last step, 1 + t + t^2 q(t), stays
    // unfused: fused, its error reached 1.008 ulp
    const madd = (a: Code, b: Code, d: Code): Code =>
      this.fma ? f32x4madd(a, b, d) : f32x4add(f32x4mul(a, b), d);
    const nmadd = (a: Code, b: Code, d: Code): Code =>
      this.fma ? f32x4nmadd(a, b, d) : f32x4sub(d, f32x4mul(a, b));
    const horner = EXP_POLY.slice(1).reduce<Code>((p, k) => madd(p, get(t), c(k)), c(EXP_POLY[0]!));
    return cat(
      set(ni, madd(get(t), c(LOG2E), c(MAGIC))),
      set(n, f32x4sub(get(ni), c(MAGIC))),
      set(ni, i32x4sub(get(ni), c(MAGIC_BITS, true))),
      set(t, nmadd(get(n), c(LN2_LO), nmadd(get(n), c(LN2_HI), get(t)))),
      set(n, f32x4add(f32x4add(f32x4mul(horner, f32x4mul(get(t), get(t))), get(t)), c(1))),
    );
  }
  /**
   * exp of lanes x <= 0 (a softmax's x - max), or NaN: the short path on max(x, -87), then 0 where x < -87
   * (exactly 0 for masked -inf or dtype-min scores; the true value there is below 1.7e-38). No branch.
   */
  ofNonPositive(x: Code): Code {
    const { t, n, ni } = this;
    this.low ??= this.f.local("v128");
    const low = this.low;
    const scale = (e: Code): Code => i32x4add(i32x4shl(e, i32c(23)), this.c(ONE_BITS, true));
    return cat(
      set(t, x),
      set(low, f32x4lt(get(t), this.c(-87))),
      set(t, f32x4pmax(get(t), this.c(-87))),
      this.reduce(),
      v128andnot(f32x4mul(get(n), scale(get(ni))), get(low)),
    );
  }
  private low: number | undefined;
}
export const MAGIC_BITS = 0x4b400000;
export const ONE_BITS = 0x3f800000;

// ---- scalar log for the row sums (f64) ----
export const FLOG = 0;
/** log(s) for s >= 0 or NaN (the row sums): exponent k and m in [sqrt(1/2), sqrt(2)); 2 atanh((m-1)/(m+1)). */
export function log64(): Func {
  const f = new Func("log64", ["f64"], "f64");
  const s = 0;
  const bits = f.local("i64");
  const k = f.local();
  const m = f.local("f64");
  const z = f.local("f64");
  const z2 = f.local("f64");
  const r = f.local("f64");
  // the series sum z2^i / (2 i + 1), i = 0..9, by Horner
  let series: Code = f64c(1 / 19);
  for (let i = 8; i >= 0; i--) series = f64add(f64mul(series, get(z2)), f64c(1 / (2 * i + 1)));
  f.body = cat(
    ifThen(
      [...f64gt(get(s), f64c(0)), ...f64lt(get(s), f64c(Number.POSITIVE_INFINITY)), 0x71],
      cat(
        set(bits, i64Bits(get(s))),
        set(k, sub(i32FromI64(i64shrU(get(bits), i64const(52n))), i32c(1023))),
        set(m, f64Bits(i64or(i64and(get(bits), i64const(0xfffffffffffffn)), i64const(0x3ff0000000000000n)))),
        ifThen(f64gt(get(m), f64c(Math.SQRT2)), cat(set(m, f64mul(get(m), f64c(0.5))), inc(k, 1))),
        set(z, f64div(f64sub(get(m), f64c(1)), f64add(get(m), f64c(1)))),
        set(z2, f64mul(get(z), get(z))),
        set(r, f64add(f64mul(f64FromI32(get(k)), f64c(Math.LN2)), f64mul(f64mul(f64c(2), get(z)), series))),
      ),
      // 0 -> -inf; NaN and +inf stay (subnormal s do not occur: a row sum is 0 or at least 1)
      set(r, select(f64c(Number.NEGATIVE_INFINITY), get(s), f64eq(get(s), f64c(0)))),
    ),
    get(r),
  );
  return f;
}
export const i64Bits = (a: Code): Code => [...a, 0xbd];

/**
 * Sums of float32 vectors over a row: add(v) adds into a float32 partial sum, which rowLoop moves into two
 * f64x2 accumulators after every block of 16 vectors; add0 (the tail) goes to the f64 ones directly;
 * total() is the scalar f64 sum. One float32 register in the loop: with the f64 pair there, V8 ran out of
 * xmm registers in the exp loops and kept the accumulators on the stack (a store and reload per vector).
 */
export class Acc {
  readonly a: number;
  readonly b: number;
  readonly v: number;
  private readonly p: number;
  private readonly kb: number;
  private readonly kEnd: number;
  constructor(f: Func) {
    this.a = f.local("v128");
    this.b = f.local("v128");
    this.v = f.local("v128");
    this.p = f.local("v128");
    this.kb = f.local();
    this.kEnd = f.local();
  }
  init(): Code {
    return cat(set(this.a, v128zero()), set(this.b, v128zero()), set(this.p, v128zero()));
  }
  add(e: Code): Code {
    return set(this.p, f32x4add(get(this.p), e));
  }
  /** Adds lane 0 of a vector only (the tail). */
  add0(e: Code): Code {
    return set(this.a, f64x2add(get(this.a), f64x2PromoteLow(f32x4replace0(v128zero(), f32x4lane(e, 0)))));
  }
  /** rowLoop (below) with the vector part in blocks of 16 vectors, each block's sum flushed to f64. */
  rowLoop(w: Row, vec: Code, tail: Code): Code {
    const { a, b, p, kb, kEnd } = this;
    return cat(
      forRange(
        kb,
        i32c(0),
        get(w.c4),
        256,
        set(kEnd, add(get(kb), i32c(256))),
        ifThen(gt(get(kEnd), get(w.c4)), set(kEnd, get(w.c4))),
        forRange(w.k, get(kb), get(kEnd), 16, vec),
        set(a, f64x2add(get(a), f64x2PromoteLow(get(p)))),
        set(b, f64x2add(get(b), f64x2PromoteLow(highHalf(get(p))))),
        set(p, v128zero()),
      ),
      forRange(w.k, get(w.c4), get(w.cb), 4, tail),
    );
  }
  total(): Code {
    const l = (v: number, i: number): Code => f64x2extract(get(v), i);
    return f64add(f64add(l(this.a, 0), l(this.b, 0)), f64add(l(this.a, 1), l(this.b, 1)));
  }
}

// ---- row helpers: C floats per row, 4 C bytes; c4 = bytes of the whole vectors ----
export interface Row {
  f: Func;
  k: number;
  cb: number;
  c4: number;
}
export const at = (base: number, k: number): Code => add(get(base), get(k));

/** Loops a vector body over the row's whole vectors, then a lane-0 body over the tail floats. */
export function rowLoop(w: Row, vec: Code, tail: Code): Code {
  return cat(forRange(w.k, i32c(0), get(w.c4), 16, vec), forRange(w.k, get(w.c4), get(w.cb), 4, tail));
}

/** A rows function (R, C, ...pointers): per row, `body`, then every pointer in `rowPtrs` advances a row. */
export function rowsFunc(
  name: string,
  params: number,
  rowPtrs: number[],
  body: (w: Row, ex: VExp) => Code,
  extraParams: ValType[] = [],
): Func {
  const f = new Func(name, [...new Array<"i32">(params).fill("i32"), ...extraParams]);
  const [R, C] = [0, 1];
  const r = f.local();
  const w: Row = { f, k: f.local(), cb: f.local(), c4: f.local() };
  const ex = new VExp(f);
  const b = body(w, ex);
  f.body = cat(
    ex.init(),
    set(w.cb, mul(get(C), i32c(4))),
    set(w.c4, i32and(get(w.cb), i32c(-16))),
    forRange(r, i32c(0), get(R), 1, b, ...rowPtrs.map((p) => inc(p, get(w.cb)))),
  );
  return f;
}

/** Vector and lane-0 forms of a per-element expression of loaded vectors. */
export const both = (
  w: Row,
  ptrs: number[],
  fn: (...v: Code[]) => Code,
  store: (addr: Code, v: Code) => Code,
  o: number,
) =>
  rowLoop(
    w,
    store(at(o, w.k), fn(...ptrs.map((p) => v128load(at(p, w.k))))),
    f32store(at(o, w.k), f32x4lane(fn(...ptrs.map((p) => f32x4splat(f32load(at(p, w.k))))), 0)),
  );
export const vstore = (a: Code, v: Code): Code => v128store(a, v);
