import { createWasmBackend, type View, wasmSimdSupported } from "@tsgrad/tensor";
import { CONFORMANCE_OPS, runConformance } from "@tsgrad/tensor/testing";
import { describe, expect, it } from "vitest";

describe("conformance: wasm backend", () => {
  it("runs where WebAssembly SIMD exists (it does on Node 20)", () => {
    expect(wasmSimdSupported()).toBe(true);
  });

  // default routing: small matmuls may stay on the TypeScript kernel
  const backend = createWasmBackend({ name: "wasm-default" });
  for (const op of CONFORMANCE_OPS) {
    it(op, async () => {
      const report = await runConformance("wasm", () => backend, { ops: [op] });
      expect(report.cases[op]).toBeGreaterThan(0);
    });
  }

  it("matmul: every case through the WebAssembly kernel on one thread", async () => {
    const forced = createWasmBackend({ name: "wasm-forced", threads: 1, minMatmulWork: 0 });
    const report = await runConformance("wasm (forced)", () => forced, { ops: ["matmul"] });
    expect(report.cases.matmul).toBeGreaterThan(100);
    // every float32 case ran in WebAssembly; only the other dtypes took the TypeScript kernel
    expect(forced.counters.matmulWasm).toBeGreaterThan(100);
    expect(forced.counters.matmulTs).toBe(30);
    expect(forced.counters.matmulThreaded).toBe(0);
  });

  it("matmul: every case split over two threads", async () => {
    const threaded = createWasmBackend({
      name: "wasm-threaded",
      threads: 2,
      minMatmulWork: 0,
      minThreadedWork: 0,
    });
    expect(threaded.threads).toBe(2);
    try {
      const report = await runConformance("wasm (2 threads)", () => threaded, { ops: ["matmul"] });
      expect(report.cases.matmul).toBeGreaterThan(100);
      expect(threaded.counters.matmulThreaded).toBeGreaterThan(100);
      expect(threaded.counters.matmulWasm).toBe(0);
    } finally {
      threaded.stopThreads();
    }
  });

  it("frees and reuses its memory", () => {
    const b = createWasmBackend({ name: "wasm-heap", threads: 1 });
    const s1 = b.alloc("float32", 1000);
    expect(b.liveBytes()).toBe(4000);
    const v: View = { storage: s1, dtype: "float32", layout: { shape: [1000], strides: [1], offset: 0 } };
    (b.readSync!(v) as Float32Array).fill(1); // a copy: the storage stays zero
    b.free(s1);
    expect(b.liveBytes()).toBe(0);
    const s2 = b.fromArray(new Float32Array([1, 2, 3]), "float32");
    const s3 = b.alloc("float32", 1000);
    const v3: View = { storage: s3, dtype: "float32", layout: { shape: [1000], strides: [1], offset: 0 } };
    expect(Array.from(b.readSync!(v3)).every((x) => x === 0)).toBe(true);
    b.free(s2);
    b.free(s3);
    expect(b.liveBytes()).toBe(0);
  });
});
