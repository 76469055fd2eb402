import { Linear } from "@tsgrad/nn";
import { manualSeed, noGrad, randn, tensor } from "@tsgrad/tensor";
import { assertGradients, expectAllClose } from "@tsgrad/tensor/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LoraLinear } from "../src/lora/layer.js";

const settings = {
  r: 2,
  lora_alpha: 4,
  lora_dropout: 0,
  use_rslora: false,
  use_dora: false,
  lora_bias: false,
  init_lora_weights: true as const,
};

/** The tensors of trl-peft-spec 1.12: I=3, O=2, r=2, alpha=4. */
function specLayer(over: Partial<typeof settings> = {}): LoraLinear {
  const base = new Linear(3, 2, { bias: false });
  base.weight.assign(
    tensor(
      [
        [1, 0, 2],
        [0, 1, -1],
      ],
      { dtype: "float32" },
    ),
  );
  const layer = new LoraLinear(base, "default", { ...settings, ...over });
  layer.lora_A.get("default")!.weight.assign(
    tensor(
      [
        [0.1, 0.2, 0.3],
        [0, -0.1, 0.1],
      ],
      { dtype: "float32" },
    ),
  );
  layer.lora_B.get("default")!.weight.assign(
    tensor(
      [
        [1, 0],
        [0, 2],
      ],
      { dtype: "float32" },
    ),
  );
  return layer;
}
const x = () => tensor([[1, 2, 3]], { dtype: "float32" });

describe("LoRA layer, spec worked examples", () => {
  it("1.12: y = Wx + s B A x = [9.8, -0.6]; merging gives the same output and W' of the spec", () => {
    const layer = specLayer();
    expectAllClose(layer.forward(x()), [9.8, -0.6], { atol: 1e-6 });
    layer.merge();
    expectAllClose(layer.base_layer.denseWeight(), [1.2, 0.4, 2.6, 0, 0.6, -0.6], { atol: 1e-6 });
    expectAllClose(layer.forward(x()), [9.8, -0.6], { atol: 1e-6 });
    layer.unmerge();
    expectAllClose(layer.base_layer.denseWeight(), [1, 0, 2, 0, 1, -1], { atol: 1e-6 });
  });

  it("1.12 rsLoRA: s = 4/sqrt(2) gives [10.959798, -0.434315]", () => {
    expectAllClose(specLayer({ use_rslora: true }).forward(x()), [10.959798, -0.434315], { atol: 1e-5 });
  });

  it("2: DoRA with m = ||W||_row gives [7.5789308, -1.0]; merged rows have norm m; unmerge restores W", () => {
    const layer = specLayer({ use_dora: true });
    // The magnitude is initialised from W while B is still the spec's trained value, so set it to ||W||_row as the spec does.
    layer.lora_magnitude_vector
      .get("default")!
      .weight.assign(tensor([Math.sqrt(5), Math.sqrt(2)], { dtype: "float32" }));
    expectAllClose(layer.forward(x()), [7.5789308, -1.0], { atol: 1e-5 });
    layer.merge();
    const rows = layer.base_layer.denseWeight().square().sum(1).sqrt();
    expectAllClose(rows, [Math.sqrt(5), Math.SQRT2], { atol: 1e-5 });
    expectAllClose(layer.forward(x()), [7.5789308, -1.0], { atol: 1e-5 });
    layer.unmerge();
    expectAllClose(layer.base_layer.denseWeight(), [1, 0, 2, 0, 1, -1], { atol: 1e-6 });
  });

  it("default init: A is U(-1/sqrt(in), 1/sqrt(in)), B is zero, so the output equals the base's", () => {
    manualSeed(3);
    const base = new Linear(896, 8, { bias: true });
    const layer = new LoraLinear(base, "default", { ...settings, r: 16 });
    const A = layer.lora_A.get("default")!.weight.dataSync();
    const bound = 1 / Math.sqrt(896);
    expect(Math.max(...A.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...A.map(Math.abs))).toBeGreaterThan(0.9 * bound);
    expect(
      layer.lora_B
        .get("default")!
        .weight.dataSync()
        .every((v) => v === 0),
    ).toBe(true);
    const xs = randn([2, 896]);
    expect(layer.forward(xs).dataSync()).toEqual(base.forward(xs).dataSync());
  });
});

type T = ReturnType<typeof randn>;

/** The layer's forward with A, B (and m) replaced by the given tensors, so gradcheck can perturb them. */
function forwardWith(layer: LoraLinear, x: T, a: T, b: T, m?: T): T {
  const A = layer.lora_A.get("default")! as { weight: unknown };
  const B = layer.lora_B.get("default")! as { weight: unknown };
  const mag = layer.lora_magnitude_vector.get("default") as { weight: unknown } | undefined;
  const saved = [A.weight, B.weight, mag?.weight];
  A.weight = a;
  B.weight = b;
  if (mag && m) mag.weight = m;
  try {
    return layer.forward(x);
  } finally {
    A.weight = saved[0];
    B.weight = saved[1];
    if (mag) mag.weight = saved[2];
  }
}

function f64Layer(dora: boolean, bias: boolean, I: number, O: number, r: number): LoraLinear {
  const base = new Linear(I, O, { bias, dtype: "float64" });
  const layer = new LoraLinear(base, "default", { ...settings, r, use_dora: dora });
  noGrad(() => layer.lora_B.get("default")!.weight.assign(randn([O, r], { dtype: "float64" }).mul(0.5)));
  return layer;
}

const dims = [
  fc.integer({ min: 1, max: 5 }),
  fc.integer({ min: 1, max: 5 }),
  fc.integer({ min: 1, max: 3 }),
  fc.boolean(),
  fc.integer(),
] as const;

describe("LoRA and DoRA gradients", () => {
  it("LoRA: x, A and B match finite differences", () => {
    fc.assert(
      fc.property(...dims, (I, O, r, bias, seed) => {
        manualSeed(seed);
        const layer = f64Layer(false, bias, I, O, r);
        const a = layer.lora_A.get("default")!.weight.detach();
        const b = layer.lora_B.get("default")!.weight.detach();
        assertGradients(
          (xx, aa, bb) => forwardWith(layer, xx!, aa!, bb!),
          [randn([3, I], { dtype: "float64" }), a, b],
        );
      }),
      { numRuns: 15 },
    );
  });

  it("DoRA: x and m match finite differences; A and B match the fixed-norm composition (the norm is detached)", () => {
    fc.assert(
      fc.property(...dims, (I, O, r, bias, seed) => {
        manualSeed(seed);
        const layer = f64Layer(true, bias, I, O, r);
        const a = layer.lora_A.get("default")!.weight.detach();
        const b = layer.lora_B.get("default")!.weight.detach();
        const m = layer.lora_magnitude_vector.get("default")!.weight.detach().mul(1.5);
        const xs = randn([3, I], { dtype: "float64" });
        assertGradients((xx, mm) => forwardWith(layer, xx!, a, b, mm!), [xs, m]);
        // Reference: y = b0 + m / N0 * ((W + s B A) x) with N0 = ||W + s B A||_row held constant (DoRA paper 4.3).
        const W = layer.base_layer.denseWeight().detach();
        const bias0 = (layer.base_layer as unknown as { bias: T | null }).bias?.detach() ?? null;
        const s = layer.scaling("default");
        const N0 = noGrad(() => W.add(b.matmul(a).mul(s)).square().sum(1).sqrt());
        const reference = (xx: T, aa: T, bb: T) => {
          const y = xx.matmul(W.add(bb.matmul(aa).mul(s)).mT).mul(m.div(N0));
          return bias0 ? y.add(bias0) : y;
        };
        assertGradients((aa, bb) => reference(xs, aa!, bb!), [a, b]);
        const leaves = [a, b].map((t) => t.detach().requiresGrad_());
        const v = randn([3, O], { dtype: "float64" });
        forwardWith(layer, xs, leaves[0]!, leaves[1]!, m).mul(v).sum().backward();
        const refLeaves = [a, b].map((t) => t.detach().requiresGrad_());
        reference(xs, refLeaves[0]!, refLeaves[1]!).mul(v).sum().backward();
        expectAllClose(leaves[0]!.grad!, refLeaves[0]!.grad!, { atol: 1e-10, rtol: 1e-8 });
        expectAllClose(leaves[1]!.grad!, refLeaves[1]!.grad!, { atol: 1e-10, rtol: 1e-8 });
      }),
      { numRuns: 15 },
    );
  });
});
