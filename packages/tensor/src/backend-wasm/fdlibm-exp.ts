// fdlibm's exp (e_exp.c, which V8's Math.exp is: src/base/ieee754.cc) as WebAssembly f64 code for the
// wasm backend's exp and sigmoid (transcendental.ts): the scalar function operation for operation (no fused
// operations, so every step rounds as the C code does), and the same operations on two f64 lanes for the
// inputs where no special case applies.

import {
  add,
  and,
  anyTrue,
  bitselect,
  type Code,
  cat,
  eq,
  Func,
  f64add,
  f64Bits,
  f64c,
  f64div,
  f64eq,
  f64FromI32,
  f64gt,
  f64lt,
  f64mul,
  f64sub,
  f64x2abs,
  f64x2add,
  f64x2c,
  f64x2div,
  f64x2eq,
  f64x2FromI32x4Low,
  f64x2ge,
  f64x2lt,
  f64x2mul,
  f64x2ne,
  f64x2sub,
  ge,
  get,
  i32c,
  i32FromI64,
  i32or,
  i32shl,
  i32shrU,
  i32TruncF64,
  i32x4TruncSatF64x2,
  i64Bits,
  i64c,
  i64FromI32U,
  i64shl,
  i64shrU,
  i64x2add,
  i64x2c,
  i64x2FromI32x4Low,
  i64x2shl,
  ifThen,
  lt,
  ne,
  ret,
  select,
  set,
  sub,
  v128or,
} from "./emit.js";

// fdlibm e_exp.c constants (the same doubles, written with the fewest digits)
const O_THRESHOLD = 709.782712893384;
const U_THRESHOLD = -745.1332191019411;
const LN2_HI = 0.6931471803691238;
const LN2_LO = 1.9082149292705877e-10;
const INV_LN2 = Math.LOG2E; // fdlibm's invln2, the same double
const P1 = 0.16666666666666602;
const P2 = -0.0027777777777015593;
const P3 = 6.613756321437934e-5;
const P4 = -1.6533902205465252e-6;
const P5 = 4.1381367970572385e-8;
const E = Math.E; // the same double as fdlibm's
const TWO_M1000 = 9.332636185032189e-302;
const TWO_1023 = 8.98846567431158e307;

/** fexp's function index: it must be the first function of a module that calls it. */
export const FEXP = 0;

/** fexp(x: f64) -> f64, fdlibm's exp. */
export function fexp(): Func {
  const f = new Func("fexp", ["f64"], "f64");
  const x = 0;
  const hx = f.local();
  const xsb = f.local();
  const hi = f.local("f64");
  const lo = f.local("f64");
  const k = f.local();
  const t = f.local("f64");
  const c = f.local("f64");
  const y = f.local("f64");
  const twopk = f.local("f64");
  const bits = (e: Code): Code => i64Bits(e);
  /** 2^e as a double built from its high word (0x3ff00000 + (e << 20)). */
  const pow2 = (e: Code): Code =>
    f64Bits(i64shl(i64FromI32U(add(i32c(0x3ff00000), i32shl(e, i32c(20)))), i64c(32)));
  f.body = cat(
    set(hx, i32FromI64(i64shrU(bits(get(x)), i64c(32)))),
    set(xsb, i32shrU(get(hx), i32c(31))),
    set(hx, and(get(hx), i32c(0x7fffffff))),
    // non-finite and out-of-range arguments
    ifThen(
      ge(get(hx), i32c(0x40862e42)),
      cat(
        ifThen(
          ge(get(hx), i32c(0x7ff00000)),
          cat(
            ifThen(
              ne(i32or(and(get(hx), i32c(0xfffff)), i32FromI64(bits(get(x)))), i32c(0)),
              ret(f64add(get(x), get(x))),
            ),
            ret(select(get(x), f64c(0), eq(get(xsb), i32c(0)))),
          ),
        ),
        ifThen(f64gt(get(x), f64c(O_THRESHOLD)), ret(f64c(Number.POSITIVE_INFINITY))),
        ifThen(f64lt(get(x), f64c(U_THRESHOLD)), ret(f64c(0))),
      ),
    ),
    // argument reduction
    ifThen(
      lt(i32c(0x3fd62e42), get(hx)),
      cat(
        ifThen(
          lt(get(hx), i32c(0x3ff0a2b2)),
          cat(
            ifThen(f64eq(get(x), f64c(1)), ret(f64c(E))),
            set(hi, f64sub(get(x), select(f64c(-LN2_HI), f64c(LN2_HI), get(xsb)))),
            set(lo, select(f64c(-LN2_LO), f64c(LN2_LO), get(xsb))),
            set(k, sub(sub(i32c(1), get(xsb)), get(xsb))),
          ),
          cat(
            set(
              k,
              i32TruncF64(f64add(f64mul(f64c(INV_LN2), get(x)), select(f64c(-0.5), f64c(0.5), get(xsb)))),
            ),
            set(t, f64FromI32(get(k))),
            set(hi, f64sub(get(x), f64mul(get(t), f64c(LN2_HI)))),
            set(lo, f64mul(get(t), f64c(LN2_LO))),
          ),
        ),
        set(x, f64sub(get(hi), get(lo))),
      ),
      // |x| < 2^-28: 1 + x (fdlibm's "huge + x > one" test is always true there)
      ifThen(lt(get(hx), i32c(0x3e300000)), ret(f64add(f64c(1), get(x)))),
    ),
    set(t, f64mul(get(x), get(x))),
    set(twopk, select(pow2(get(k)), pow2(add(get(k), i32c(1000))), ge(get(k), i32c(-1021)))),
    set(
      c,
      f64sub(
        get(x),
        f64mul(
          get(t),
          f64add(
            f64c(P1),
            f64mul(
              get(t),
              f64add(
                f64c(P2),
                f64mul(get(t), f64add(f64c(P3), f64mul(get(t), f64add(f64c(P4), f64mul(get(t), f64c(P5)))))),
              ),
            ),
          ),
        ),
      ),
    ),
    ifThen(
      eq(get(k), i32c(0)),
      ret(f64sub(f64c(1), f64sub(f64div(f64mul(get(x), get(c)), f64sub(get(c), f64c(2))), get(x)))),
    ),
    set(
      y,
      f64sub(
        f64c(1),
        f64sub(f64sub(get(lo), f64div(f64mul(get(x), get(c)), f64sub(f64c(2), get(c)))), get(hi)),
      ),
    ),
    ifThen(
      ge(get(k), i32c(-1021)),
      cat(
        ifThen(eq(get(k), i32c(1024)), ret(f64mul(f64mul(get(y), f64c(2)), f64c(TWO_1023)))),
        ret(f64mul(get(y), get(twopk))),
      ),
    ),
    f64mul(f64mul(get(y), get(twopk)), f64c(TWO_M1000)),
  );
  return f;
}

/** 2^-28 and 0x3fd62e43:00000000, 0x3ff0a2b2:00000000: fdlibm's high-word tests as |x| comparisons. */
const TINY = 2 ** -28;
const HALF_LN2_UP = new Float64Array(new BigInt64Array([0x3fd62e43n << 32n]).buffer)[0]!;
const THREE_HALF_LN2 = new Float64Array(new BigInt64Array([0x3ff0a2b2n << 32n]).buffer)[0]!;
/** Below this |x| the reduction's k stays in [-1021, 1023], so 2^k is one normal double. */
const VECTOR_LIMIT = 700;

/**
 * Code setting v128 local `r` to fdlibm's exp of the two f64 lanes of local `w`, lane by lane the same
 * operations as fexp, for lanes with 2^-28 <= |w| < 700 and w != 1 (the caller checks `special` first).
 */
export function expLanes(f: Func, w: number, r: number): Code {
  const ax = f.local("v128");
  const neg = f.local("v128");
  const mid = f.local("v128");
  const small = f.local("v128");
  const kB = f.local("v128");
  const tB = f.local("v128");
  const hi = f.local("v128");
  const lo = f.local("v128");
  const kf = f.local("v128");
  const x = f.local("v128");
  const t = f.local("v128");
  const c = f.local("v128");
  const sel = (a: Code, b: Code, m: number): Code => bitselect(a, b, get(m));
  return cat(
    set(ax, f64x2abs(get(w))),
    set(neg, f64x2lt(get(w), f64x2c(0))),
    set(mid, f64x2ge(get(ax), f64x2c(HALF_LN2_UP))),
    set(small, f64x2lt(get(ax), f64x2c(THREE_HALF_LN2))),
    // case |x| >= 1.5 ln2: k = (int)(invln2 x +- 0.5), hi = x - k ln2HI, lo = k ln2LO
    set(
      kB,
      i32x4TruncSatF64x2(f64x2add(f64x2mul(f64x2c(INV_LN2), get(w)), sel(f64x2c(-0.5), f64x2c(0.5), neg))),
    ),
    set(tB, f64x2FromI32x4Low(get(kB))),
    // case 0.5 ln2 < |x| < 1.5 ln2: hi = x -+ ln2HI, lo = +-ln2LO, k = +-1
    set(
      hi,
      sel(
        f64x2sub(get(w), sel(f64x2c(-LN2_HI), f64x2c(LN2_HI), neg)),
        f64x2sub(get(w), f64x2mul(get(tB), f64x2c(LN2_HI))),
        small,
      ),
    ),
    set(lo, sel(sel(f64x2c(-LN2_LO), f64x2c(LN2_LO), neg), f64x2mul(get(tB), f64x2c(LN2_LO)), small)),
    set(kf, sel(sel(f64x2c(-1), f64x2c(1), neg), get(tB), small)),
    set(kf, sel(get(kf), f64x2c(0), mid)),
    set(x, sel(f64x2sub(get(hi), get(lo)), get(w), mid)),
    set(t, f64x2mul(get(x), get(x))),
    set(
      c,
      f64x2sub(
        get(x),
        f64x2mul(
          get(t),
          f64x2add(
            f64x2c(P1),
            f64x2mul(
              get(t),
              f64x2add(
                f64x2c(P2),
                f64x2mul(
                  get(t),
                  f64x2add(f64x2c(P3), f64x2mul(get(t), f64x2add(f64x2c(P4), f64x2mul(get(t), f64x2c(P5))))),
                ),
              ),
            ),
          ),
        ),
      ),
    ),
    set(
      r,
      sel(
        // k != 0: (1 - ((lo - (x c) / (2 - c)) - hi)) 2^k
        f64x2mul(
          f64x2sub(
            f64x2c(1),
            f64x2sub(
              f64x2sub(get(lo), f64x2div(f64x2mul(get(x), get(c)), f64x2sub(f64x2c(2), get(c)))),
              get(hi),
            ),
          ),
          i64x2shl(i64x2add(i64x2FromI32x4Low(i32x4TruncSatF64x2(get(kf))), i64x2c(1023)), i32c(52)),
        ),
        // k == 0: 1 - ((x c) / (c - 2) - x)
        f64x2sub(
          f64x2c(1),
          f64x2sub(f64x2div(f64x2mul(get(x), get(c)), f64x2sub(get(c), f64x2c(2))), get(x)),
        ),
        mid,
      ),
    ),
  );
}

/** Lanes of local `w` that expLanes does not cover (NaN, infinities, |w| < 2^-28 or >= 700, w == 1). */
export const special = (w: number): Code =>
  anyTrue(
    v128or(
      v128or(f64x2ge(f64x2abs(get(w)), f64x2c(VECTOR_LIMIT)), f64x2lt(f64x2abs(get(w)), f64x2c(TINY))),
      v128or(f64x2eq(get(w), f64x2c(1)), f64x2ne(get(w), get(w))),
    ),
  );
