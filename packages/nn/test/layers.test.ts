// Layers against hand-derived values and simple references: Linear, RMSNorm, RoPE (identity at 0, the
// rotate-half pairing, llama3 frequencies), masks, repeat_kv, GQA, Embedding padding_idx, Dropout.

import {
  Attention,
  applyRotary,
  buildAttentionMask,
  Dropout,
  Embedding,
  Linear,
  RMSNorm,
  repeatKv,
  ropeCosSin,
  ropeInvFreq,
  SwiGLU,
} from "@tsgrad/nn";
import { cat, manualSeed, noGrad, ones, randn, tensor } from "@tsgrad/tensor";
import { assertGradients, expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { describe, expect, it } from "vitest";

describe("Linear", () => {
  it("computes x W^T + b with W stored [out, in]", () => {
    const lin = new Linear(2, 3);
    lin.weight.assign(
      tensor(
        [
          [1, 2],
          [3, 4],
          [5, 6],
        ],
        { dtype: "float32" },
      ),
    );
    lin.bias!.assign(tensor([0.5, -1, 2], { dtype: "float32" }));
    const y = lin.forward(tensor([[[1, -1]], [[2, 0.5]]], { dtype: "float32" })); // [2, 1, 2]
    // [1,-1]: [1-2, 3-4, 5-6] + b = [-0.5, -2, 1]; [2, .5]: [2+1, 6+2, 10+3] + b = [3.5, 7, 15]
    expect(y.shape).toEqual([2, 1, 3]);
    expect(y.tolistSync()).toEqual([[[-0.5, -2, 1]], [[3.5, 7, 15]]]);
  });
});

describe("RMSNorm", () => {
  it("y = w * x / sqrt(mean(x^2) + eps)", () => {
    const norm = new RMSNorm(4, 1e-6);
    norm.weight.assign(tensor([1, 2, 0.5, -1], { dtype: "float32" }));
    const y = norm.forward(tensor([[1, 2, 3, 4]], { dtype: "float32" }));
    const rms = Math.sqrt((1 + 4 + 9 + 16) / 4 + 1e-6);
    expectAllClose(y, [1 / rms, 4 / rms, 1.5 / rms, -4 / rms], TOLERANCES.f32);
  });

  it("has the gradients of its formula (float64, finite differences)", () => {
    manualSeed(3);
    const norm = new RMSNorm(5, 1e-5, { dtype: "float64" });
    norm.weight.assign(randn([5], { dtype: "float64" }).add(2));
    assertGradients((x) => norm.forward(x), [randn([2, 5], { dtype: "float64" })]);
  });
});

describe("rotary embeddings", () => {
  it("are the identity at position 0", () => {
    manualSeed(4);
    const x = randn([2, 3, 1, 8]); // [B, heads, T, d]
    const { cos, sin } = ropeCosSin(ropeInvFreq(8, 10000), [0, 0], 2, 1, "float32");
    expect(applyRotary(x, cos, sin).tolistSync()).toEqual(x.tolistSync());
  });

  it("turn dimension i with i + d/2 by p * theta^(-2i/d) (rotate half, not interleaved)", () => {
    const d = 4;
    const p = 3;
    const x = tensor([[[[0.3, -1.2, 0.7, 2.0]]]], { dtype: "float64" });
    const { cos, sin } = ropeCosSin(ropeInvFreq(d, 100), [p], 1, 1, "float64");
    const y = applyRotary(x, cos, sin).dataSync();
    const v = [0.3, -1.2, 0.7, 2.0];
    for (let i = 0; i < d / 2; i++) {
      const a = p * 100 ** ((-2 * i) / d);
      expect(y[i]).toBeCloseTo(v[i]! * Math.cos(a) - v[i + d / 2]! * Math.sin(a), 12);
      expect(y[i + d / 2]).toBeCloseTo(v[i + d / 2]! * Math.cos(a) + v[i]! * Math.sin(a), 12);
    }
  });

  it("make q(m) . k(n) depend only on m - n", () => {
    manualSeed(5);
    const q = randn([1, 1, 1, 8], { dtype: "float64" });
    const k = randn([1, 1, 1, 8], { dtype: "float64" });
    const inv = ropeInvFreq(8, 10000);
    const dot = (m: number, n: number) => {
      const a = ropeCosSin(inv, [m], 1, 1, "float64");
      const b = ropeCosSin(inv, [n], 1, 1, "float64");
      return applyRotary(q, a.cos, a.sin)
        .mul(applyRotary(k, b.cos, b.sin))
        .sum()
        .itemSync();
    };
    expect(dot(7, 3)).toBeCloseTo(dot(4, 0), 10);
    expect(dot(12, 2)).toBeCloseTo(dot(10, 0), 10);
  });

  it("llama3 scaling keeps high, smooths medium and divides low frequencies", () => {
    const scaling = {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 256,
    };
    const inv = ropeInvFreq(8, 500000, scaling);
    const base = [0, 1, 2, 3].map((i) => 500000 ** (-(2 * i) / 8));
    // wavelengths 2 pi / base: 6.28 (< 256/4 = 64: kept), 167 (in [64, 256]: smoothed), 4.5e3 and 1.2e5 (> 256: / 8)
    const smooth = (256 / ((2 * Math.PI) / base[1]!) - 1) / (4 - 1);
    const expected = [
      base[0]!,
      ((1 - smooth) * base[1]!) / 8 + smooth * base[1]!,
      base[2]! / 8,
      base[3]! / 8,
    ];
    for (let i = 0; i < 4; i++) expect(inv[i]).toBeCloseTo(expected[i]!, 14);
    expect(Array.from(ropeInvFreq(8, 500000, null))).toEqual(base);
    expect(Array.from(ropeInvFreq(8, 500000, { type: "default" }))).toEqual(base);
  });
});

describe("attention pieces", () => {
  it("the additive mask is causal and hides padded keys, with the dtype's min", () => {
    const m = buildAttentionMask([0, 1, 1], 1, 3, 0, "float32")!;
    const min = -3.4028234663852886e38;
    expect(m.shape).toEqual([1, 1, 3, 3]);
    expect(m.tolistSync()).toEqual([
      [
        [
          [min, min, min],
          [min, 0, min],
          [min, 0, 0],
        ],
      ],
    ]);
    // one new token after 2 cached ones, no padding: nothing to mask
    expect(buildAttentionMask([1, 1, 1], 1, 1, 2, "float32")).toBeNull();
    expect(buildAttentionMask(null, 1, 2, 1, "float64")!.tolistSync()).toEqual([
      [
        [
          [0, 0, -Number.MAX_VALUE],
          [0, 0, 0],
        ],
      ],
    ]);
  });

  it("repeat_kv gives query head h the KV head floor(h / g)", () => {
    const kv = tensor([[[[1]], [[2]]]], { dtype: "float32" }); // [1, 2, 1, 1]
    expect(repeatKv(kv, 3).reshape([-1]).tolistSync()).toEqual([1, 1, 1, 2, 2, 2]);
  });

  it("grouped-query attention equals multi-head attention with each KV head copied", () => {
    manualSeed(6);
    const opts = {
      hiddenSize: 16,
      numHeads: 4,
      headDim: 4,
      qkvBias: true,
      oBias: false,
      dtype: "float64" as const,
    };
    const gqa = new Attention({ ...opts, numKvHeads: 2 });
    const mha = new Attention({ ...opts, numKvHeads: 4 });
    mha.q_proj = gqa.q_proj;
    mha.o_proj = gqa.o_proj;
    // KV head j serves query heads 2j and 2j+1: copy its rows (4 each) twice
    for (const name of ["k_proj", "v_proj"] as const) {
      const src = gqa[name] as Linear;
      const dst = mha[name] as Linear;
      const rows = (t: typeof src.weight) => [0, 0, 1, 1].map((j) => t.slice(0, 4 * j, 4 * j + 4));
      noGrad(() => {
        dst.weight.assign(cat(rows(src.weight), 0));
        dst.bias!.assign(cat(rows(src.bias!), 0));
      });
    }
    const x = randn([2, 3, 16], { dtype: "float64" });
    const { cos, sin } = ropeCosSin(ropeInvFreq(4, 10000), [0, 1, 2, 0, 1, 2], 2, 3, "float64");
    const mask = buildAttentionMask(null, 2, 3, 0, "float64");
    const a = gqa.forward(x, { cos, sin, mask });
    const b = mha.forward(x, { cos, sin, mask });
    expectAllClose(a, b, { atol: 1e-12, rtol: 1e-12 });
  });

  it("SwiGLU is down(silu(gate x) * up x)", () => {
    const mlp = new SwiGLU(1, 1);
    (mlp.gate_proj as Linear).weight.assign(tensor([[2]], { dtype: "float32" }));
    (mlp.up_proj as Linear).weight.assign(tensor([[3]], { dtype: "float32" }));
    (mlp.down_proj as Linear).weight.assign(tensor([[0.5]], { dtype: "float32" }));
    const x = 0.7;
    const g = 2 * x;
    expect(mlp.forward(tensor([[x]], { dtype: "float32" })).itemSync()).toBeCloseTo(
      0.5 * (g / (1 + Math.exp(-g))) * 3 * x,
      6,
    );
  });
});

describe("Embedding and Dropout", () => {
  it("padding_idx rows get no gradient from lookups", () => {
    const emb = new Embedding(4, 2, { paddingIdx: 0 });
    emb
      .forward(tensor([[0, 2, 0, 3]], { dtype: "int32" }))
      .sum()
      .backward();
    expect(emb.weight.grad!.tolistSync()).toEqual([
      [0, 0],
      [0, 0],
      [1, 1],
      [1, 1],
    ]);
  });

  it("Dropout zeroes and rescales in training, and is the identity in eval", () => {
    manualSeed(7);
    const drop = new Dropout(0.5);
    const y = drop.forward(ones([1000])).dataSync();
    const kept = Array.from(y).filter((v) => v !== 0);
    expect(kept.every((v) => v === 2)).toBe(true);
    expect(kept.length).toBeGreaterThan(400);
    expect(kept.length).toBeLessThan(600);
    drop.eval();
    const x = randn([5]);
    expect(drop.forward(x)).toBe(x);
  });
});
