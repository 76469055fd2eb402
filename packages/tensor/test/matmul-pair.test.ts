// matmulPair against two matmuls: on the wasm backend (one and two threads, both register tiles) and the TS
// backend (no matmulPair), for odd sizes, transposed operands, K past one block (256), N past one column
// block (2048) and batch dims; a b2 wider than 16 columns takes two products. The optional third product
// scale a^T d likewise, fused for d of 8 or 16 columns, apart otherwise.
import {
  type Backend,
  createCpuBackend,
  createWasmBackend,
  matmulPair,
  randn,
  registerBackend,
  type Tensor,
} from "@tsgrad/tensor";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const two = createWasmBackend({ name: "pair-two", threads: 2, minThreadedWork: 0 });
const one = createWasmBackend({ name: "pair-one", threads: 1, minMatmulWork: 0 });
const backends: Backend[] = [
  one,
  two,
  createWasmBackend({ name: "pair-mul-add", threads: 1, minMatmulWork: 0, fma: false }),
  createCpuBackend("pair-ts"),
];
for (const b of backends) registerBackend(b);
beforeAll(async () => {
  expect(await two.startThreads()).toBe(true);
});
afterAll(() => two.stopThreads());

/** [..., rows, cols], or its transpose stored [..., cols, rows] when `t`. */
const operand = (batch: number[], rows: number, cols: number, t: boolean, device: string): Tensor =>
  t ? randn([...batch, cols, rows], { device }).mT : randn([...batch, rows, cols], { device });

describe("matmulPair", () => {
  for (const backend of backends) {
    const device = backend.name;
    for (const [batch, M, K, N, N2, aT, bT, N3] of [
      [[], 1, 3, 17, 8, false, false, 8],
      [[], 17, 65, 40, 8, false, true, 8],
      [[], 257, 300, 24, 16, true, false, 16],
      [[], 64, 33, 2100, 5, false, true, 8], // two column blocks of B, B2 with the first
      [[3], 21, 19, 12, 1, true, true, 8],
      [[], 40, 30, 16, 17, false, false, 8], // b2 too wide: two products
      [[], 43, 70, 24, 8, false, true, 5], // d of 5 columns: its product apart
    ] as [number[], number, number, number, number, boolean, boolean, number][])
      it(`equals a b, a b2 and scale a^T d (${device}, [${batch}] ${M} x ${K} x ${N}, ${N2} and ${N3})`, () => {
        const a = operand(batch, M, K, aT, device);
        const b = operand(batch, K, N, bT, device);
        const b2 = operand(batch, K, N2, bT, device);
        const [c, c2] = matmulPair(a, b, b2);
        expect(c.shape).toEqual([...batch, M, N]);
        expect(c2.shape).toEqual([...batch, M, N2]);
        expectAllClose(c.dataSync(), a.matmul(b).dataSync(), TOLERANCES.f32);
        expectAllClose(c2.dataSync(), a.matmul(b2).dataSync(), TOLERANCES.f32);
        const d = operand(batch, M, N3, false, device);
        const [e, e2, e3] = matmulPair(a, b, b2, { d, scale: 0.75 });
        expectAllClose(e.dataSync(), c.dataSync(), TOLERANCES.f32);
        expectAllClose(e2.dataSync(), c2.dataSync(), TOLERANCES.f32);
        expect(e3.shape).toEqual([...batch, K, N3]);
        expectAllClose(e3.dataSync(), a.mT.matmul(d).mul(0.75).dataSync(), TOLERANCES.f32);
      });
  }

  it("runs as one pass on the wasm backend, and rejects mismatched shapes", () => {
    const a = randn([64, 32], { device: "pair-one" });
    const before = one.counters.matmulWasm;
    matmulPair(a, randn([32, 48], { device: "pair-one" }), randn([32, 8], { device: "pair-one" }));
    expect(one.counters.matmulWasm).toBe(before + 1);
    expect(() =>
      matmulPair(a, randn([31, 48], { device: "pair-one" }), randn([32, 8], { device: "pair-one" })),
    ).toThrow(/matmulPair: expected a \[\.\.\., M, K\]/);
  });
});
