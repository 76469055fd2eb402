// matmulPair against two matmuls: on the wasm backend (one and two threads, both register tiles) and the TS
// backend (no matmulPair), for odd sizes, transposed operands, K past one block (256), N past one column
// block (2048) and batch dims; a b2 wider than 16 columns takes two products.
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
    for (const [batch, M, K, N, N2, aT, bT] of [
      [[], 1, 3, 17, 8, false, false],
      [[], 17, 65, 40, 8, false, true],
      [[], 257, 300, 24, 16, true, false],
      [[], 64, 33, 2100, 5, false, true], // two column blocks of B, B2 with the first
      [[3], 21, 19, 12, 1, true, true],
      [[], 40, 30, 16, 17, false, false], // b2 too wide: two products
    ] as [number[], number, number, number, number, boolean, boolean][])
      it(`equals a b and a b2 (${device}, [${batch}] ${M} x ${K} x ${N} and ${N2})`, () => {
        const a = operand(batch, M, K, aT, device);
        const b = operand(batch, K, N, bT, device);
        const b2 = operand(batch, K, N2, bT, device);
        const [c, c2] = matmulPair(a, b, b2);
        expect(c.shape).toEqual([...batch, M, N]);
        expect(c2.shape).toEqual([...batch, M, N2]);
        expectAllClose(c.dataSync(), a.matmul(b).dataSync(), TOLERANCES.f32);
        expectAllClose(c2.dataSync(), a.matmul(b2).dataSync(), TOLERANCES.f32);
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
