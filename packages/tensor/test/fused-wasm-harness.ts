// What the wasm fused-kernel tests share: a backend per storage, views of plain data placed at an offset
// inside junk, the comparison of a wasm kernel with the TS kernel, and a table split over three threads
// compared with one thread.

import { cpuFusedKernels, createWasmBackend, type DType, type View } from "@tsgrad/tensor";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { expect } from "vitest";
import { wasmFusedCounters, wasmFusedKernels } from "../src/backend-wasm/fused.js";
import { MEMORY_LIMITS } from "../src/backend-wasm/gemm.js";
import { Heap, wasmApi } from "../src/backend-wasm/heap.js";
import type { FusedKernelTable, FusedName } from "../src/fused/signatures.js";

/** A deterministic generator (xorshift), uniform in [-1, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) / 2 ** 32) * 2 - 1;
  };
}

type Any = (i: View[], a: unknown, o: View[]) => void;
export type Which = "js" | "wasm";
/** Inputs as plain arrays with shapes; the same ones are given to both kernels. */
export type Inputs = [number[], number[], DType?][];
export interface Run {
  name: FusedName;
  attrs: unknown;
  outs: number[][];
}

/** A backend per storage (names prefixed with `prefix`, one thread, every size to WebAssembly) and helpers over them. */
export function fusedHarness(prefix: string) {
  const backends = {
    js: createWasmBackend({ name: `${prefix}-js`, threads: 1, storage: "js", minFused: 0 }),
    wasm: createWasmBackend({ name: `${prefix}-wasm`, threads: 1, storage: "wasm", minFused: 0 }),
  };

  /** A contiguous row-major view of `data` on backend `which`, at element offset `offset` of its storage. */
  const view = (
    which: Which,
    data: ArrayLike<number>,
    shape: number[],
    dtype: DType = "float32",
    offset = 0,
  ): View => {
    const n = data.length;
    const Ctor = dtype === "int32" ? Int32Array : dtype === "float64" ? Float64Array : Float32Array;
    const full = new Ctor(n + offset + 3);
    full.fill(dtype === "int32" ? 7 : Number.NaN); // junk around the view must not be read
    full.set(data, offset);
    const strides: number[] = [];
    let s = 1;
    for (let i = shape.length - 1; i >= 0; i--) {
      strides[i] = s;
      s *= shape[i]!;
    }
    return { storage: backends[which].fromArray(full, dtype), layout: { shape, strides, offset }, dtype };
  };
  const zeros = (which: Which, shape: number[], dtype: DType = "float32"): View =>
    view(which, new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, dtype);
  const read = (which: Which, v: View): number[] => Array.from(backends[which].readSync!(v));

  /** Runs `name` on the TS kernel and on backend `which`'s wasm table (inputs at `offset`), compares outputs. */
  const compare = (which: Which, run: Run, inputs: Inputs, offset: number, tol = TOLERANCES.f32): void => {
    const make = (w: Which) =>
      inputs.map(([d, shape, dtype]) => view(w, d, shape, dtype ?? "float32", offset));
    const ref = run.outs.map((s) => zeros("js", s));
    const got = run.outs.map((s) => zeros(which, s));
    (cpuFusedKernels[run.name] as unknown as Any)(make("js"), run.attrs, ref);
    const table = backends[which].fused as FusedKernelTable;
    const before = wasmFusedCounters(table)!.wasm;
    (table[run.name] as unknown as Any)(make(which), run.attrs, got);
    expect(wasmFusedCounters(table)!.wasm).toBe(before + 1);
    run.outs.forEach((_, i) => {
      expectAllClose(read(which, got[i]!), read("js", ref[i]!), tol);
    });
  };

  /** A fused table that splits every kernel over three threads, and `same`: it gives what one thread gives. */
  const threadedTable = () => {
    const memory = new (wasmApi()!.Memory)({ ...MEMORY_LIMITS, shared: true });
    const threaded = wasmFusedKernels({
      heap: new Heap(memory, 1024),
      inHeap: () => false,
      minSize: 0,
      threads: () => 3,
      minThreaded: 0,
    });
    const single = backends.js.fused as FusedKernelTable;
    /** The kernel on three threads and on this one: identical outputs (rows are independent). */
    const same = (name: FusedName, attrs: unknown, inputs: View[], outs: number[][]): void => {
      const a = outs.map((o) => zeros("js", o));
      const b = outs.map((o) => zeros("js", o));
      const before = wasmFusedCounters(threaded)!.threaded;
      (threaded[name] as unknown as Any)(inputs, attrs, a);
      expect(wasmFusedCounters(threaded)!.threaded).toBe(before + 1);
      (single[name] as unknown as Any)(inputs, attrs, b);
      a.forEach((v, i) => {
        expect(read("js", v)).toEqual(read("js", b[i]!));
      });
    };
    return { threaded, same };
  };

  return { backends, view, zeros, read, compare, threadedTable };
}
