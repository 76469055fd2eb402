// A backend with only part of the kernel table still runs every op: the missing kernels run on the CPU
// backend and the results come back to it. The numbers must equal the CPU backend's exactly (same kernels).

import {
  type Backend,
  cat,
  cpuKernels,
  createCpuBackend,
  crossEntropy,
  getCpuBackend,
  type KernelTable,
  manualSeed,
  type OpName,
  randn,
  setBackend,
  type Tensor,
  tensor,
} from "@tsgrad/tensor";
import { afterEach, describe, expect, it, vi } from "vitest";

// `contiguous` is missing too: cat and narrow's gradient, which write into windows of a fresh output with
// it, then assemble that output on the CPU.
const MISSING: OpName[] = [
  "contiguous",
  "exp",
  "log",
  "matmul",
  "sum",
  "max",
  "gather",
  "indexSelect",
  "where",
  "mul",
  "cast",
];

function partialBackend(name: string): Backend {
  const kernels: Partial<KernelTable> = { ...cpuKernels };
  for (const op of MISSING) delete kernels[op];
  // createCpuBackend wants a total table; the Backend interface allows a partial one
  return createCpuBackend(name, kernels as KernelTable);
}

/** A small forward and backward touching every missing kernel; returns the loss and the gradients. */
function step(): { loss: number; grads: number[][]; device: string } {
  manualSeed(11);
  const x = randn([3, 4], { dtype: "float64", requiresGrad: true });
  const w = randn([4, 5], { dtype: "float64", requiresGrad: true });
  const logits = x.matmul(w).exp().add(1).log(); // softplus, through exp, log, matmul
  const target = tensor([0, 4, 2], { dtype: "int32" });
  const ce = crossEntropy(logits, target); // gather, where, max, sum
  const rows = logits.indexSelect(0, tensor([2, 0], { dtype: "int32" })).sum(); // indexSelect
  // cat, narrow (whose gradient pads with the copy kernel) and a transposed copy
  const joined = cat([x.narrow(1, 1, 2), w.transpose(0, 1).contiguous().narrow(0, 0, 3)], 1)
    .tanh()
    .sum();
  const loss = ce.add(rows.mul(0.01).to("float32").to("float64")).add(joined);
  loss.backward();
  return {
    loss: loss.itemSync(),
    grads: [[...x.grad!.dataSync()], [...w.grad!.dataSync()]],
    device: loss.device,
  };
}

afterEach(() => {
  setBackend("cpu");
  vi.restoreAllMocks();
});

describe("a backend without some kernels falls back to the CPU", () => {
  it("gives the same numbers as the CPU backend, forward and backward, and keeps results on itself", () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const onCpu = step();
    expect(onCpu.device).toBe("cpu");
    const partial = partialBackend("partial-a");
    expect(partial.kernels.exp).toBeUndefined();
    setBackend(partial);
    const onPartial = step();
    expect(onPartial.device).toBe("partial-a");
    expect(onPartial.loss).toBe(onCpu.loss);
    expect(onPartial.grads).toEqual(onCpu.grads);
    // one warning per missing op, not one per call
    const warned = warn.mock.calls.map((c) => String(c[0]));
    expect(warned.some((m) => /backend "partial-a" has no "exp" kernel; running it on the CPU/.test(m))).toBe(
      true,
    );
    expect(new Set(warned).size).toBe(warned.length);
  });

  it("does not leak the CPU copies it makes for the fallback", () => {
    vi.spyOn(console, "warn").mockImplementation(() => {});
    const partial = partialBackend("partial-b");
    setBackend(partial);
    const x = randn([64], { dtype: "float64" });
    const cpu = getCpuBackend();
    const cpuBefore = cpu.liveBytes();
    const partialBefore = partial.liveBytes();
    const y: Tensor = x.exp();
    expect(y.device).toBe("partial-b");
    expect(cpu.liveBytes()).toBe(cpuBefore);
    expect(partial.liveBytes() - partialBefore).toBe(64 * 8); // just the result
    y.dispose();
    expect(partial.liveBytes()).toBe(partialBefore);
    // cat assembles its output on the CPU when the backend has no contiguous kernel
    const z = cat([x, x.narrow(0, 0, 8)]);
    expect(z.device).toBe("partial-b");
    const xs = [...x.dataSync()];
    expect([...z.dataSync()]).toEqual([...xs, ...xs.slice(0, 8)]);
    expect(cpu.liveBytes()).toBe(cpuBefore);
    expect(partial.liveBytes() - partialBefore).toBe(72 * 8);
  });

  it("frees everything when the CPU kernel throws", () => {
    vi.spyOn(console, "warn").mockImplementation(() => {});
    const partial = partialBackend("partial-d");
    setBackend(partial);
    const x = randn([2, 3], { dtype: "float64" });
    const index = tensor([[0], [7]], { dtype: "int32" });
    const cpu = getCpuBackend();
    const [cpuBefore, partialBefore] = [cpu.liveBytes(), partial.liveBytes()];
    expect(() => x.gather(1, index)).toThrow(/gather: index 7 is out of range for dim 1 of size 3/);
    expect(cpu.liveBytes()).toBe(cpuBefore);
    expect(partial.liveBytes()).toBe(partialBefore);
  });

  it("STRICT_BACKEND=1 turns a missing kernel into an error naming the op and the backend", () => {
    const partial = partialBackend("partial-c");
    setBackend(partial);
    const x = randn([2], { dtype: "float64" });
    vi.stubEnv("STRICT_BACKEND", "1");
    try {
      expect(() => x.exp()).toThrow(/exp: backend "partial-c" has no kernel \(STRICT_BACKEND=1\)/);
      expect(x.neg().device).toBe("partial-c"); // kernels it has still run
    } finally {
      vi.unstubAllEnvs();
    }
  });
});
