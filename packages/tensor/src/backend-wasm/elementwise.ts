// float32 add, sub, mul, div and neg of the wasm backend in WebAssembly SIMD. The four binary ops are IEEE
// single-precision operations, so f32x4 lanes give exactly what the TypeScript kernels store (a double
// result of two floats rounded to float32 is the correctly rounded float32 result); the conformance suite
// checks that they are identical. An op runs over a [R, C] grid with a contiguous output; each input is
// addressed with a byte row stride and a byte column stride of 4 (a vector) or 0 (one value per row), which
// covers same-shape operands, a scalar, a row vector repeated over rows (a weight over [.., C]) and a column
// (one value per row, e.g. a norm's scale). Other layouts, other dtypes and small tensors stay on the
// TypeScript kernels.

import type { View } from "../backend/backend.js";
import { cpuKernels } from "../backend-cpu/index.js";
import type { Kernel } from "../ops/signatures.js";
import { isContiguous, numel } from "../shape.js";
import {
  add,
  and,
  type Code,
  cat,
  encodeModule,
  eq,
  Func,
  f32add,
  f32div,
  f32load,
  f32mul,
  f32neg,
  f32store,
  f32sub,
  f32x4add,
  f32x4div,
  f32x4mul,
  f32x4neg,
  f32x4sub,
  forRange,
  get,
  i32c,
  ifThen,
  inc,
  load32splat,
  mul,
  set,
  v128load,
  v128store,
} from "./emit.js";
import type { MEMORY_LIMITS } from "./gemm.js";
import type { Heap } from "./heap.js";
import { staged } from "./stage.js";

export const BINARY_OPS = ["add", "sub", "mul", "div"] as const;
export type BinaryOp = (typeof BINARY_OPS)[number];

const OPS: Record<BinaryOp, { v: (a: Code, b: Code) => Code; s: (a: Code, b: Code) => Code }> = {
  add: { v: f32x4add, s: f32add },
  sub: { v: f32x4sub, s: f32sub },
  mul: { v: f32x4mul, s: f32mul },
  div: { v: f32x4div, s: f32div },
};

/**
 * op(R, C, x, xrs, xcs, y, yrs, ycs, o): o[r, c] = x[r, c] op y[r, c] for a row-major o, where input z's
 * element (r, c) is at byte address z + r zrs + c zcs, zcs being 4 or 0 (not both 0).
 */
function binary(op: BinaryOp): Func {
  const f = new Func(op, 9);
  const [R, C, x, xrs, xcs, y, yrs, ycs, o] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const r = f.local();
  const k = f.local();
  const cb = f.local(); // 4 C
  const c4 = f.local(); // 16 floor(C / 4)
  const vs = f.local("v128");
  const { v, s } = OPS[op];
  const at = (base: number): Code => add(get(base), get(k));
  // x and y both vectors along the row
  const vv = cat(
    forRange(k, i32c(0), get(c4), 16, v128store(at(o), v(v128load(at(x)), v128load(at(y))))),
    forRange(k, get(c4), get(cb), 4, f32store(at(o), s(f32load(at(x)), f32load(at(y))))),
  );
  // y one value for the row
  const vS = cat(
    set(vs, load32splat(get(y))),
    forRange(k, i32c(0), get(c4), 16, v128store(at(o), v(v128load(at(x)), get(vs)))),
    forRange(k, get(c4), get(cb), 4, f32store(at(o), s(f32load(at(x)), f32load(get(y))))),
  );
  // x one value for the row
  const sV = cat(
    set(vs, load32splat(get(x))),
    forRange(k, i32c(0), get(c4), 16, v128store(at(o), v(get(vs), v128load(at(y))))),
    forRange(k, get(c4), get(cb), 4, f32store(at(o), s(f32load(get(x)), f32load(at(y))))),
  );
  f.body = cat(
    set(cb, mul(get(C), i32c(4))),
    set(c4, and(get(cb), i32c(-16))),
    forRange(
      r,
      i32c(0),
      get(R),
      1,
      ifThen(and(eq(get(xcs), i32c(4)), eq(get(ycs), i32c(4))), vv, ifThen(eq(get(ycs), i32c(0)), vS, sV)),
      inc(x, get(xrs)),
      inc(y, get(yrs)),
      inc(o, get(cb)),
    ),
  );
  return f;
}

/** neg(n, x, o): o[i] = -x[i] over n contiguous floats. */
function negate(): Func {
  const f = new Func("neg", 3);
  const [n, x, o] = [0, 1, 2];
  const k = f.local();
  const nb = f.local();
  const n4 = f.local();
  const at = (base: number): Code => add(get(base), get(k));
  f.body = cat(
    set(nb, mul(get(n), i32c(4))),
    set(n4, and(get(nb), i32c(-16))),
    forRange(k, i32c(0), get(n4), 16, v128store(at(o), f32x4neg(v128load(at(x))))),
    forRange(k, get(n4), get(nb), 4, f32store(at(o), f32neg(f32load(at(x))))),
  );
  return f;
}

export function elementwiseModuleBytes(memory: typeof MEMORY_LIMITS): Uint8Array {
  return encodeModule([...BINARY_OPS.map(binary), negate()], memory);
}

/** Smallest output (elements) sent to WebAssembly; smaller ones run the TypeScript kernel. */
export const DEFAULT_MIN_ELEMENTWISE = 4096;

/** How an input is read over the [R, C] grid: element strides and the storage span it covers. */
interface Access {
  rs: number;
  cs: number;
  lo: number;
  len: number;
}

/** The input's access pattern over the output grid [R, C] (C the last dim), or null when not covered. */
function access(v: View, R: number, C: number, flat: boolean): Access | null {
  const { shape, strides, offset } = v.layout;
  const n = R * C;
  const rank = shape.length;
  if (flat) {
    if (isContiguous(shape, strides)) return { rs: 0, cs: 1, lo: offset, len: n };
    if (strides.every((s, i) => s === 0 || shape[i] === 1)) return { rs: 0, cs: 0, lo: offset, len: 1 };
    return null;
  }
  const lead = shape.slice(0, -1);
  const leadStrides = strides.slice(0, -1);
  const last = strides[rank - 1]!;
  if (isContiguous(shape, strides)) return { rs: C, cs: 1, lo: offset, len: n };
  const leadZero = leadStrides.every((s, i) => s === 0 || lead[i] === 1);
  if (last === 1 && leadZero) return { rs: 0, cs: 1, lo: offset, len: C };
  if (last === 0 && isContiguous(lead, leadStrides)) return { rs: 1, cs: 0, lo: offset, len: R };
  if (last === 0 && leadZero) return { rs: 0, cs: 0, lo: offset, len: 1 };
  return null;
}

type Fn = (...args: number[]) => void;

/** The float32 add/sub/mul/div/neg kernels over `exports` of the module above, staging through `heap`. */
export function elementwiseKernels(
  exports: Record<string, unknown>,
  heap: Heap,
  minSize = DEFAULT_MIN_ELEMENTWISE,
): { add: Kernel<"add">; sub: Kernel<"sub">; mul: Kernel<"mul">; div: Kernel<"div">; neg: Kernel<"neg"> } {
  const binaryKernel = (op: BinaryOp): Kernel<typeof op> => {
    const fn = exports[op] as Fn;
    const fallback = cpuKernels[op];
    return (inputs, attrs, out) => {
      const a = inputs[0];
      const b = inputs[1];
      const { shape, strides } = out.layout;
      const n = numel(shape);
      if (
        n < minSize ||
        out.dtype !== "float32" ||
        a.dtype !== "float32" ||
        b.dtype !== "float32" ||
        !isContiguous(shape, strides)
      ) {
        fallback(inputs, attrs, out);
        return;
      }
      const C = shape[shape.length - 1]!;
      const R = n / C;
      let pa = access(a, 1, n, true);
      let pb = access(b, 1, n, true);
      let rows = 1;
      let cols = n;
      if (!pa || !pb) {
        pa = access(a, R, C, false);
        pb = access(b, R, C, false);
        rows = R;
        cols = C;
      }
      if (!pa || !pb || (pa.cs === 0 && pb.cs === 0)) {
        fallback(inputs, attrs, out);
        return;
      }
      const xa = pa;
      const xb = pb;
      staged(heap, (st) => {
        const o = st.out(out, n);
        const ax = st.span(a, xa.lo, xa.len);
        const bx = st.span(b, xb.lo, xb.len);
        fn(rows, cols, ax, 4 * xa.rs, 4 * xa.cs, bx, 4 * xb.rs, 4 * xb.cs, o);
      });
    };
  };

  const negFn = exports.neg as Fn;
  const neg: Kernel<"neg"> = (inputs, attrs, out) => {
    const a = inputs[0];
    const n = numel(out.layout.shape);
    if (
      n < minSize ||
      out.dtype !== "float32" ||
      a.dtype !== "float32" ||
      !isContiguous(out.layout.shape, out.layout.strides) ||
      !isContiguous(a.layout.shape, a.layout.strides)
    ) {
      cpuKernels.neg(inputs, attrs, out);
      return;
    }
    staged(heap, (st) => negFn(n, st.in(a, n), st.out(out, n)));
  };

  return {
    add: binaryKernel("add") as Kernel<"add">,
    sub: binaryKernel("sub") as Kernel<"sub">,
    mul: binaryKernel("mul") as Kernel<"mul">,
    div: binaryKernel("div") as Kernel<"div">,
    neg,
  };
}
