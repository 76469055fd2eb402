// QLoRA: LoRA and DoRA on 4-bit (NF4 + double quant) bases. Training lowers the loss; the adapters'
// gradients equal those of the same adapters on the dequantized float model; merging dequantizes and
// returns a full-precision model with a warning (trl-peft-spec 1.9, 2, 3.5, 11.1).

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AdamW,
  type CausalLM,
  Linear,
  Linear4bit,
  type Linear4bitKernel,
  Qwen2Config,
  Qwen2ForCausalLM,
  quantizeModel,
} from "@tsgrad/nn";
import { manualSeed, noGrad, randn, type Tensor } from "@tsgrad/tensor";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { LoraConfig } from "../src/config.js";
import { LoraLinear } from "../src/lora/layer.js";
import { getPeftModel, PeftModel } from "../src/peft-model.js";
import "../src/save-load.js";

const TINY = {
  vocab_size: 48,
  hidden_size: 32,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
};
const IDS = [
  [1, 7, 9, 33, 2, 40, 7, 11],
  [3, 3, 41, 12, 5, 8, 19, 20],
];
const NF4_DQ = { load_in_4bit: true, bnb_4bit_quant_type: "nf4" as const, bnb_4bit_use_double_quant: true };

/** A random float model, its quantized twin, and the float model holding the dequantized weights. */
function models(seed: number): { quant: CausalLM; deq: CausalLM } {
  manualSeed(seed);
  const float = new Qwen2ForCausalLM(new Qwen2Config(TINY));
  const state = new Map([...float.stateDict()].map(([k, t]) => [k, noGrad(() => t.clone())]));
  const quant = quantizeModel(float, NF4_DQ);
  const deq = new Qwen2ForCausalLM(new Qwen2Config(TINY));
  deq.loadStateDict(state);
  noGrad(() => {
    for (const [path, m] of quant.namedModules())
      if (m instanceof Linear4bit) (deq.getSubmodule(path) as Linear).weight.assign(m.dequantize());
  });
  return { quant, deq };
}

/** Gives both adapters the same random A, B (and magnitudes), so B A is not zero. */
function sameAdapters(a: PeftModel, b: PeftModel): void {
  const pa = a.trainableParameters();
  const pb = b.trainableParameters();
  expect([...pa.keys()]).toEqual([...pb.keys()]);
  noGrad(() => {
    for (const [k, p] of pa) {
      const v = k.includes("lora_magnitude_vector")
        ? p.add(randn(p.shape).mul(0.01))
        : randn(p.shape).mul(0.1);
      p.assign(v);
      pb.get(k)!.assign(v);
    }
  });
}

function loss(model: PeftModel): Tensor {
  return model.forward({ input_ids: IDS, labels: IDS }).loss!;
}

function maxAbs(a: Tensor, b: Tensor): number {
  const x = a.dataSync();
  const y = b.dataSync();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

describe("QLoRA on a 4-bit base", () => {
  it("LoRA wraps Linear4bit, only the adapters train, and a short run lowers the loss", () => {
    const { quant } = models(21);
    const peft = getPeftModel(quant, new LoraConfig({ r: 4, lora_alpha: 8, target_modules: "all-linear" }));
    const wrapped = [...peft.model.namedModules()].filter(([, m]) => m instanceof LoraLinear);
    expect(wrapped.length).toBe(14);
    for (const [, m] of wrapped) expect((m as LoraLinear).base_layer).toBeInstanceOf(Linear4bit);
    for (const [k] of peft.trainableParameters()) expect(k).toMatch(/\.lora_[AB]\.default\.weight$/);
    peft.train();
    const opt = new AdamW(peft.trainableParameters(), { lr: 1e-2, weight_decay: 0 });
    const first = loss(peft);
    const l0 = first.itemSync();
    let last = l0;
    for (let step = 0; step < 8; step++) {
      const l = loss(peft);
      l.backward();
      opt.step();
      opt.zeroGrad();
      last = l.itemSync();
    }
    last = noGrad(() => loss(peft).itemSync());
    expect(last).toBeLessThan(l0 - 0.05);
    // The packed base never changed.
    const q = peft.model.getSubmodule("model.layers.0.self_attn.q_proj.base_layer") as Linear4bit;
    expect(q.packedWeight).toBeInstanceOf(Uint8Array);
  });

  const variants: [boolean, Linear4bitKernel][] = [
    [false, "chunked"],
    [true, "chunked"],
    [false, "fused"],
  ];
  for (const [use_dora, kernel] of variants) {
    it(`${use_dora ? "DoRA" : "LoRA"} gradients equal those on the dequantized float model (within 1e-4, ${kernel} kernel)`, () => {
      Linear4bit.kernel = kernel;
      onTestFinished(() => {
        Linear4bit.kernel = "chunked";
      });
      const { quant, deq } = models(22);
      const cfg = () => new LoraConfig({ r: 4, lora_alpha: 8, target_modules: "all-linear", use_dora });
      const qp = getPeftModel(quant, cfg());
      const fp = getPeftModel(deq, cfg());
      if (use_dora) {
        // DoRA's magnitude is the row norm of the dequantized weight.
        const ql = qp.model.getSubmodule("model.layers.1.mlp.down_proj") as LoraLinear;
        const fl = fp.model.getSubmodule("model.layers.1.mlp.down_proj") as LoraLinear;
        const mq = ql.lora_magnitude_vector.get("default")!.weight;
        const mf = fl.lora_magnitude_vector.get("default")!.weight;
        expect(maxAbs(mq, mf)).toBeLessThan(1e-6);
      }
      sameAdapters(qp, fp);
      const lq = loss(qp);
      const lf = loss(fp);
      expect(Math.abs(lq.itemSync() - lf.itemSync())).toBeLessThan(1e-5);
      lq.backward();
      lf.backward();
      const gq = qp.trainableParameters();
      const gf = fp.trainableParameters();
      let checked = 0;
      for (const [k, p] of gq) {
        const other = gf.get(k)!;
        expect(p.grad, k).not.toBeNull();
        const scale = Math.max(...Array.from(other.grad!.dataSync(), Math.abs), 1e-3);
        expect(maxAbs(p.grad!, other.grad!) / scale, k).toBeLessThan(1e-4);
        checked++;
      }
      expect(checked).toBe(use_dora ? 42 : 28);
    });
  }

  it("an adapter trained on a 4-bit base saves and loads back onto a fresh 4-bit base", async () => {
    const { quant } = models(25);
    const peft = getPeftModel(
      quant,
      new LoraConfig({ r: 4, lora_alpha: 8, target_modules: ["q_proj", "up_proj"] }),
    );
    noGrad(() => {
      for (const [, p] of peft.trainableParameters()) p.assign(randn(p.shape).mul(0.1));
    });
    peft.eval();
    const dir = await mkdtemp(join(tmpdir(), "tsgrad-qlora-"));
    try {
      await peft.savePretrained(dir);
      const again = await PeftModel.fromPretrained(models(25).quant, dir);
      again.eval();
      const a = noGrad(() => peft.forward({ input_ids: IDS }).logits);
      const b = noGrad(() => again.forward({ input_ids: IDS }).logits);
      expect(maxAbs(a, b)).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("bfloat16 compute dtype trains too, close to float32 compute", () => {
    const losses: number[] = [];
    for (const dtype of ["float32", "bfloat16"] as const) {
      manualSeed(26);
      const float = new Qwen2ForCausalLM(new Qwen2Config(TINY));
      const quant = quantizeModel(float, { ...NF4_DQ, bnb_4bit_compute_dtype: dtype });
      const peft = getPeftModel(quant, new LoraConfig({ r: 4, lora_alpha: 8, target_modules: "all-linear" }));
      const l = loss(peft);
      l.backward();
      for (const [, p] of peft.trainableParameters()) {
        const g = p.grad!.dataSync();
        expect(Array.from(g).every(Number.isFinite)).toBe(true);
      }
      losses.push(l.itemSync());
    }
    expect(losses[1]).not.toBe(losses[0]);
    expect(Math.abs(losses[1]! - losses[0]!)).toBeLessThan(2e-2);
  });

  it("mergeAndUnload dequantizes, merges, warns once and returns a full-precision model", () => {
    const { quant } = models(23);
    const peft = getPeftModel(
      quant,
      new LoraConfig({ r: 4, lora_alpha: 8, target_modules: ["q_proj", "down_proj"] }),
    );
    noGrad(() => {
      for (const [k, p] of peft.trainableParameters())
        if (k.includes("lora_B")) p.assign(randn(p.shape).mul(0.1));
    });
    peft.eval();
    const before = noGrad(() => peft.forward({ input_ids: IDS }).logits);
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const merged = peft.mergeAndUnload();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toMatch(
      /quantized; 4 quantized layers were dequantized to float32/,
    );
    warn.mockRestore();
    for (const [, m] of merged.namedModules()) {
      expect(m).not.toBeInstanceOf(LoraLinear);
    }
    const qproj = merged.getSubmodule("model.layers.0.self_attn.q_proj");
    expect(qproj).toBeInstanceOf(Linear);
    expect((qproj as Linear).weight.requiresGrad).toBe(false);
    // Layers without adapters stay 4-bit, so the config keeps describing them.
    expect(merged.getSubmodule("model.layers.0.self_attn.k_proj")).toBeInstanceOf(Linear4bit);
    const after = noGrad(() => merged.forward({ input_ids: IDS }).logits);
    expect(maxAbs(after, before)).toBeLessThan(1e-5);
  });

  it("mergeAndUnload with every Linear adapted drops quantization_config", () => {
    const { quant } = models(24);
    const peft = getPeftModel(quant, new LoraConfig({ r: 2, target_modules: "all-linear", use_dora: true }));
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const merged = peft.mergeAndUnload();
    warn.mockRestore();
    expect([...merged.namedModules()].some(([, m]) => m instanceof Linear4bit)).toBe(false);
    expect((merged.config as unknown as Record<string, unknown>).quantization_config).toBeUndefined();
  });
});
