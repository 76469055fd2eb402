// The wasm sgemm's own paths, against a float64 reference: register-tile and K-block edges, every packing
// case (row-major, transposed and strided operands), the output written without being read (C starts as
// NaN), the skinny products that read an operand in place, and each way a matmul is split over two
// threads (shared packed B by rows or by columns, whole batch entries, a broadcast B).
import { createWasmBackend, FMA_TILE, MUL_ADD_TILE, type View, type WasmBackend } from "@tsgrad/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/** How an operand is laid out: row-major, transposed, or every other element of a wider row-major array. */
type Layout = "n" | "t" | "strided";

interface Operand {
  data: Float32Array;
  strides: [number, number, number];
}

/** A T x R x C operand with values f(t, r, c) stored as `layout`; batch stride 0 when `broadcast`. */
function operand(T: number, R: number, C: number, layout: Layout, broadcast = false): Operand {
  const f = (t: number, r: number, c: number): number => Math.sin(0.37 * r + 0.11 * c + 1.3 * t) + 0.25;
  const Tn = broadcast ? 1 : T;
  const data = new Float32Array(Tn * R * C * (layout === "strided" ? 2 : 1));
  const rs = layout === "n" ? C : layout === "t" ? 1 : 2 * C;
  const cs = layout === "n" ? 1 : layout === "t" ? R : 2;
  const ts = broadcast ? 0 : R * C * (layout === "strided" ? 2 : 1);
  for (let t = 0; t < Tn; t++)
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) data[t * ts + r * rs + c * cs] = f(t, r, c);
  return { data, strides: [ts, rs, cs] };
}

function reference(T: number, M: number, K: number, N: number, a: Operand, b: Operand): Float64Array {
  const out = new Float64Array(T * M * N);
  for (let t = 0; t < T; t++)
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++)
          s +=
            a.data[t * a.strides[0] + i * a.strides[1] + k * a.strides[2]]! *
            b.data[t * b.strides[0] + k * b.strides[1] + j * b.strides[2]]!;
        out[(t * M + i) * N + j] = s;
      }
  return out;
}

function run(
  be: WasmBackend,
  T: number,
  M: number,
  K: number,
  N: number,
  a: Operand,
  b: Operand,
): Float32Array {
  const v = (o: Operand, shape: number[]): View => ({
    storage: be.fromArray(o.data, "float32"),
    dtype: "float32",
    layout: { shape, strides: o.strides, offset: 0 },
  });
  // C starts as NaN: sgemm must write every element without reading it
  const out: View = {
    storage: be.fromArray(new Float32Array(T * M * N).fill(Number.NaN), "float32"),
    dtype: "float32",
    layout: { shape: [T, M, N], strides: [M * N, N, 1], offset: 0 },
  };
  be.kernels.matmul!([v(a, [T, M, K]), v(b, [T, K, N])], {}, out);
  return be.readSync!(out) as Float32Array;
}

function check(
  be: WasmBackend,
  T: number,
  M: number,
  K: number,
  N: number,
  la: Layout,
  lb: Layout,
  bcast = false,
) {
  const a = operand(T, M, K, la);
  const b = operand(T, K, N, lb, bcast);
  const got = run(be, T, M, K, N, a, b);
  const want = reference(T, M, K, N, a, b);
  for (let i = 0; i < want.length; i++) {
    const tol = 1e-5 * K + 1e-4 * Math.abs(want[i]!);
    if (!(Math.abs(got[i]! - want[i]!) <= tol))
      throw new Error(`${T}x${M}x${K}x${N} ${la}${lb}: element ${i} is ${got[i]}, want ${want[i]}`);
  }
}

const LAYOUTS: [Layout, Layout][] = [
  ["n", "n"],
  ["n", "t"],
  ["t", "n"],
  ["t", "t"],
  ["strided", "strided"],
];

describe.each([
  ["5 x 8 FMA", FMA_TILE],
  ["4 x 8 mul + add", MUL_ADD_TILE],
])("wasm sgemm, %s tile", (label, tile) => {
  const fma = tile.fma;
  const backends = {
    one: createWasmBackend({ name: `gemm-one-${label}`, threads: 1, minMatmulWork: 0, fma }),
    two: createWasmBackend({
      name: `gemm-two-${label}`,
      threads: 2,
      minMatmulWork: 0,
      minThreadedWork: 0,
      fma,
    }),
    js: createWasmBackend({
      name: `gemm-js-${label}`,
      threads: 2,
      storage: "js",
      minMatmulWork: 0,
      minThreadedWork: 0,
      fma,
    }),
  };
  it("runs the tile asked for", () => {
    for (const be of Object.values(backends)) expect(be.tile).toBe(tile);
  });
  beforeAll(async () => {
    expect(await backends.two.startThreads()).toBe(true);
    expect(await backends.js.startThreads()).toBe(true);
  });
  afterAll(() => {
    backends.two.stopThreads();
    backends.js.stopThreads();
  });

  it("tile and K-block edges, every layout, one thread", () => {
    for (const [la, lb] of LAYOUTS)
      for (const K of [1, 3, 4, 5, 8, 255, 256, 257, 300])
        for (const [M, N] of [
          [1, 1],
          [4, 8],
          [5, 9],
          [3, 7],
          [10, 8],
          [33, 17],
          [131, 24],
          [171, 24],
        ] as const)
          check(backends.one, 1, M, K, N, la, lb);
  });

  it("small K and small N (rank-8 products), one thread", () => {
    for (const [la, lb] of LAYOUTS) {
      check(backends.one, 1, 300, 8, 70, la, lb);
      check(backends.one, 1, 70, 300, 8, la, lb);
      check(backends.one, 1, 8, 300, 70, la, lb);
    }
  });

  // with the FMA tile these run on the module's narrow set (4 x 8 mul + add), as at most 16 rows or columns
  it("skinny products that read A (column-major, N <= 16) or B (row-major, M <= 16) in place", () => {
    for (const be of [backends.one, backends.two]) {
      for (const [la, lb] of LAYOUTS) {
        check(be, 1, 8, 300, 72, la, lb); // B in place when row-major (M = 8, N a multiple of 8)
        check(be, 1, 16, 257, 16, la, lb); // both in place when A is transposed and B row-major
        check(be, 1, 72, 300, 8, la, lb); // A in place when transposed (M a multiple of the tile's rows)
        check(be, 1, 80, 300, 8, la, lb);
        check(be, 1, 264, 513, 16, la, lb); // A in place, three K blocks, rows split on two threads
        check(be, 1, 280, 513, 16, la, lb);
        check(be, 1, 17, 40, 8, la, lb); // 17 rows: A packed; B in place only at M <= 16, so packed too
      }
    }
  });

  it("every split over two threads: shared B by rows and by columns, batch entries, broadcast B", () => {
    const before = backends.two.counters.matmulThreaded;
    for (const be of [backends.two, backends.js]) {
      for (const [la, lb] of LAYOUTS) {
        check(be, 1, 262, 300, 70, la, lb); // rows over a shared packed B, two K blocks
        check(be, 1, 9, 260, 301, la, lb); // too few rows: columns over a shared packed B
        check(be, 2, 70, 33, 45, la, lb); // a shared packed B per batch entry
        check(be, 9, 21, 17, 9, la, lb); // whole batch entries
        check(be, 2, 70, 260, 19, la, lb, true); // broadcast B
      }
    }
    expect(backends.two.counters.matmulThreaded - before).toBe(5 * LAYOUTS.length);
  });
});
