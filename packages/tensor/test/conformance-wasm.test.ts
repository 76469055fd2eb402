import {
  cat,
  contiguousStrides,
  cpuKernels,
  createCpuBackend,
  createWasmBackend,
  FMA_TILE,
  getCpuBackend,
  MUL_ADD_TILE,
  randn,
  type View,
  type WasmBackend,
  wasmSimdSupported,
  zeros,
} from "@tsgrad/tensor";
import { CONFORMANCE_OPS, expectAllClose, runConformance } from "@tsgrad/tensor/testing";
import { describe, expect, it } from "vitest";

describe("conformance: wasm backend", () => {
  it("runs where WebAssembly SIMD exists (it does on Node 20)", () => {
    expect(wasmSimdSupported()).toBe(true);
  });

  it("multiplies with the 5 x 8 fused multiply-add tile (relaxed SIMD, turned on where Node 20 has it off)", () => {
    expect(createWasmBackend({ name: "wasm-tile", threads: 1 }).tile).toBe(FMA_TILE);
  });

  // default routing: small matmuls may stay on the TypeScript kernel
  const backend = createWasmBackend({ name: "wasm-default" });
  for (const op of CONFORMANCE_OPS) {
    it(op, async () => {
      const report = await runConformance("wasm", () => backend, { ops: [op] });
      expect(report.cases[op]).toBeGreaterThan(0);
    });
  }

  it("the default cpu device passes every op", async () => {
    const report = await runConformance("cpu (default)", () => getCpuBackend());
    expect(report.total).toBeGreaterThan(3000);
  });

  it("matmul: every case through the WebAssembly kernel on one thread", async () => {
    const forced = createWasmBackend({ name: "wasm-forced", threads: 1, minMatmulWork: 0 });
    const report = await runConformance("wasm (forced)", () => forced, { ops: ["matmul"] });
    expect(report.cases.matmul).toBeGreaterThan(100);
    // every float32 case ran in WebAssembly; only the other dtypes took the TypeScript kernel
    expect(forced.counters.matmulWasm).toBeGreaterThan(100);
    expect(forced.counters.matmulTs).toBe(30);
    expect(forced.counters.matmulThreaded).toBe(0);
  });

  it("matmul: every case through the 4 x 8 mul + add tile, the one used without relaxed SIMD", async () => {
    const mulAdd = createWasmBackend({ name: "wasm-mul-add", threads: 1, minMatmulWork: 0, fma: false });
    expect(mulAdd.tile).toBe(MUL_ADD_TILE);
    const report = await runConformance("wasm (mul + add tile)", () => mulAdd, { ops: ["matmul"] });
    expect(report.cases.matmul).toBeGreaterThan(100);
    expect(mulAdd.counters.matmulWasm).toBeGreaterThan(100);
  });

  it("matmul: every case split over two threads", async () => {
    const threaded = createWasmBackend({
      name: "wasm-threaded",
      threads: 2,
      minMatmulWork: 0,
      minThreadedWork: 0,
    });
    expect(threaded.threads).toBe(2);
    expect(await threaded.startThreads()).toBe(true);
    try {
      const report = await runConformance("wasm (2 threads)", () => threaded, { ops: ["matmul"] });
      expect(report.cases.matmul).toBeGreaterThan(100);
      expect(threaded.counters.matmulThreaded).toBeGreaterThan(100);
      expect(threaded.counters.matmulWasm).toBe(0);
    } finally {
      threaded.stopThreads();
    }
  });

  it("matmul: every case with ordinary typed-array storage (operands staged in and out)", async () => {
    const js = createWasmBackend({ name: "wasm-js", storage: "js", minMatmulWork: 0, minThreadedWork: 8192 });
    expect(await js.startThreads()).toBe(true);
    try {
      const report = await runConformance("wasm (js storage)", () => js, { ops: ["matmul", "add", "sum"] });
      expect(report.cases.matmul).toBeGreaterThan(100);
      expect(js.counters.matmulWasm).toBeGreaterThan(50);
      expect(js.counters.matmulThreaded).toBeGreaterThan(10);
    } finally {
      js.stopThreads();
    }
  });

  it("is the default cpu device: plain TS kernels on typed arrays, float32 matmul in WebAssembly", () => {
    const cpu = getCpuBackend() as Partial<WasmBackend>;
    expect(cpu.name).toBe("cpu");
    expect(cpu.counters).toBeDefined();
    const before = cpu.counters!.matmulWasm;
    const a = randn([33, 65], { device: "cpu" });
    const b = randn([65, 17], { device: "cpu" });
    const c = a.matmul(b);
    expect(cpu.counters!.matmulWasm).toBe(before + 1);
    const want = createCpuBackend("reference");
    const view = (t: typeof a): View => ({
      storage: want.fromArray(t.dataSync(), "float32"),
      dtype: "float32",
      layout: { shape: t.shape, strides: [t.shape[1]!, 1], offset: 0 },
    });
    const out = view(zeros([33, 17]));
    cpuKernels.matmul([view(a), view(b)], {}, out);
    expectAllClose(c.dataSync(), want.readSync!(out), { atol: 1e-4, rtol: 1e-5 });
  });

  it("matmul gives bit-identical results on one and on two threads (each element keeps its summation order)", async () => {
    const one = createWasmBackend({ name: "wasm-one", threads: 1, minMatmulWork: 0 });
    const two = createWasmBackend({ name: "wasm-two", threads: 2, minMatmulWork: 0, minThreadedWork: 0 });
    expect(await two.startThreads()).toBe(true);
    try {
      for (const [T, M, K, N] of [
        [1, 131, 300, 70],
        [1, 5, 260, 301],
        [3, 33, 17, 9],
      ] as const) {
        const a = Float32Array.from({ length: T * M * K }, (_, i) => Math.sin(i * 0.37));
        const b = Float32Array.from({ length: T * K * N }, (_, i) => Math.cos(i * 0.11));
        const run = (be: typeof one): Float32Array => {
          const v = (data: Float32Array, shape: number[]): View => ({
            storage: be.fromArray(data, "float32"),
            dtype: "float32",
            layout: { shape, strides: [shape[1]! * shape[2]!, shape[2]!, 1], offset: 0 },
          });
          const out = v(new Float32Array(T * M * N), [T, M, N]);
          be.kernels.matmul!([v(a, [T, M, K]), v(b, [T, K, N])], {}, out);
          return be.readSync!(out) as Float32Array;
        };
        expect(Array.from(run(two))).toEqual(Array.from(run(one)));
      }
      expect(two.counters.matmulThreaded).toBe(3);
    } finally {
      two.stopThreads();
    }
  });

  it("add, sub, mul, div, neg, contiguous: every case through WebAssembly SIMD (both storages), identical to the TS kernels", async () => {
    const ops = ["add", "sub", "mul", "div", "neg", "contiguous"] as const;
    for (const storage of ["wasm", "js"] as const) {
      const forced = createWasmBackend({
        name: `wasm-ew-${storage}`,
        threads: 1,
        storage,
        minElementwise: 0,
      });
      const report = await runConformance(`wasm elementwise (${storage} storage)`, () => forced, { ops });
      for (const op of ops) expect(report.cases[op]).toBeGreaterThan(10);
    }
  });

  it("add, sub, mul, div, neg over large float32 views (same shape, scalar, row, column, offset, transposed) equal the TS kernels", () => {
    const be = createWasmBackend({ name: "wasm-ew-large", threads: 1, storage: "js" });
    const ref = createCpuBackend("ew-reference");
    const R = 67;
    const C = 131; // R C > the default threshold; C % 4 = 3 exercises the scalar tail
    const vals = Float32Array.from({ length: R * C + 5 }, (_, i) =>
      i % 97 === 0 ? 0 : Math.sin(i * 0.731) * 10 ** ((i % 7) - 3),
    );
    const layouts: Record<string, { strides: number[]; offset: number }> = {
      full: { strides: [C, 1], offset: 0 },
      offset: { strides: [C, 1], offset: 5 },
      scalar: { strides: [0, 0], offset: 3 },
      row: { strides: [0, 1], offset: 1 },
      column: { strides: [1, 0], offset: 2 },
      transposed: { strides: [1, R], offset: 0 }, // falls back to the TS kernel
    };
    const run = (b: typeof ref, op: "add" | "sub" | "mul" | "div" | "neg", ls: string[]): number[] => {
      const views: View[] = ls.map((l) => ({
        storage: b.fromArray(vals, "float32"),
        dtype: "float32",
        layout: { shape: [R, C], ...layouts[l]! },
      }));
      const out: View = {
        storage: b.alloc("float32", R * C),
        dtype: "float32",
        layout: { shape: [R, C], strides: [C, 1], offset: 0 },
      };
      (b.kernels[op] as (i: View[], a: unknown, o: View) => void)(views, {}, out);
      return Array.from(b.readSync!(out));
    };
    const names = Object.keys(layouts);
    for (const op of ["add", "sub", "mul", "div"] as const)
      for (const la of names)
        for (const lb of names)
          expect(run(be, op, [la, lb]), `${op} ${la} ${lb}`).toEqual(run(ref, op, [la, lb]));
    for (const l of names) expect(run(be, "neg", [l])).toEqual(run(ref, "neg", [l]));
  });

  it("contiguous over large float32 views (head transposes, offsets, broadcast rows, odd rows) and cat's windows equal the TS kernel", () => {
    for (const storage of ["wasm", "js"] as const) {
      const be = createWasmBackend({ name: `wasm-copy-${storage}`, threads: 1, storage });
      const ref = createCpuBackend("copy-reference");
      const vals = Float32Array.from({ length: 8 * 4 * 33 * 68 + 7 }, (_, i) => Math.sin(i * 0.37) * 100);
      const [B, H, T, D] = [8, 4, 33, 68]; // 68 % 4 = 0, 33 odd
      const cases: Record<string, { shape: number[]; strides: number[]; offset: number }> = {
        "[B, T, H, D] read as [B, H, T, D]": {
          shape: [B, H, T, D],
          strides: [T * H * D, D, H * D, 1],
          offset: 3,
        },
        "[B, H, T, D] read as [B, T, H, D]": {
          shape: [B, T, H, D],
          strides: [H * T * D, D, T * D, 1],
          offset: 0,
        },
        "rows of 67 every 68": { shape: [B * H * T, 67], strides: [68, 1], offset: 1 },
        "a row broadcast over rows": { shape: [300, 68], strides: [0, 1], offset: 5 },
        "five dims (TS kernel)": {
          shape: [2, 2, 2, 33, 68],
          strides: [H * T * D * 4, H * T * D * 2, H * T * D, D, 1],
          offset: 0,
        },
        "transposed last dim (TS kernel)": { shape: [68, 264], strides: [1, 68], offset: 0 },
      };
      const run = (b: typeof ref, c: { shape: number[]; strides: number[]; offset: number }): number[] => {
        const n = c.shape.reduce((x, y) => x * y, 1);
        const out: View = {
          storage: b.fromArray(new Float32Array(n).fill(Number.NaN), "float32"),
          dtype: "float32",
          layout: { shape: c.shape, strides: contiguousStrides(c.shape), offset: 0 },
        };
        const x: View = { storage: b.fromArray(vals, "float32"), dtype: "float32", layout: c };
        b.kernels.contiguous!([x], {}, out);
        return Array.from(b.readSync!(out));
      };
      for (const [name, c] of Object.entries(cases))
        expect(run(be, c), `${storage}: ${name}`).toEqual(run(ref, c));
      // cat writes each part into a strided window of its output through the same kernel
      const parts = [randn([64, 70], { device: "cpu" }), randn([64, 30], { device: "cpu" })];
      const joined = cat(parts, 1).dataSync();
      for (let r = 0; r < 64; r++)
        expect(Array.from(joined.subarray(100 * r, 100 * r + 100))).toEqual([
          ...parts[0]!.dataSync().subarray(70 * r, 70 * r + 70),
          ...parts[1]!.dataSync().subarray(30 * r, 30 * r + 30),
        ]);
    }
  });

  it("exp, sigmoid: every case through WebAssembly (both storages), identical to the TS kernels", async () => {
    const ops = ["exp", "sigmoid"] as const;
    for (const storage of ["wasm", "js"] as const) {
      const forced = createWasmBackend({
        name: `wasm-tr-${storage}`,
        threads: 1,
        storage,
        minTranscendental: 0,
      });
      const report = await runConformance(`wasm exp/sigmoid (${storage} storage)`, () => forced, { ops });
      for (const op of ops) expect(report.cases[op]).toBeGreaterThan(10);
    }
  });

  it("sum, max over the last dim: every case through WebAssembly (both storages), identical to the TS kernels", async () => {
    const ops = ["sum", "max"] as const;
    for (const storage of ["wasm", "js"] as const) {
      const forced = createWasmBackend({ name: `wasm-rd-${storage}`, threads: 1, storage, minReduce: 0 });
      const report = await runConformance(`wasm sum/max (${storage} storage)`, () => forced, { ops });
      for (const op of ops) expect(report.cases[op]).toBeGreaterThan(10);
    }
  });

  it("sum, max over the last dim of a large float32 view (NaN, -0, infinities included) equal the TS kernels", () => {
    const be = createWasmBackend({ name: "wasm-rd-large", threads: 1, storage: "js" });
    const ref = createCpuBackend("rd-reference");
    const R = 37;
    const C = 515;
    const vals = Float32Array.from({ length: R * C }, (_, i) => Math.sin(i * 0.37) * 10 ** ((i % 9) - 4));
    vals.set([Number.NaN, -0, 0, Number.POSITIVE_INFINITY], 3 * C + 7);
    vals.set([-0, 0], 5 * C);
    vals.fill(-0, 6 * C, 7 * C);
    const run = (b: typeof ref, op: "sum" | "max"): number[] => {
      const x: View = {
        storage: b.fromArray(vals, "float32"),
        dtype: "float32",
        layout: { shape: [R, C], strides: [C, 1], offset: 0 },
      };
      const out: View = {
        storage: b.alloc("float32", R),
        dtype: "float32",
        layout: { shape: [R, 1], strides: [1, 1], offset: 0 },
      };
      (b.kernels[op] as (i: View[], a: unknown, o: View) => void)([x], { dims: [1] }, out);
      return Array.from(b.readSync!(out));
    };
    for (const op of ["sum", "max"] as const) expect(run(be, op), op).toEqual(run(ref, op));
  });

  it("exp, sigmoid: the WebAssembly kernels equal Math.exp rounded to float32 over a dense sample of every float32", () => {
    const be = createWasmBackend({ name: "wasm-tr-dense", threads: 1, storage: "js" });
    const n = 1 << 18;
    const bits = new Uint32Array(n);
    const x = new Float32Array(bits.buffer);
    const mk = (data: Float32Array): View => ({
      storage: be.fromArray(data, "float32"),
      dtype: "float32",
      layout: { shape: [n], strides: [1], offset: 0 },
    });
    let bad = 0;
    const same = (a: number, b: number): boolean => a === b || (Number.isNaN(a) && Number.isNaN(b));
    // 8 blocks of 2^18 float32 bit patterns spread over the whole space (stride 2039, a prime), so every
    // exponent and both signs are covered, plus the special values
    for (let block = 0; block < 8; block++) {
      for (let i = 0; i < n; i++) bits[i] = (block * n + i) * 2039;
      x.set([0, -0, 1, -1, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN, 88.5, -103.5], 0);
      for (const op of ["exp", "sigmoid"] as const) {
        const out = mk(new Float32Array(n));
        (be.kernels[op] as (i: View[], a: unknown, o: View) => void)([mk(x)], {}, out);
        const got = be.readSync!(out);
        for (let i = 0; i < n; i++) {
          const v = x[i]!;
          const want = Math.fround(
            op === "exp" ? Math.exp(v) : v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v)),
          );
          if (!same(got[i]!, want)) bad++;
        }
      }
    }
    expect(bad).toBe(0);
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
