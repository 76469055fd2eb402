// The fused LoRA op (src/lora/fused.ts) against the composition it replaces: same output and gradients
// in float32 and float64, with and without dropout, batched inputs, rank 1; gradcheck of the op; and the
// cases that must keep the composition.

import { Linear } from "@tsgrad/nn";
import {
  backward,
  type DType,
  dropout,
  manualSeed,
  noGrad,
  randn,
  type Tensor,
  withFusedKernels,
} from "@tsgrad/tensor";
import { assertGradients, expectAllClose } from "@tsgrad/tensor/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loraLinear } from "../src/lora/fused.js";
import { LoraLinear } from "../src/lora/layer.js";

interface Case {
  I: number;
  O: number;
  r: number;
  lead: number[];
  dtype: DType;
  p: number;
  bias: boolean;
  trainBias?: boolean;
  rslora?: boolean;
}

const settings = {
  lora_alpha: 4,
  use_rslora: false,
  use_dora: false,
  lora_bias: false,
  init_lora_weights: true as const,
};

/** A LoRA layer as getPeftModel leaves it (frozen base), with a nonzero B so the adapter path counts. */
function makeLayer(c: Case, seed = 1): LoraLinear {
  manualSeed(seed);
  const base = new Linear(c.I, c.O, { bias: c.bias, dtype: c.dtype });
  base.weight.requiresGrad = false;
  if (base.bias) base.bias.requiresGrad = c.trainBias ?? false;
  const layer = new LoraLinear(base, "default", {
    ...settings,
    r: c.r,
    lora_dropout: c.p,
    use_rslora: c.rslora ?? false,
  });
  noGrad(() => layer.lora_B.get("default")!.weight.assign(randn([c.O, c.r], { dtype: c.dtype }).mul(0.5)));
  return layer;
}

/** The op that made y, looking through the reshape back to [..., out]. */
function opOf(y: Tensor): string | undefined {
  const op = y._node?.op;
  return op === "reshape" || op === "view" ? y._node!.inputs[0]!._node?.op : op;
}

interface Run {
  y: Tensor;
  grads: (Tensor | null)[];
}

/** Forward and backward with a fixed seed (the dropout mask) and upstream gradient. */
function run(layer: LoraLinear, c: Case, fused: boolean, seed = 7): Run {
  return withFusedKernels(fused, () => {
    manualSeed(seed);
    const x = randn([...c.lead, c.I], { dtype: c.dtype }).requiresGrad_();
    const dy = randn([...c.lead, c.O], { dtype: c.dtype });
    const A = layer.lora_A.get("default")!.weight;
    const B = layer.lora_B.get("default")!.weight;
    const bias = (layer.base_layer as Linear).bias;
    for (const t of [A, B, bias]) if (t) t.grad = null;
    manualSeed(seed + 1);
    const y = layer.forward(x);
    y.backward(dy);
    return { y, grads: [x.grad, A.grad, B.grad, c.trainBias ? bias!.grad : null] };
  });
}

const cases: Case[] = [];
for (const dtype of ["float32", "float64"] as const)
  for (const p of [0, 0.25])
    cases.push(
      { I: 12, O: 10, r: 4, lead: [9], dtype, p, bias: false },
      { I: 7, O: 13, r: 1, lead: [2, 5], dtype, p, bias: true },
      { I: 16, O: 16, r: 8, lead: [3, 4], dtype, p, bias: true, trainBias: true, rslora: true },
      { I: 5, O: 3, r: 2, lead: [], dtype, p, bias: false },
    );

describe("fused LoRA linear equals the composition", () => {
  for (const c of cases) {
    const name = `${c.dtype} p=${c.p} x [${[...c.lead, c.I]}] -> ${c.O}, r=${c.r}${c.bias ? ", bias" : ""}${c.trainBias ? " (trained)" : ""}`;
    it(name, () => {
      const layer = makeLayer(c);
      const fused = run(layer, c, true);
      const ref = run(layer, c, false);
      expect(opOf(fused.y)).toBe("loraLinear");
      expect(opOf(ref.y)).not.toBe("loraLinear");
      expect(fused.y.shape).toEqual([...c.lead, c.O]);
      const tol = c.dtype === "float64" ? { atol: 1e-12, rtol: 1e-12 } : { atol: 1e-5, rtol: 1e-5 };
      expectAllClose(fused.y, ref.y, tol);
      for (const [i, g] of fused.grads.entries()) {
        const want = ref.grads[i]!;
        if (want === null) expect(g).toBeNull();
        else expectAllClose(g!, want, tol);
      }
    });
  }

  it("the fused path runs the loraLinear op; fused kernels off run the composition", () => {
    const c: Case = { I: 6, O: 4, r: 2, lead: [3], dtype: "float32", p: 0, bias: false };
    const layer = makeLayer(c);
    const x = randn([3, 6]);
    const op = opOf;
    layer.train();
    expect(op(layer.forward(x))).toBe("loraLinear");
    expect(withFusedKernels(false, () => op(layer.forward(x)))).not.toBe("loraLinear");
    const d = makeLayer({ ...c, p: 0.5 });
    expect(op(d.forward(x))).toBe("loraLinear");
    d.eval();
    expect(op(d.forward(x))).toBe("loraLinear");
  });

  it("under noGrad (generation) gives the composition's output", () => {
    const c: Case = { I: 6, O: 5, r: 2, lead: [2, 3], dtype: "float32", p: 0.5, bias: true };
    const layer = makeLayer(c).eval();
    const x = randn([2, 3, 6]);
    const y = noGrad(() => layer.forward(x));
    expect(y.requiresGrad).toBe(false);
    expectAllClose(
      y,
      withFusedKernels(false, () => noGrad(() => layer.forward(x))),
      { atol: 1e-6 },
    );
  });

  it("keeps the composition for DoRA, lora_bias, a trainable base weight and several active adapters", () => {
    const c: Case = { I: 6, O: 4, r: 2, lead: [3], dtype: "float32", p: 0, bias: false };
    const x = randn([3, 6]);
    const ops = (y: Tensor): string[] => [opOf(y) ?? ""];
    const dora = makeLayer(c);
    dora.addAdapter("dora", { ...settings, r: 2, lora_dropout: 0, use_dora: true });
    dora.setActiveAdapters(["dora"]);
    expect(ops(dora.forward(x))).not.toContain("loraLinear");
    const withBias = makeLayer(c);
    withBias.addAdapter("b", { ...settings, r: 2, lora_dropout: 0, lora_bias: true });
    withBias.setActiveAdapters(["b"]);
    expect(ops(withBias.forward(x))).not.toContain("loraLinear");
    withBias.setActiveAdapters(["default", "b"]);
    expect(ops(withBias.forward(x))).not.toContain("loraLinear");
    withBias.setActiveAdapters(["default"]);
    expect(ops(withBias.forward(x))).toContain("loraLinear");
    (withBias.base_layer as Linear).weight.requiresGrad = true;
    expect(ops(withBias.forward(x))).not.toContain("loraLinear");
  });

  it("a trainable base weight gets the composition's gradient from the op too", () => {
    const dtype = "float64";
    const [x, W, A, B, bias] = [
      randn([5, 4], { dtype }),
      randn([3, 4], { dtype }),
      randn([2, 4], { dtype }),
      randn([3, 2], { dtype }),
      randn([3], { dtype }),
    ];
    for (const t of [x, W, A, B, bias]) t.requiresGrad_();
    const dy = randn([5, 3], { dtype });
    loraLinear(x, x, W, A, B, bias, 1.5).backward(dy);
    const fused = [x, W, A, B, bias].map((t) => t.grad!);
    for (const t of [x, W, A, B, bias]) t.grad = null;
    x.matmul(W.mT).add(bias).add(x.matmul(A.mT).matmul(B.mT).mul(1.5)).backward(dy);
    for (const [i, t] of [x, W, A, B, bias].entries()) expectAllClose(fused[i]!, t.grad!, { atol: 1e-12 });
  });

  it("second-order gradients (createGraph) match the composition", () => {
    const c: Case = { I: 5, O: 4, r: 3, lead: [6], dtype: "float64", p: 0, bias: true, trainBias: true };
    const layer = makeLayer(c);
    const second = (fused: boolean) =>
      withFusedKernels(fused, () => {
        manualSeed(3);
        const x = randn([6, 5], { dtype: "float64" }).requiresGrad_();
        const A = layer.lora_A.get("default")!.weight;
        const B = layer.lora_B.get("default")!.weight;
        A.grad = null;
        B.grad = null;
        backward(layer.forward(x).square().sum(), undefined, { createGraph: true });
        const gx = x.grad!;
        x.grad = null;
        A.grad = null;
        B.grad = null;
        gx.square().sum().backward();
        return [x.grad!, A.grad!, B.grad!];
      });
    const f = second(true);
    const r = second(false);
    for (const [i, g] of f.entries()) expectAllClose(g, r[i]!, { atol: 1e-10, rtol: 1e-10 });
  });
});

describe("fused LoRA op gradcheck (float64)", () => {
  const dims = [
    fc.integer({ min: 1, max: 5 }), // T
    fc.integer({ min: 1, max: 5 }), // in
    fc.integer({ min: 1, max: 5 }), // out
    fc.integer({ min: 1, max: 3 }), // r
    fc.boolean(), // bias
    fc.integer(),
  ] as const;

  it("without dropout: x, W, A, B and bias", () => {
    fc.assert(
      fc.property(...dims, (T, I, O, r, bias, seed) => {
        manualSeed(seed);
        const d = { dtype: "float64" as const };
        const inputs = [randn([T, I], d), randn([O, I], d), randn([r, I], d), randn([O, r], d)];
        if (bias) inputs.push(randn([O], d));
        assertGradients((x, W, A, B, b) => loraLinear(x!, x!, W!, A!, B!, b ?? null, 0.7), inputs, {
          atol: 1e-6,
          rtol: 1e-5,
        });
      }),
      { numRuns: 25 },
    );
  });

  it("with dropout: the A path reads a separate (masked) input", () => {
    fc.assert(
      fc.property(...dims, (T, I, O, r, bias, seed) => {
        manualSeed(seed);
        const d = { dtype: "float64" as const };
        const inputs = [
          randn([T, I], d),
          randn([T, I], d),
          randn([O, I], d),
          randn([r, I], d),
          randn([O, r], d),
        ];
        if (bias) inputs.push(randn([O], d));
        assertGradients((x, xd, W, A, B, b) => loraLinear(x!, xd!, W!, A!, B!, b ?? null, 2), inputs, {
          atol: 1e-6,
          rtol: 1e-5,
        });
      }),
      { numRuns: 25 },
    );
  });

  it("through the layer's dropout: a fixed mask, gradients of x through both paths", () => {
    fc.assert(
      fc.property(...dims, (T, I, O, r, _bias, seed) => {
        manualSeed(seed);
        const d = { dtype: "float64" as const };
        const inputs = [randn([T, I], d), randn([O, I], d), randn([r, I], d), randn([O, r], d)];
        assertGradients(
          (x, W, A, B) => {
            manualSeed(seed + 1); // the same mask at every evaluation
            return loraLinear(x!, dropout(x!, 0.4), W!, A!, B!, null, 1.25);
          },
          inputs,
          { atol: 1e-6, rtol: 1e-5 },
        );
      }),
      { numRuns: 20 },
    );
  });
});
