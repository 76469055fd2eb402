import { getBackend, manualSeed, noGrad, randn, tensor, tidy, zeros } from "@tsgrad/tensor";
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
