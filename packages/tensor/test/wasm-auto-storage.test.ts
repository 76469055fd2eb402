// "auto" storage (the default cpu device): tensors live in the WebAssembly memory up to a byte budget and
// in ordinary typed arrays past it; adopted arrays stay where they are. Kernels read operands in place or
// copy them in, and give the same values either way.

import { createWasmBackend, randn, setBackend, type Tensor, tensor } from "@tsgrad/tensor";
import { afterEach, describe, expect, it } from "vitest";
import { WasmStorage } from "../src/backend-wasm/index.js";

const inHeap = (t: Tensor) => t._view.storage instanceof WasmStorage;

afterEach(() => {
  setBackend("cpu");
});

describe("wasm backend, auto storage", () => {
  it("places tensors in the WebAssembly memory up to the budget, then in typed arrays", () => {
    const b = createWasmBackend({
      name: "auto-budget",
      storage: "auto",
      heapBytes: 3 * 4096 * 4,
      threads: 1,
    });
    setBackend(b);
    const xs = [0, 1, 2].map(() => randn([64, 64]));
    expect(xs.map(inHeap)).toEqual([true, true, true]);
    const over = randn([64, 64]);
    expect(inHeap(over)).toBe(false);
    xs[0]!.dispose(); // room again
    expect(inHeap(randn([64, 64]))).toBe(true);
  });

  it("takes an adopted array without copying it", () => {
    setBackend(createWasmBackend({ name: "auto-adopt", storage: "auto", threads: 1 }));
    const data = new Float32Array([1, 2, 3, 4]);
    const t = tensor(data, { copy: false });
    expect(inHeap(t)).toBe(false);
    data[0] = 9; // the caller broke the promise: the tensor sees it, which shows no copy was made
    expect(t.dataSync()[0]).toBe(9);
  });

  it("gives the same products and fused results wherever the operands live", () => {
    const heapOnly = createWasmBackend({ name: "auto-roomy", storage: "auto", threads: 2 });
    const mixed = createWasmBackend({
      name: "auto-tight",
      storage: "auto",
      heapBytes: 300 * 1024,
      threads: 2,
    });
    const run = (b: typeof heapOnly) => {
      setBackend(b);
      const a = tensor(
        Float32Array.from({ length: 257 * 300 }, (_, i) => Math.sin(i)),
        { shape: [257, 300] },
      );
      const w = tensor(
        Float32Array.from({ length: 300 * 129 }, (_, i) => Math.cos(i)),
        { shape: [129, 300] },
      );
      const y = a.matmul(w.mT);
      const z = y.softmax(-1).add(y.sigmoid());
      return { places: [a, w, y, z].map(inHeap), y: y.dataSync(), z: z.dataSync() };
    };
    const r1 = run(heapOnly);
    const r2 = run(mixed);
    expect(r1.places).toEqual([true, true, true, true]);
    expect(r2.places.some((p) => !p)).toBe(true);
    expect(r2.places.some((p) => p)).toBe(true);
    expect(Array.from(r2.y)).toEqual(Array.from(r1.y));
    expect(Array.from(r2.z)).toEqual(Array.from(r1.z));
  });
});
