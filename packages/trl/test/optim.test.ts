// The optimizer, schedules and clipping in @tsgrad/nn/optim, checked against hand-derived values.

import { AdamW, clipGradNorm, getScheduler, getWarmupSteps, Parameter } from "@tsgrad/nn";
import { tensor } from "@tsgrad/tensor";
import { describe, expect, it } from "vitest";

const param = (values: number[]) => new Parameter(tensor(values, { dtype: "float64" }));

describe("AdamW", () => {
  it("first step moves each weight by lr * sign(g) (bias correction makes m_hat/sqrt(v_hat) = g/|g|)", () => {
    const p = param([1, -2, 3]);
    const opt = new AdamW([["w", p]], { lr: 0.1, weight_decay: 0, eps: 0 });
    p.grad = tensor([0.5, -4, 1e-3], { dtype: "float64" });
    opt.step();
    expect([...p.dataSync()].map((x) => +x.toFixed(12))).toEqual([0.9, -1.9, 2.9]);
  });

  it("matches torch's update over two steps, with decoupled weight decay", () => {
    // Hand-run of torch.optim.AdamW(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1) on w = 2, g = 1 then 3.
    const p = param([2]);
    const opt = new AdamW([["w", p]], { lr: 0.01, weight_decay: 0.1 });
    let w = 2;
    let m = 0;
    let v = 0;
    for (const [t, g] of [
      [1, 1],
      [2, 3],
    ] as const) {
      p.grad = tensor([g], { dtype: "float64" });
      opt.step();
      w *= 1 - 0.01 * 0.1;
      m = 0.9 * m + 0.1 * g;
      v = 0.999 * v + 0.001 * g * g;
      const denom = Math.sqrt(v) / Math.sqrt(1 - 0.999 ** t) + 1e-8;
      w -= (0.01 / (1 - 0.9 ** t)) * (m / denom);
      expect(p.dataSync()[0]).toBeCloseTo(w, 12);
    }
  });

  it("skips decay where decay() says no, skips parameters without gradients, and round-trips its state", () => {
    const a = param([1]);
    const b = param([1]);
    const c = param([5]);
    const opt = new AdamW(
      [
        ["a", a],
        ["b.bias", b],
        ["c", c],
      ],
      { lr: 0.1, weight_decay: 0.5, decay: (n) => !n.endsWith("bias") },
    );
    a.grad = tensor([0], { dtype: "float64" });
    b.grad = tensor([0], { dtype: "float64" });
    opt.step();
    expect(a.dataSync()[0]).toBeCloseTo(0.95, 12); // 1 * (1 - 0.1 * 0.5), zero gradient
    expect(b.dataSync()[0]).toBe(1);
    expect(c.dataSync()[0]).toBe(5);
    const sd = opt.stateDict();
    expect([...sd.tensors.keys()]).toEqual([
      "a.exp_avg",
      "a.exp_avg_sq",
      "b.bias.exp_avg",
      "b.bias.exp_avg_sq",
    ]);
    const fresh = new AdamW([["a", param([1])]], { lr: 0.1 });
    expect(() => fresh.loadStateDict(sd)).toThrow(/"b.bias" is not a parameter/);
  });
});

describe("schedules (transformers get_scheduler)", () => {
  const lrs = (name: Parameters<typeof getScheduler>[0], w: number, T: number) => {
    const opt = { lr: 1 };
    const s = getScheduler(name, opt, { num_warmup_steps: w, num_training_steps: T });
    const out = [opt.lr];
    for (let i = 0; i < T; i++) {
      s.step();
      out.push(+opt.lr.toFixed(6));
    }
    return out;
  };
  it("linear, cosine, constant and constant_with_warmup", () => {
    expect(lrs("linear", 2, 6)).toEqual([0, 0.5, 1, 0.75, 0.5, 0.25, 0]);
    expect(lrs("cosine", 0, 4)).toEqual([1, 0.853553, 0.5, 0.146447, 0]);
    expect(lrs("constant", 2, 3)).toEqual([1, 1, 1, 1]);
    expect(lrs("constant_with_warmup", 2, 3)).toEqual([0, 0.5, 1, 1]);
  });
  it("warmup from steps or ratio", () => {
    expect(getWarmupSteps(100, 0, 0.1)).toBe(10);
    expect(getWarmupSteps(100, 7, 0.1)).toBe(7);
    expect(getWarmupSteps(100, 0.05, 0)).toBe(5);
    expect(getWarmupSteps(7, 0, 0.1)).toBe(1);
  });
});

describe("clipGradNorm", () => {
  it("returns the pre-clip norm and scales to max_norm", () => {
    const a = param([0, 0]);
    const b = param([0]);
    a.grad = tensor([3, 0], { dtype: "float64" });
    b.grad = tensor([4], { dtype: "float64" });
    expect(clipGradNorm([a, b], 1).itemSync()).toBeCloseTo(5, 6);
    expect(a.grad!.dataSync()[0]).toBeCloseTo(0.6, 6);
    expect(b.grad!.dataSync()[0]).toBeCloseTo(0.8, 6);
    expect(clipGradNorm([a, b], 10).itemSync()).toBeCloseTo(1, 5);
    expect(b.grad!.dataSync()[0]).toBeCloseTo(0.8, 6); // under the limit: unchanged
  });
});
