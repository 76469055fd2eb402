// The wasm fused kernels' fast float32 exp (backend-wasm/fused-exp.ts) alone, densely against Math.exp over
// the float32 range and at special values, and the f64 log of the row sums against Math.log; built with
// separate multiplies and adds and with fused multiply-add (relaxed SIMD, the default where it exists).

import { describe, expect, it } from "vitest";
import { fusedModuleBytes } from "../src/backend-wasm/fused-simd.js";
import { MEMORY_LIMITS } from "../src/backend-wasm/gemm.js";
import { wasmApi } from "../src/backend-wasm/heap.js";
import { relaxedSimdAvailable } from "../src/backend-wasm/relaxed.js";

describe.each([false, true])("fast float32 exp (f32x4), fma %s", (fma) => {
  it("builds (relaxed SIMD is there on Node 20 once its flag is on)", () => {
    expect(relaxedSimdAvailable(wasmApi()!)).toBe(true);
  });
  const mem = new (wasmApi()!.Memory)({ ...MEMORY_LIMITS, shared: true });
  mem.grow(128);
  relaxedSimdAvailable(wasmApi()!);
  const ex = new (wasmApi()!.Instance)(new (wasmApi()!.Module)(fusedModuleBytes(MEMORY_LIMITS, fma)), {
    env: { memory: mem },
  }).exports as Record<string, (...a: number[]) => number>;
  const N = 1 << 20;
  const X = 1024;
  const O = X + 4 * N + 64;
  const fb = new Float32Array(1);
  const ib = new Int32Array(fb.buffer);
  /** The spacing of float32 around |y| (subnormal spacing below the normal range). */
  const ulp = (y: number): number => {
    fb[0] = Math.abs(y);
    ib[0] = ib[0]! + 1;
    return fb[0]! - Math.abs(Math.fround(y));
  };

  it("is within 1 ulp of Math.exp over [-104, 89] (about 9.7 million points)", () => {
    const x = new Float32Array(mem.buffer, X, N);
    const o = new Float32Array(mem.buffer, O, N);
    let worst = 0;
    const step = 193 / (N * 9.25);
    for (let start = -104; start < 89; start += N * step) {
      for (let i = 0; i < N; i++) x[i] = start + i * step;
      ex.exp!(N - 1, X, O); // an odd count: the last floats take the scalar tail
      for (let i = 0; i < N - 1; i++) {
        const ref = Math.exp(x[i]!);
        const fr = Math.fround(ref);
        const err =
          fr === Number.POSITIVE_INFINITY ? (o[i] === fr ? 0 : 99) : Math.abs(o[i]! - ref) / ulp(fr);
        if (err > worst) worst = err;
      }
    }
    expect(worst).toBeLessThan(1);
  });

  it("special values: NaN (on both paths), +-inf, overflow, underflow, subnormal results", () => {
    const sp = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0, -0, 88.72, 88.73, 1e30];
    const more = [-87.5, -100, -103.2, -103.9, -104, -1e30, -3.4e38, 3.4e38, 1];
    // a NaN among small values takes the short path (every |x| <= 87), the rest the clamped one
    const all = [1, Number.NaN, 2, -3, ...sp, ...more];
    new Float32Array(mem.buffer, X, all.length).set(all);
    ex.exp!(all.length, X, O);
    const got = Array.from(new Float32Array(mem.buffer, O, all.length));
    all.forEach((v, i) => {
      const ref = Math.fround(Math.exp(Math.fround(v)));
      if (Number.isNaN(ref)) expect(got[i]).toBeNaN();
      else if (ref === Number.POSITIVE_INFINITY || ref === 0) expect(got[i]).toBe(ref);
      else expect(Math.abs(got[i]! - ref)).toBeLessThanOrEqual(ulp(ref));
    });
  });

  it("log64, the rows' log, agrees with Math.log", () => {
    for (const s of [0, 1, 1.5, 2, Math.SQRT2, 3.999, 17, 4096, 1e6, Number.NaN, Number.POSITIVE_INFINITY]) {
      const got = ex.log64!(s);
      const ref = Math.log(s);
      if (Number.isNaN(ref)) expect(got).toBeNaN();
      else if (!Number.isFinite(ref)) expect(got).toBe(ref);
      else expect(Math.abs(got - ref)).toBeLessThanOrEqual(1e-15 * Math.max(1, Math.abs(ref)));
    }
  });
});
