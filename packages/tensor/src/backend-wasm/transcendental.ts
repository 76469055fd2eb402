// float32 exp and sigmoid of the wasm backend. The TypeScript kernels compute Math.exp in double precision
// and round to float32; V8's Math.exp is fdlibm's e_exp.c, so these kernels run the same algorithm in
// WebAssembly f64 (fdlibm-exp.ts) and give the same double, hence the same float32. A test compares `fexp`
// with Math.exp over a dense sample of every float32, and the conformance suite compares the kernels with
// the TS ones. Two lanes at a time where no special case applies, else the scalar function.
import { cpuKernels } from "../backend-cpu/index.js";
import type { Kernel } from "../ops/signatures.js";
import { isContiguous, numel } from "../shape.js";
import {
  add,
  and,
  bitselect,
  type Code,
  call,
  cat,
  encodeModule,
  Func,
  f32FromF64,
  f32load,
  f32store,
  f32x4DemoteZero,
  f64add,
  f64c,
  f64div,
  f64FromF32,
  f64ge,
  f64neg,
  f64x2add,
  f64x2c,
  f64x2div,
  f64x2extract,
  f64x2ge,
  f64x2neg,
  f64x2PromoteLow,
  f64x2replace,
  forRange,
  get,
  i32c,
  ifThen,
  load64zero,
  mul,
  set,
  store64lane0,
} from "./emit.js";
import { expLanes, FEXP, fexp, special } from "./fdlibm-exp.js";
import type { MEMORY_LIMITS } from "./gemm.js";
import type { Heap } from "./heap.js";
import { staged } from "./stage.js";

/**
 * name(n, x, o): o[i] = float32(scalar(double(x[i]))) over n contiguous floats, two at a time through
 * vector(f, v, r) (v128 locals holding two promoted inputs and receiving two results) unless a lane is
 * special for it, then through scalar.
 */
function mapF32(
  name: string,
  scalar: (f: Func, v: number) => Code,
  vector: (f: Func, v: number, r: number) => Code,
  isSpecial: (f: Func, v: number) => Code,
): Func {
  const f = new Func(name, 3);
  const [n, x, o] = [0, 1, 2];
  const k = f.local();
  const pairs = f.local();
  const v = f.local("f64");
  const vv = f.local("v128");
  const rv = f.local("v128");
  const one = (lane: number): Code => cat(set(v, f64x2extract(get(vv), lane)), scalar(f, v));
  f.body = cat(
    set(pairs, and(mul(get(n), i32c(4)), i32c(-8))),
    forRange(
      k,
      i32c(0),
      get(pairs),
      8,
      set(vv, f64x2PromoteLow(load64zero(add(get(x), get(k))))),
      ifThen(
        isSpecial(f, vv),
        set(rv, f64x2replace(f64x2replace(get(vv), 0, one(0)), 1, one(1))),
        vector(f, vv, rv),
      ),
      store64lane0(add(get(o), get(k)), f32x4DemoteZero(get(rv))),
    ),
    forRange(
      k,
      get(pairs),
      mul(get(n), i32c(4)),
      4,
      set(v, f64FromF32(f32load(add(get(x), get(k))))),
      f32store(add(get(o), get(k)), f32FromF64(scalar(f, v))),
    ),
  );
  return f;
}

// the TS kernels' expressions: Math.exp(x), and x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))
const expF32 = (): Func =>
  mapF32(
    "exp",
    (_f, v) => call(FEXP, get(v)),
    (f, v, r) => expLanes(f, v, r),
    (_f, v) => special(v),
  );

const sigmoidScalar = (f: Func, v: number): Code => {
  const e = f.local("f64");
  const r = f.local("f64");
  return cat(
    ifThen(
      f64ge(get(v), f64c(0)),
      set(r, f64div(f64c(1), f64add(f64c(1), call(FEXP, f64neg(get(v)))))),
      cat(set(e, call(FEXP, get(v))), set(r, f64div(get(e), f64add(f64c(1), get(e))))),
    ),
    get(r),
  );
};

const sigmoidF32 = (): Func => {
  let w = -1;
  let pos = -1;
  const wOf = (f: Func, v: number): Code => {
    // the exp argument of each lane's branch: -x where x >= 0, else x
    if (w < 0) {
      w = f.local("v128");
      pos = f.local("v128");
    }
    return cat(set(pos, f64x2ge(get(v), f64x2c(0))), set(w, bitselect(f64x2neg(get(v)), get(v), get(pos))));
  };
  return mapF32(
    "sigmoid",
    sigmoidScalar,
    (f, _v, r) => {
      const e = f.local("v128");
      return cat(
        expLanes(f, w, e),
        set(
          r,
          bitselect(
            f64x2div(f64x2c(1), f64x2add(f64x2c(1), get(e))),
            f64x2div(get(e), f64x2add(f64x2c(1), get(e))),
            get(pos),
          ),
        ),
      );
    },
    (f, v) => cat(wOf(f, v), special(w)),
  );
};

export function transcendentalModuleBytes(memory: typeof MEMORY_LIMITS): Uint8Array {
  return encodeModule([fexp(), expF32(), sigmoidF32()], memory);
}

/** Smallest tensor (elements) sent to WebAssembly: at 4096 both kernels take the same time on the dev machine. */
export const DEFAULT_MIN_TRANSCENDENTAL = 8192;

type Fn = (...args: number[]) => void;

/** float32 exp and sigmoid over contiguous views, staged through `heap` when outside the wasm memory. */
export function transcendentalKernels(
  exports: Record<string, unknown>,
  heap: Heap,
  minSize = DEFAULT_MIN_TRANSCENDENTAL,
): { exp: Kernel<"exp">; sigmoid: Kernel<"sigmoid"> } {
  const make = (op: "exp" | "sigmoid"): Kernel<"exp"> => {
    const fn = exports[op] as Fn;
    const fallback = cpuKernels[op];
    return (inputs, attrs, out) => {
      const a = inputs[0];
      const n = numel(out.layout.shape);
      if (
        n < minSize ||
        out.dtype !== "float32" ||
        a.dtype !== "float32" ||
        !isContiguous(out.layout.shape, out.layout.strides) ||
        !isContiguous(a.layout.shape, a.layout.strides)
      ) {
        fallback(inputs, attrs, out);
        return;
      }
      staged(heap, (st) => fn(n, st.in(a, n), st.out(out, n)));
    };
  };
  return { exp: make("exp"), sigmoid: make("sigmoid") as Kernel<"sigmoid"> };
}
