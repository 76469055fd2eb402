// The decoder layers on tensor's fused kernels (rmsNorm, swiglu, rope, maskedSoftmax) against the same models
// on the compositions (withFusedKernels(false, ...)): logits and every parameter gradient, float32 and
// float64, for a tiny Llama with GQA and a tiny Qwen2; and the grouped-query attention (no repeat_kv)
// against repeat_kv written out, with the [B, 1, T, S] mask and a per-head [B, nH, T, S] one.

import {
  Attention,
  type CausalLM,
  LlamaConfig,
  LlamaForCausalLM,
  Qwen2Config,
  Qwen2ForCausalLM,
  repeatKv,
  ropeCosSin,
  ropeInvFreq,
} from "@tsgrad/nn";
import { cat, type DType, manualSeed, randn, type Tensor, withFusedKernels } from "@tsgrad/tensor";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { describe, expect, it } from "vitest";

const SMALL = {
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  rms_norm_eps: 1e-5,
};

const INPUT = {
  input_ids: [
    [0, 0, 5, 9, 17, 3, 44, 8],
    [7, 12, 33, 2, 61, 19, 5, 30],
  ],
  attention_mask: [
    [0, 0, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
  ],
  labels: [
    [-100, -100, 9, 17, 3, 44, 8, 1],
    [12, 33, 2, 61, 19, 5, 30, 4],
  ],
};

function build(kind: "llama" | "qwen2", dtype: DType): CausalLM {
  manualSeed(5);
  const model =
    kind === "llama"
      ? new LlamaForCausalLM(
          new LlamaConfig({
            ...SMALL,
            rope_theta: 500000,
            rope_scaling: {
              rope_type: "llama3",
              factor: 8,
              low_freq_factor: 1,
              high_freq_factor: 4,
              original_max_position_embeddings: 16,
            },
          }),
          { dtype },
        )
      : new Qwen2ForCausalLM(new Qwen2Config({ ...SMALL, tie_word_embeddings: true }), { dtype });
  return model.train();
}

/** Every op name in the graph behind t. */
function graphOps(t: Tensor): Set<string> {
  const ops = new Set<string>();
  const seen = new Set<Tensor>();
  const stack = [t];
  while (stack.length) {
    const x = stack.pop()!;
    if (seen.has(x) || !x._node) continue;
    seen.add(x);
    ops.add(x._node.op);
    stack.push(...x._node.inputs);
  }
  return ops;
}

function run(model: CausalLM, fused: boolean) {
  return withFusedKernels(fused, () => {
    model.zeroGrad();
    const { logits, loss } = model.forward(INPUT);
    const ops = graphOps(logits);
    loss!.backward();
    const grads = new Map<string, Float64Array>();
    for (const [k, p] of model.namedParameters()) grads.set(k, Float64Array.from(p.grad!.dataSync()));
    return { logits: Float64Array.from(logits.dataSync()), ops, grads };
  });
}

const FUSED_OPS = ["rmsNorm", "swiglu", "rope", "maskedSoftmax"];

describe.each([
  ["llama", "float32"],
  ["llama", "float64"],
  ["qwen2", "float32"],
  ["qwen2", "float64"],
] as const)("%s %s: fused kernels vs compositions", (kind, dtype) => {
  it("same logits and parameter gradients, with the fused ops on the graph", () => {
    const model = build(kind, dtype);
    const fused = run(model, true);
    const plain = run(model, false);
    for (const op of FUSED_OPS) {
      expect(fused.ops.has(op), op).toBe(true);
      expect(plain.ops.has(op), op).toBe(false);
    }
    const tol = dtype === "float64" ? { atol: 1e-12, rtol: 1e-10 } : TOLERANCES.f32;
    expectAllClose(fused.logits, plain.logits, tol);
    expect([...fused.grads.keys()]).toEqual([...plain.grads.keys()]);
    for (const [k, g] of fused.grads) {
      try {
        expectAllClose(g, plain.grads.get(k)!, tol);
      } catch (e) {
        throw new Error(`${k}: ${(e as Error).message}`);
      }
    }
  });
});

describe("causal attention products (causalScores, causalValues) vs plain matmuls", () => {
  // no padding: the mask is exactly causal, so the float32 model on the default device takes them
  const input = {
    input_ids: Array.from({ length: 2 }, (_, b) =>
      Array.from({ length: 40 }, (_, t) => (7 * b + 3 * t) % 64),
    ),
    labels: Array.from({ length: 2 }, (_, b) =>
      Array.from({ length: 40 }, (_, t) => (7 * b + 3 * t + 1) % 64),
    ),
  };
  const step = (model: CausalLM) => {
    model.zeroGrad();
    const { logits, loss } = model.forward(input);
    const ops = graphOps(logits);
    loss!.backward();
    const grads = [...model.namedParameters()].map(
      ([k, p]) => [k, Float64Array.from(p.grad!.dataSync())] as const,
    );
    return { logits: Float64Array.from(logits.dataSync()), ops, grads };
  };
  for (const kind of ["llama", "qwen2"] as const)
    it(`${kind} float32: same logits and parameter gradients with and without them`, () => {
      const model = build(kind, "float32");
      const backend = model.parameters()[0]!.backend as { matmulCausal?: unknown };
      expect(backend.matmulCausal).toBeDefined();
      const causal = step(model);
      const saved = backend.matmulCausal;
      backend.matmulCausal = undefined; // attention then takes the plain products
      let plain: ReturnType<typeof step>;
      try {
        plain = step(model);
      } finally {
        backend.matmulCausal = saved;
      }
      for (const op of ["causalScores", "causalValues"]) {
        expect(causal.ops.has(op), op).toBe(true);
        expect(plain.ops.has(op), op).toBe(false);
      }
      expectAllClose(causal.logits, plain.logits, TOLERANCES.f32);
      causal.grads.forEach(([k, g], i) => {
        try {
          expectAllClose(g, plain.grads[i]![1], TOLERANCES.f32);
        } catch (e) {
          throw new Error(`${k}: ${(e as Error).message}`);
        }
      });
    });
});

describe("grouped-query attention without repeat_kv", () => {
  const [B, T, nH, nKV, D] = [2, 5, 6, 2, 4];
  const H = 16;

  /** transformers' eager attention: repeat_kv, scores * d^-1/2 + mask, softmax, probs v, o_proj. */
  function reference(attn: Attention, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor): Tensor {
    const rot = (t: Tensor) => t.mul(cos).add(rotate(t).mul(sin));
    const rotate = (t: Tensor) => {
      const h = D / 2;
      return cat([t.slice(-1, h).neg(), t.slice(-1, 0, h)], -1);
    };
    const split = (t: Tensor, n: number) => t.reshape([B, T, n, D]).transpose(1, 2);
    const q = rot(split(attn.q_proj.forward(x), nH));
    const k = repeatKv(rot(split(attn.k_proj.forward(x), nKV)), nH / nKV);
    const v = repeatKv(split(attn.v_proj.forward(x), nKV), nH / nKV);
    const probs = q
      .matmul(k.mT)
      .mul(D ** -0.5)
      .add(mask)
      .softmax(-1);
    return attn.o_proj.forward(
      probs
        .matmul(v)
        .transpose(1, 2)
        .reshape([B, T, nH * D]),
    );
  }

  it.each([
    ["[B, 1, T, S]", [B, 1, T, T]],
    ["[B, nH, T, S]", [B, nH, T, T]],
  ])("matches repeat_kv with a %s mask, forward and backward", (_, maskShape) => {
    manualSeed(3);
    const attn = new Attention({
      hiddenSize: H,
      numHeads: nH,
      numKvHeads: nKV,
      headDim: D,
      qkvBias: true,
      oBias: false,
      dtype: "float64",
    });
    const x = randn([B, T, H], { dtype: "float64" });
    const { cos, sin } = ropeCosSin(ropeInvFreq(D, 10000), [...Array(B * T).keys()], B, T, "float64");
    const mask = randn(maskShape, { dtype: "float64" });
    const grads = (y: Tensor) => {
      for (const p of attn.parameters()) p.grad = null;
      y.square().sum().backward();
      return attn.parameters().map((p) => Float64Array.from(p.grad!.dataSync()));
    };
    const y = attn.forward(x, { cos, sin, mask });
    const gy = grads(y);
    const r = reference(attn, x, cos, sin, mask);
    const gr = grads(r);
    const tight = { atol: 1e-12, rtol: 1e-10 };
    expectAllClose(y, Float64Array.from(r.dataSync()), tight);
    gy.forEach((g, i) => {
      expectAllClose(g, gr[i]!, tight);
    });
  });
});
