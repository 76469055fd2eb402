// The wasm backend's `contiguous` for float32 views whose last dim (after merging dims that are laid out
// as one) is contiguous and that have at most three other dims: rows of C floats copied with v128 moves,
// the outer dims walked by byte strides. Attention's head transposes ([B, H, T, d] <-> [B, T, H, d]) are
// this case; the TypeScript kernel computed a strided index per element and ran ~4x slower. Other views
// (a transposed last dim, more dims, other dtypes, small tensors) stay on the TypeScript kernel.

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
  Func,
  forRange,
  get,
  i32c,
  i32load,
  i32store,
  inc,
  mul,
  set,
  v128load,
  v128store,
} from "./emit.js";
import type { MEMORY_LIMITS } from "./gemm.js";
import type { Heap } from "./heap.js";
import { staged } from "./stage.js";

/**
 * copy_rows(d0, d1, d2, C, x, s0, s1, s2, o): for each (i0, i1, i2) the C floats at x + i0 s0 + i1 s1 +
 * i2 s2 (byte strides) go, in order, to the next C floats of o.
 */
function copyRows(): Func {
  const f = new Func("copy_rows", 9);
  const [d0, d1, d2, C, x, s0, s1, s2, o] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [i0, i1, i2, k, cb, c16, r0, r1, r2] = Array.from({ length: 9 }, () => f.local());
  const at = (base: Code): Code => add(base, get(k));
  const row = cat(
    forRange(k, i32c(0), get(c16), 16, v128store(at(get(o)), v128load(at(get(r2))))),
    forRange(k, get(c16), get(cb), 4, i32store(at(get(o)), i32load(at(get(r2))))),
    inc(o, get(cb)),
  );
  f.body = cat(
    set(cb, mul(get(C), i32c(4))),
    set(c16, and(get(cb), i32c(-16))),
    set(r0, get(x)),
    forRange(
      i0,
      i32c(0),
      get(d0),
      1,
      set(r1, get(r0)),
      forRange(
        i1,
        i32c(0),
        get(d1),
        1,
        set(r2, get(r1)),
        forRange(i2, i32c(0), get(d2), 1, row, inc(r2, get(s2))),
        inc(r1, get(s1)),
      ),
      inc(r0, get(s0)),
    ),
  );
  return f;
}

export function copyModuleBytes(memory: typeof MEMORY_LIMITS): Uint8Array {
  return encodeModule([copyRows()], memory);
}

/**
 * The view as at most three outer dims over rows of C contiguous elements: [d0, d1, d2, C] and the outer
 * element strides, after dropping size-1 dims and merging neighbours laid out as one; null otherwise.
 */
export function rowsLayout(v: View): { dims: number[]; strides: number[]; C: number } | null {
  const { shape, strides } = v.layout;
  const merged: [number, number][] = [];
  shape.forEach((n, i) => {
    if (n === 1) return;
    const last = merged[merged.length - 1];
    if (last && last[1] === strides[i]! * n) {
      last[0] *= n;
      last[1] = strides[i]!;
    } else merged.push([n, strides[i]!]);
  });
  if (merged.length === 0) merged.push([1, 1]);
  const [C, cs] = merged.pop()!;
  if (cs !== 1 || merged.length > 3 || merged.some(([, s]) => s < 0)) return null;
  while (merged.length < 3) merged.unshift([1, 0]);
  return { dims: merged.map(([n]) => n), strides: merged.map(([, s]) => s), C };
}

/** Smallest output (elements) the wasm copy takes. */
export const DEFAULT_MIN_COPY = 4096;

/** `contiguous` over the module above's exports, staging through `heap` what lies outside it. */
export function copyKernel(
  exports: Record<string, unknown>,
  heap: Heap,
  minSize = DEFAULT_MIN_COPY,
): Kernel<"contiguous"> {
  const fn = exports.copy_rows as (...a: number[]) => void;
  return (inputs, attrs, out) => {
    const x = inputs[0];
    const n = numel(out.layout.shape);
    // (copyInto hands cat and padNarrow a strided window of their output: those stay on the TS kernel)
    const dense = isContiguous(out.layout.shape, out.layout.strides);
    const rows =
      x.dtype === "float32" && out.dtype === "float32" && n > 0 && n >= minSize && dense
        ? rowsLayout(x)
        : null;
    if (!rows) {
      cpuKernels.contiguous(inputs, attrs, out);
      return;
    }
    const { dims, strides, C } = rows;
    staged(heap, (st) => {
      const src = st.base(x) + 4 * x.layout.offset;
      const dst = st.out(out, n);
      fn(dims[0]!, dims[1]!, dims[2]!, C, src, 4 * strides[0]!, 4 * strides[1]!, 4 * strides[2]!, dst);
    });
  };
}
