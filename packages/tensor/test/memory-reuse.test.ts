// Freed buffers are reused zero-filled, and backward frees the gradients it made on the way (all but the
// leaves' .grad) unless createGraph keeps them as the gradient's graph.

import { createCpuBackend, getBackend, randn, setBackend, zeros } from "@tsgrad/tensor";
import { describe, expect, it } from "vitest";
import { BufferPool } from "../src/backend-cpu/pool.js";

describe("buffer pool", () => {
  it("hands a freed array of the same dtype and length back, zero-filled", () => {
    const pool = new BufferPool(1 << 30);
    const a = pool.take("float32", 1 << 16);
    a.fill(7);
    pool.give("float32", a);
    expect(pool.held).toBe(1 << 18);
    const b = pool.take("float32", 1 << 16);
    expect(b).toBe(a);
    expect(b.every((v) => v === 0)).toBe(true);
    expect(pool.held).toBe(0);
    // another length or dtype gets a fresh array
    pool.give("float32", b);
    expect(pool.take("float32", (1 << 16) + 4)).not.toBe(b);
    expect(pool.take("int32", 1 << 16)).not.toBe(b);
  });

  it("keeps no small arrays, no views of larger buffers, and nothing past its cap", () => {
    const pool = new BufferPool(1 << 20);
    pool.give("float32", new Float32Array(16));
    pool.give("float32", new Float32Array(1 << 17).subarray(0, 1 << 16));
    expect(pool.held).toBe(0);
    pool.give("float32", new Float32Array(1 << 18)); // 1 MiB: fits exactly
    pool.give("float32", new Float32Array(1 << 16)); // over the cap
    expect(pool.held).toBe(1 << 20);
  });

  it("a disposed tensor's buffer serves the next tensor of that size, which reads as zeros", () => {
    const prev = getBackend();
    setBackend(createCpuBackend("pool-test"));
    try {
      const a = randn([256, 256]);
      a.dispose();
      const b = zeros([256, 256]); // a fresh storage from the backend: the pooled buffer, zeroed again
      expect(b.dataSync().every((v) => v === 0)).toBe(true);
    } finally {
      setBackend(prev);
    }
  });
});

describe("backward frees its intermediate gradients", () => {
  const run = (createGraph: boolean): number => {
    const backend = createCpuBackend(`bw-${createGraph}`);
    const prev = getBackend();
    setBackend(backend);
    try {
      const x = randn([1000], { dtype: "float64" }).requiresGrad_();
      const y = x.mul(2).exp().mul(x).sin().sum();
      const before = backend.liveBytes();
      y.backward(undefined, { createGraph });
      return backend.liveBytes() - before;
    } finally {
      setBackend(prev);
    }
  };
  it("only the leaf's .grad stays alive after backward", () => {
    expect(run(false)).toBe(8000);
  });
  it("under createGraph the gradient's graph keeps them", () => {
    expect(run(true)).toBeGreaterThan(8000 * 3);
  });
});

describe("wasm heap", () => {
  it("hands a released block back zero-filled when asked, as is otherwise", async () => {
    const { Heap, sizeClass, wasmApi } = await import("../src/backend-wasm/heap.js");
    const memory = new (wasmApi()!.Memory)({ initial: 1, maximum: 64, shared: true });
    const heap = new Heap(memory, 1024);
    const bytes = 3 * 1024 * 1024 + 40; // a size class that is a multiple of 16, not of 4096
    expect(sizeClass(bytes) % 16).toBe(0);
    const a = heap.alloc(bytes);
    new Uint8Array(heap.buffer, a, sizeClass(bytes)).fill(7);
    heap.release(a, bytes);
    const b = heap.alloc(bytes);
    expect(b).toBe(a);
    expect(new Uint8Array(heap.buffer, b, sizeClass(bytes)).every((v) => v === 0)).toBe(true);
    new Uint8Array(heap.buffer, b, sizeClass(bytes)).fill(9);
    heap.release(b, bytes);
    const c = heap.alloc(bytes, false);
    expect(c).toBe(a);
    expect(new Uint8Array(heap.buffer, c, 16)[0]).toBe(9);
  });
});
