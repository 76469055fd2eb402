// float32 sum and max over the last dim of a contiguous view, in WebAssembly. The TypeScript kernels add in
// double precision in element order and round once at the end, and keep the first maximum (a NaN wins and
// stays); these loops do the same operations in the same order (scalar f64 adds, scalar compares), so the
// results are identical, which the conformance suite checks.

import { cpuKernels } from "../backend-cpu/index.js";
import type { Kernel } from "../ops/signatures.js";
import { isContiguous, numel } from "../shape.js";
import {
  add,
  cat,
  encodeModule,
  Func,
  f32c,
  f32FromF64,
  f32load,
  f32store,
  f64add,
  f64c,
  f64FromF32,
  forRange,
  get,
  i32c,
  ifThen,
  inc,
  mul,
  set,
} from "./emit.js";
import type { MEMORY_LIMITS } from "./gemm.js";
import type { Heap } from "./heap.js";
import { staged } from "./stage.js";

/** sum_rows(R, C, x, o): o[r] = float32(sum over c, in order, of double(x[r, c])). */
function sumRows(): Func {
  const f = new Func("sum_rows", 4);
  const [R, C, x, o] = [0, 1, 2, 3];
  const r = f.local();
  const k = f.local();
  const cb = f.local();
  const acc = f.local("f64");
  f.body = cat(
    set(cb, mul(get(C), i32c(4))),
    forRange(
      r,
      i32c(0),
      get(R),
      1,
      set(acc, f64c(0)),
      forRange(k, i32c(0), get(cb), 4, set(acc, f64add(get(acc), f64FromF32(f32load(add(get(x), get(k))))))),
      f32store(get(o), f32FromF64(get(acc))),
      inc(x, get(cb)),
      inc(o, 4),
    ),
  );
  return f;
}

/** max_rows(R, C, x, o): o[r] = the first maximum of x[r, :], or a NaN when the row has one. */
function maxRows(): Func {
  const f = new Func("max_rows", 4);
  const [R, C, x, o] = [0, 1, 2, 3];
  const r = f.local();
  const k = f.local();
  const cb = f.local();
  const acc = f.local("f32");
  const v = f.local("f32");
  const f32gt = (a: number[], b: number[]): number[] => [...a, ...b, 0x5e];
  const f32ne = (a: number[], b: number[]): number[] => [...a, ...b, 0x5c];
  f.body = cat(
    set(cb, mul(get(C), i32c(4))),
    forRange(
      r,
      i32c(0),
      get(R),
      1,
      set(acc, f32c(Number.NEGATIVE_INFINITY)),
      forRange(
        k,
        i32c(0),
        get(cb),
        4,
        set(v, f32load(add(get(x), get(k)))),
        ifThen(f32gt(get(v), get(acc)), set(acc, get(v)), ifThen(f32ne(get(v), get(v)), set(acc, get(v)))),
      ),
      f32store(get(o), get(acc)),
      inc(x, get(cb)),
      inc(o, 4),
    ),
  );
  return f;
}

export function reduceModuleBytes(memory: typeof MEMORY_LIMITS): Uint8Array {
  return encodeModule([sumRows(), maxRows()], memory);
}

/** Smallest input (elements) sent to WebAssembly. */
export const DEFAULT_MIN_REDUCE = 4096;

type Fn = (...args: number[]) => void;

/** float32 sum/max over the last dim of contiguous views, staged through `heap` when outside its memory. */
export function reduceKernels(
  exports: Record<string, unknown>,
  heap: Heap,
  minSize = DEFAULT_MIN_REDUCE,
): { sum: Kernel<"sum">; max: Kernel<"max"> } {
  const make = (op: "sum" | "max"): Kernel<"sum"> => {
    const fn = exports[op === "sum" ? "sum_rows" : "max_rows"] as Fn;
    const fallback = cpuKernels[op] as Kernel<"sum">;
    return (inputs, attrs, out) => {
      const a = inputs[0];
      if (a.dtype !== "float32" || attrs.dims.length !== 1) {
        fallback(inputs, attrs, out); // the common cheap rejections first: this wrapper sits on every sum/max
        return;
      }
      const { shape, strides, offset } = a.layout;
      const n = numel(shape);
      const rank = shape.length;
      if (
        n < minSize ||
        a.dtype !== "float32" ||
        out.dtype !== "float32" ||
        attrs.dims.length !== 1 ||
        attrs.dims[0] !== rank - 1 ||
        !isContiguous(shape, strides) ||
        !isContiguous(out.layout.shape, out.layout.strides)
      ) {
        fallback(inputs, attrs, out);
        return;
      }
      const C = shape[rank - 1]!;
      const R = n / C;
      staged(heap, (st) => fn(R, C, st.span(a, offset, n), st.out(out, R)));
    };
  };
  return { sum: make("sum"), max: make("max") as unknown as Kernel<"max"> };
}
