import {
  cpuKernels,
  createCpuBackend,
  getBackend,
  type KernelTable,
  manualSeed,
  noGrad,
  randn,
  setBackend,
  tensor,
  tidy,
  zeros,
} from "@tsgrad/tensor";
import { assertGradients, gradcheck } from "@tsgrad/tensor/testing";
import { describe, expect, it } from "vitest";

describe("autograd engine", () => {
  it("accumulates through fan-out: d(x*x + x)/dx = 2x + 1", () => {
    const x = tensor([1.5, -2], { dtype: "float64", requiresGrad: true });
    x.mul(x).add(x).sum().backward();
    expect(x.grad!.tolistSync()).toEqual([4, -3]);
  });

  it("accumulates into .grad across backward calls", () => {
    const x = tensor([1, 2], { dtype: "float64", requiresGrad: true });
    x.mul(3).sum().backward();
    x.mul(3).sum().backward();
    expect(x.grad!.tolistSync()).toEqual([6, 6]);
  });

  it("reduces broadcast gradients to the input's shape", () => {
    const a = randn([2, 3], { dtype: "float64", requiresGrad: true });
    const b = randn([3], { dtype: "float64", requiresGrad: true });
    a.add(b).sum().backward();
    expect(b.grad!.shape).toEqual([3]);
    expect(b.grad!.tolistSync()).toEqual([2, 2, 2]);
  });

  it("handles a graph thousands of nodes deep without recursion", () => {
    const x = tensor([1], { dtype: "float64", requiresGrad: true });
    let y = x;
    for (let i = 0; i < 20000; i++) y = y.mul(1);
    y.sum().backward();
    expect(x.grad!.tolistSync()).toEqual([1]);
  });

  it("records nothing under noGrad and after detach", () => {
    const x = tensor([1, 2], { dtype: "float64", requiresGrad: true });
    const y = noGrad(() => x.mul(2));
    expect(y.requiresGrad).toBe(false);
    expect(x.mul(2).detach().requiresGrad).toBe(false);
  });

  it("refuses backward on a non-scalar without a gradient, naming the shape", () => {
    const x = tensor([1, 2], { dtype: "float64", requiresGrad: true });
    expect(() => x.mul(2).backward()).toThrow(/scalar outputs, got shape \[2\]/);
  });

  it("gradcheck catches a wrong rule", () => {
    manualSeed(1);
    const x = randn([4], { dtype: "float64" });
    expect(gradcheck((t) => t.exp().sum(), [x]).ok).toBe(true);
    expect(() => assertGradients((t) => t.mul(t.detach()), [x])).toThrow(/gradient mismatch/);
  });

  it("tidy frees intermediates and keeps the result", () => {
    const before = getBackend().liveBytes();
    const out = tidy(() => zeros([100]).add(1).mul(2).sum());
    expect(out.itemSync()).toBe(200);
    expect(getBackend().liveBytes() - before).toBe(4);
  });
});

describe("matmul gradients in the input's layout", () => {
  it("a weight used as W.mT gets its gradient without a transposing copy, and the right values", () => {
    let copies = 0;
    const contiguous: KernelTable["contiguous"] = (i, a, o) => {
      copies++;
      cpuKernels.contiguous(i, a, o);
    };
    const prev = getBackend();
    setBackend(createCpuBackend("count-copies", { ...cpuKernels, contiguous }));
    try {
      const x = randn([6, 4], { dtype: "float64" }).requiresGrad_();
      const w = randn([5, 4], { dtype: "float64" }).requiresGrad_();
      const dy = randn([6, 5], { dtype: "float64" });
      x.matmul(w.mT).mul(dy).sum().backward();
      expect(copies).toBe(0);
      // dW = dY^T X and dX = dY W
      const dw = dy.mT.matmul(x.detach());
      const dx = dy.matmul(w.detach());
      expect(Array.from(w.grad!.dataSync())).toEqual(Array.from(dw.dataSync()));
      expect(Array.from(x.grad!.dataSync())).toEqual(Array.from(dx.dataSync()));
      // the same through a transposed first operand
      const a = randn([4, 6], { dtype: "float64" }).requiresGrad_();
      a.mT.matmul(w.mT).mul(dy).sum().backward();
      expect(copies).toBe(0);
      expect(Array.from(a.grad!.dataSync())).toEqual(Array.from(w.detach().mT.matmul(dy.mT).dataSync()));
    } finally {
      setBackend(prev);
    }
  });
});
