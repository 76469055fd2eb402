// matmulAccumulate (c += a b in place) against c + a b: on the wasm backend (in its memory, staged from typed
// arrays, split over two threads, below the wasm size threshold) and on the plain TS backend (the fallback
// through a separate product and the add kernel), with transposed operands and batch dims; and its errors.
import {
  type Backend,
  createCpuBackend,
  createWasmBackend,
  matmulAccumulate,
  randn,
  registerBackend,
  type Tensor,
} from "@tsgrad/tensor";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const two = createWasmBackend({ name: "acc-two", threads: 2, minThreadedWork: 0 });
const backends: Backend[] = [
  createWasmBackend({ name: "acc-wasm", threads: 1, storage: "wasm" }),
  createWasmBackend({ name: "acc-js", threads: 1, storage: "js" }),
  two,
  createCpuBackend("acc-ts"),
];
for (const b of backends) registerBackend(b);

beforeAll(async () => {
  expect(await two.startThreads()).toBe(true);
});
afterAll(() => two.stopThreads());

/** [a, b] of the given product shape; `t` stores the operand transposed (a view). */
function operands(
  device: string,
  batch: number[],
  M: number,
  K: number,
  N: number,
  tA: boolean,
  tB: boolean,
) {
  const a = tA ? randn([...batch, K, M], { device }).mT : randn([...batch, M, K], { device });
  const b = tB ? randn([...batch, N, K], { device }).mT : randn([...batch, K, N], { device });
  return [a, b] as [Tensor, Tensor];
}

describe("matmulAccumulate", () => {
  for (const backend of backends) {
    it(`adds a b into c in place (${backend.name})`, () => {
      const device = backend.name;
      for (const [batch, M, K, N] of [
        [[], 3, 5, 7], // below the wasm size threshold
        [[], 64, 40, 24],
        [[], 130, 257, 72], // two K blocks; threaded on acc-two
        [[3], 17, 33, 9],
      ] as [number[], number, number, number][])
        for (const [tA, tB] of [
          [false, false],
          [false, true],
          [true, false],
        ] as [boolean, boolean][]) {
          const [a, b] = operands(device, batch, M, K, N, tA, tB);
          const c = randn([...batch, M, N], { device });
          const want = c.add(a.matmul(b)).dataSync();
          const storage = c._view.storage;
          matmulAccumulate(c, a, b);
          expect(c._view.storage).toBe(storage); // in place
          expectAllClose(c.dataSync(), want, TOLERANCES.f32);
        }
    });
  }

  it("counts the wasm path on the wasm backend and splits large ones over threads", () => {
    const before = two.counters.matmulThreaded;
    const [a, b] = operands("acc-two", [], 128, 64, 48, false, true);
    matmulAccumulate(randn([128, 48], { device: "acc-two" }), a, b);
    expect(two.counters.matmulThreaded).toBe(before + 1);
  });

  it("rejects mismatched shapes, dtypes, a non-contiguous c and a c that requires grad", () => {
    const d = { device: "acc-wasm" };
    const [a, b] = [randn([4, 3], d), randn([3, 5], d)];
    expect(() => matmulAccumulate(randn([4, 6], d), a, b)).toThrow(/c \[4, 6\]/);
    expect(() => matmulAccumulate(randn([5, 4], d).mT, a, b)).toThrow(/contiguous/);
    expect(() => matmulAccumulate(randn([4, 5], { ...d, dtype: "float64" }), a, b)).toThrow(/dtypes/);
    const g = randn([4, 5], d);
    g.requiresGrad = true;
    expect(() => matmulAccumulate(g, a, b)).toThrow(/requires grad/);
  });
});
