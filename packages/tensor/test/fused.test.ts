// Fused kernels against their compositions: the same values and gradients (float32 and float64, on the
// plain TypeScript backend, on the default wasm-backed cpu device, and on both with outputs that start as NaN),
// gradients against central
// differences through the public gradcheck (which runs the float64 TS kernels), second-order gradients
// under createGraph, and a check that the fused path is the one taken.

import {
  adamwComposition,
  adamwUpdate,
  applyRotary,
  type Backend,
  createCpuBackend,
  createWasmBackend,
  crossEntropy,
  type DType,
  getBackend,
  logSoftmax,
  maskedSoftmax,
  maskedSoftmaxComposition,
  randint,
  randn,
  registerBackend,
  rmsNorm,
  softmax,
  swiglu,
  type Tensor,
  tensor,
  withFusedKernels,
  withGradMode,
} from "@tsgrad/tensor";
import { arbTensor, assertGradients, expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const ts = createCpuBackend("fused-ts");
registerBackend(ts);

// Backends whose kernel outputs start as NaN rather than zero (TSGRAD_POISON_UNINIT, read at creation): a
// fused kernel that leaves an element of an output unwritten differs from its composition there.
const poisoned = (() => {
  const before = process.env.TSGRAD_POISON_UNINIT;
  process.env.TSGRAD_POISON_UNINIT = "1";
  try {
    return [
      createCpuBackend("fused-ts-poisoned"),
      createWasmBackend({ name: "fused-wasm-poisoned", threads: 1, storage: "wasm", minFused: 0 }),
    ];
  } finally {
    if (before === undefined) delete process.env.TSGRAD_POISON_UNINIT;
    else process.env.TSGRAD_POISON_UNINIT = before;
  }
})();
for (const b of poisoned) registerBackend(b);

interface Case {
  /** Inputs: float ones get gradients; the rest (targets) are passed through. */
  make: (dtype: DType, device: string) => Tensor[];
  fn: (...xs: Tensor[]) => Tensor;
  /** The autograd op name the fused path records. */
  op: string;
  /** Inputs that get no gradient (RoPE's tables). */
  constants?: number[];
}

const rows = (b: number, t: number, c: number) => [b, t, c];
/** An additive mask of `shape` [..., T, S]: 0 where key j <= query i + S - T (and j > 0 on odd leading rows), -1e30 elsewhere. */
function causal(shape: number[], dtype: DType, device: string): Tensor {
  const [T, S] = shape.slice(-2) as [number, number];
  const n = shape.reduce((a, b) => a * b, 1);
  const data = Array.from({ length: n }, (_, k) => {
    const [j, i, b] = [k % S, Math.floor(k / S) % T, Math.floor(k / (S * T))];
    return j <= i + S - T && !(b % 2 === 1 && j === 0) ? 0 : -1e30;
  });
  return tensor(data, { dtype, device }).reshape(shape);
}
const CASES: Record<string, Case> = {
  rmsNorm: {
    make: (dtype, device) => [randn(rows(2, 5, 17), { dtype, device }), randn([17], { dtype, device })],
    fn: (x, w) => rmsNorm(x!, w!, 1e-6),
    op: "rmsNorm",
  },
  swiglu: {
    make: (dtype, device) => [randn([3, 65], { dtype, device }).mul(3), randn([3, 65], { dtype, device })],
    fn: (g, u) => swiglu(g!, u!),
    op: "swiglu",
  },
  rope: {
    make: (dtype, device) => [
      randn([2, 3, 5, 8], { dtype, device }),
      randn([2, 1, 5, 8], { dtype, device }),
      randn([1, 1, 5, 8], { dtype, device }),
    ],
    fn: (x, c, s) => applyRotary(x!, c!, s!),
    op: "rope",
    constants: [1, 2],
  },
  "rope of a heads-major view": {
    // x [B, H, T, D] as the transposed view of a projection's [B, T, H, D]: the kernel reads that layout
    make: (dtype, device) => [
      randn([2, 5, 3, 8], { dtype, device }),
      randn([2, 1, 5, 8], { dtype, device }),
      randn([1, 1, 5, 8], { dtype, device }),
    ],
    fn: (x, c, s) => applyRotary(x!.transpose(1, 2), c!, s!),
    op: "rope",
    constants: [1, 2],
  },
  softmax: {
    make: (dtype, device) => [randn([4, 3, 33], { dtype, device }).mul(4)],
    fn: (x) => softmax(x!, -1),
    op: "softmax",
  },
  logSoftmax: {
    make: (dtype, device) => [randn([4, 257], { dtype, device }).mul(4)],
    fn: (x) => logSoftmax(x!, -1),
    op: "logSoftmax",
  },
  crossEntropy: {
    make: (dtype, device) => [
      randn([9, 17], { dtype, device }).mul(3),
      tensor([0, 16, -100, 3, 5, 5, -100, 1, 2], { dtype: "int32", device }),
    ],
    fn: (x, t) => crossEntropy(x!, t!),
    op: "crossEntropy",
  },
  maskedSoftmax: {
    make: (dtype, device) => [
      randn([2, 3, 5, 7], { dtype, device }).mul(4),
      causal([2, 1, 5, 7], dtype, device),
    ],
    fn: (x, m) => maskedSoftmax(x!, m!, 0.35),
    op: "maskedSoftmax",
    constants: [1],
  },
  "maskedSoftmax, mask shared by the batch": {
    make: (dtype, device) => [randn([2, 3, 4, 9], { dtype, device }), causal([4, 9], dtype, device)],
    fn: (x, m) => maskedSoftmax(x!, m!, 2),
    op: "maskedSoftmax",
    constants: [1],
  },
  "maskedSoftmax, padding mask [B, 1, 1, S]": {
    make: (dtype, device) => [randn([2, 2, 3, 6], { dtype, device }), causal([2, 1, 1, 6], dtype, device)],
    fn: (x, m) => maskedSoftmax(x!, m!, 0.5),
    op: "maskedSoftmax",
    constants: [1],
  },
  "maskedSoftmax, mask [1, H, 1, S] (expanded to x)": {
    make: (dtype, device) => [randn([2, 2, 3, 6], { dtype, device }), causal([1, 2, 1, 6], dtype, device)],
    fn: (x, m) => maskedSoftmax(x!, m!, 0.5),
    op: "maskedSoftmax",
    constants: [1],
  },
  "maskedSoftmax, one new token (KV cache)": {
    make: (dtype, device) => [randn([2, 4, 1, 9], { dtype, device }), causal([2, 1, 1, 9], dtype, device)],
    fn: (x, m) => maskedSoftmax(x!, m!, 0.5),
    op: "maskedSoftmax",
    constants: [1],
  },
  "crossEntropy, label smoothing, sum": {
    make: (dtype, device) => [randn([6, 5], { dtype, device }), randint(0, 5, [6], { device })],
    fn: (x, t) => crossEntropy(x!, t!, { label_smoothing: 0.1, reduction: "sum" }),
    op: "crossEntropy",
  },
  "crossEntropy, none": {
    make: (dtype, device) => [
      randn([4, 7], { dtype, device }),
      tensor([6, -100, 0, 2], { dtype: "int32", device }),
    ],
    fn: (x, t) => crossEntropy(x!, t!, { reduction: "none" }),
    op: "crossEntropy",
  },
};

/** Output and gradients of every float input, under a fixed projection of the output. */
function run(
  c: Case,
  inputs: Tensor[],
  fused: boolean,
): { y: Float64Array; grads: Float64Array[]; op: string } {
  return withFusedKernels(fused, () => {
    const leaves = inputs.map((t, i) => {
      const l = t.detach();
      if (t.dtype !== "int32" && !c.constants?.includes(i)) l.requiresGrad = true;
      return l;
    });
    const y = c.fn(...leaves);
    let node = y._node;
    while (
      node &&
      !["rmsNorm", "swiglu", "rope", "softmax", "logSoftmax", "crossEntropy", "maskedSoftmax"].includes(
        node.op,
      )
    )
      node = node.inputs.find((t) => t._node)?._node ?? null;
    const v = tensor(
      Array.from({ length: y.numel }, (_, i) => Math.sin(i + 1)),
      { dtype: y.dtype, device: y.device },
    ).reshape(y.shape);
    y.mul(v).sum().backward();
    return {
      y: Float64Array.from(y.dataSync()),
      grads: leaves.filter((l) => l.requiresGrad).map((l) => Float64Array.from(l.grad!.dataSync())),
      op: node?.op ?? "",
    };
  });
}

for (const [device, backend] of [
  ["fused-ts", ts],
  ["cpu", getBackend("cpu")],
  ...poisoned.map((b) => [b.name, b]),
] as [string, Backend][]) {
  describe(`fused kernels on ${device}`, () => {
    it("the backend has every fused kernel", () => {
      expect(Object.keys(backend.fused ?? {}).length).toBe(14);
    });
    for (const [name, c] of Object.entries(CASES)) {
      for (const dtype of ["float32", "float64"] as DType[]) {
        it(`${name} (${dtype}) equals the composition, values and gradients`, () => {
          const inputs = c.make(dtype, device);
          const f = run(c, inputs, true);
          const r = run(c, inputs, false);
          expect(f.op).toBe(c.op);
          expect(r.op).toBe("");
          const tol = dtype === "float32" ? TOLERANCES.f32 : { atol: 1e-12, rtol: 1e-10 };
          expectAllClose(f.y, r.y, tol);
          expect(f.grads.length).toBe(r.grads.length);
          for (const [i, g] of f.grads.entries()) expectAllClose(g, r.grads[i]!, tol);
        });
      }
    }
  });
}

describe("fused AdamW update", () => {
  const attrs = {
    lr: 1e-2,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weight_decay: 0.01,
    bc1: 1 - 0.9 ** 3,
    bc2Sqrt: Math.sqrt(1 - 0.999 ** 3),
  };
  for (const device of ["fused-ts", "cpu"])
    for (const dtype of ["float32", "float64"] as DType[])
      it(`equals the composition (${device}, ${dtype}) and takes the kernel`, () => {
        const [p, g, m] = [0, 1, 2].map(() => randn([5, 33], { dtype, device }));
        const v = randn([5, 33], { dtype, device }).square();
        const fused = adamwUpdate(p!, g!, m!, v, attrs);
        const ref = adamwComposition(p!, g!, m!, v, attrs);
        const tol = dtype === "float32" ? TOLERANCES.f32 : { atol: 1e-13, rtol: 1e-11 };
        for (const i of [0, 1, 2]) expectAllClose(fused[i]!.dataSync(), ref[i]!.dataSync(), tol);
        // without the kernel the same call is the composition: switch fused kernels off and compare
        const off = withFusedKernels(false, () => adamwUpdate(p!, g!, m!, v, attrs));
        expectAllClose(off[0].dataSync(), ref[0].dataSync(), { atol: 0, rtol: 0 });
        expect(fused[0].dataSync()).not.toEqual(p!.dataSync()); // it moved
      });
});

describe("fused maskedSoftmax: a mask that requires grad", () => {
  it("takes the composition and gets its gradient", () => {
    const x = randn([2, 2, 3, 4], { dtype: "float64" }).requiresGrad_();
    const m = causal([2, 1, 3, 4], "float64", "cpu").requiresGrad_();
    const y = maskedSoftmax(x, m, 0.5);
    expect(y._node?.op).not.toBe("maskedSoftmax");
    y.mul(y).sum().backward();
    const [x2, m2] = [x.detach().requiresGrad_(), m.detach().requiresGrad_()];
    const r = maskedSoftmaxComposition(x2, m2, 0.5);
    r.mul(r).sum().backward();
    expectAllClose(m.grad!.dataSync(), m2.grad!.dataSync(), { atol: 1e-12, rtol: 1e-10 });
    expectAllClose(x.grad!.dataSync(), x2.grad!.dataSync(), { atol: 1e-12, rtol: 1e-10 });
  });
});

describe("fused kernels: gradients against finite differences", () => {
  const dims = fc.record({ r: fc.integer({ min: 1, max: 4 }), c: fc.integer({ min: 1, max: 9 }) });
  it("rmsNorm", () => {
    fc.assert(
      fc.property(
        dims.chain(({ r, c }) => fc.tuple(arbTensor([r, c], { avoidZero: 0.1 }), arbTensor([c]))),
        ([x, w]) => assertGradients((a, b) => rmsNorm(a, b, 1e-5), [x, w]),
      ),
      { numRuns: 25 },
    );
  });
  it("swiglu", () => {
    fc.assert(
      fc.property(
        dims.chain(({ r, c }) => fc.tuple(arbTensor([r, c], { min: -5, max: 5 }), arbTensor([r, c]))),
        ([g, u]) => assertGradients(swiglu, [g, u]),
      ),
      { numRuns: 25 },
    );
  });
  // x [B, H, T, D] itself, and as the heads-major view of a [B, T, H, D] tensor (the kernel reads that layout)
  for (const view of [false, true])
    it(`rope (x${view ? ", a heads-major view" : ""}; the tables are constants)`, () => {
      fc.assert(
        fc.property(
          fc
            .record({
              b: fc.integer({ min: 1, max: 2 }),
              t: fc.integer({ min: view ? 2 : 1, max: 4 }),
              h: fc.integer({ min: 1, max: 4 }),
            })
            .chain(({ b, t, h }) =>
              fc.tuple(
                arbTensor(view ? [b, t, 3, 2 * h] : [b, 2, t, 2 * h]),
                arbTensor([b, 1, t, 2 * h]),
                arbTensor([1, 1, t, 2 * h]),
              ),
            ),
          ([x, c, s]) => assertGradients((a) => applyRotary(view ? a.transpose(1, 2) : a, c, s), [x]),
        ),
        { numRuns: 25 },
      );
    });
  it("softmax and logSoftmax", () => {
    fc.assert(
      fc.property(
        dims.chain(({ r, c }) => arbTensor([r, c], { min: -6, max: 6 })),
        (x) => {
          assertGradients((a) => softmax(a, -1), [x]);
          assertGradients((a) => logSoftmax(a, -1), [x]);
        },
      ),
      { numRuns: 25 },
    );
  });
  it("maskedSoftmax (x; the mask is a constant)", () => {
    fc.assert(
      fc.property(
        fc
          .record({
            b: fc.integer({ min: 1, max: 2 }),
            g: fc.integer({ min: 1, max: 3 }),
            t: fc.integer({ min: 1, max: 3 }),
            more: fc.integer({ min: 1, max: 3 }),
          })
          // keys beyond the queries: every row sees a key (a fully masked row has no finite differences)
          .chain(({ b, g, t, more }) =>
            fc.tuple(
              arbTensor([b, g, t, t + more], { min: -4, max: 4 }),
              fc.constant(causal([b, 1, t, t + more], "float64", "cpu")),
            ),
          ),
        ([x, m]) => assertGradients((a) => maskedSoftmax(a, m, 0.7), [x]),
      ),
      { numRuns: 25 },
    );
  });
  it("crossEntropy with ignored rows and label smoothing", () => {
    fc.assert(
      fc.property(
        dims.chain(({ r, c }) =>
          fc.tuple(
            arbTensor([r, c], { min: -4, max: 4 }),
            fc.array(fc.integer({ min: -1, max: c - 1 }), { minLength: r, maxLength: r }),
            fc.constantFrom(0, 0.2),
          ),
        ),
        ([x, t, ls]) => {
          const target = tensor(
            t.map((k) => (k < 0 ? -100 : k)),
            { dtype: "int32" },
          );
          assertGradients((a) => crossEntropy(a, target, { label_smoothing: ls, reduction: "sum" }), [x]);
        },
      ),
      { numRuns: 25 },
    );
  });
  it("second-order gradients (createGraph) of every fused op", () => {
    const x = randn([3, 6], { dtype: "float64" });
    const w = randn([6], { dtype: "float64" });
    const t = tensor([1, -100, 5], { dtype: "int32" });
    const x4 = randn([1, 2, 3, 6], { dtype: "float64" });
    const cs = randn([1, 1, 3, 6], { dtype: "float64" });
    // the gradient at a, itself a differentiable function of a (gradcheck evaluates it under noGrad too)
    const grad = (f: (a: Tensor) => Tensor) => (a: Tensor) =>
      withGradMode(true, () => {
        const leaf = a.requiresGrad ? a : a.detach().requiresGrad_();
        const prev = leaf.grad;
        leaf.grad = null;
        f(leaf).square().sum().backward(undefined, { createGraph: true });
        const g = leaf.grad!;
        leaf.grad = prev;
        return g;
      });
    assertGradients(
      grad((a) => rmsNorm(a, w, 1e-6)),
      [x],
    );
    assertGradients(
      grad((a) => swiglu(a, x)),
      [x],
    );
    assertGradients(
      grad((a) => softmax(a, -1)),
      [x],
    );
    assertGradients(
      grad((a) => logSoftmax(a, -1)),
      [x],
    );
    assertGradients(
      grad((a) => crossEntropy(a, t, { label_smoothing: 0.1, reduction: "none" })),
      [x],
    );
    assertGradients(
      grad((a) => applyRotary(a, cs, cs.mul(0.5))),
      [x4],
    );
    assertGradients(
      grad((a) => maskedSoftmax(a, causal([1, 1, 3, 6], "float64", "cpu"), 0.7)),
      [x4],
    );
  });
});
