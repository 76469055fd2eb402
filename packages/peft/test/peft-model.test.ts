import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type CausalLM,
  openSafetensors,
  type PreTrainedTokenizer,
  Qwen2Config,
  Qwen2ForCausalLM,
} from "@tsgrad/nn";
import { manualSeed, noGrad, type Tensor, tensor } from "@tsgrad/tensor";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { describe, expect, it } from "vitest";
import { LoraConfig, PromptTuningConfig } from "../src/config.js";
import { LoraLinear } from "../src/lora/layer.js";
import { getPeftModel, PeftModel } from "../src/peft-model.js";
import "../src/save-load.js";

const tiny = {
  vocab_size: 64,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  tie_word_embeddings: false,
};

function makeBase(seed = 0): CausalLM {
  manualSeed(seed);
  return new Qwen2ForCausalLM(new Qwen2Config(tiny));
}
const ids = [
  [1, 5, 9, 12, 3, 7],
  [4, 4, 20, 31, 2, 0],
];
const mask = [
  [1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 1, 0],
];
const logitsOf = (m: { forward: CausalLM["forward"] }) =>
  noGrad(() => m.forward({ input_ids: ids, attention_mask: mask }).logits);

/** A few plain SGD steps on the trainable parameters, so B is no longer zero. */
function train(peft: PeftModel, steps = 3, lr = 0.5): void {
  for (let i = 0; i < steps; i++) {
    const { loss } = peft.forward({ input_ids: ids, attention_mask: mask, labels: ids });
    loss!.backward();
    noGrad(() => {
      for (const p of peft.parameters()) {
        if (p.requiresGrad && p.grad) p.assign(p.sub(p.grad.mul(lr)));
        p.grad = null;
      }
    });
  }
}

describe("getPeftModel with LoRA", () => {
  it("wraps only the targeted Linears, equals the base at init, and trains r(I+O) per layer", () => {
    const base = makeBase();
    const before = logitsOf(base);
    const peft = getPeftModel(
      base,
      new LoraConfig({ r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"], task_type: "CAUSAL_LM" }),
    );
    expect(peft.model.getSubmodule("model.layers.0.self_attn.q_proj")).toBeInstanceOf(LoraLinear);
    expect(peft.model.getSubmodule("model.layers.0.self_attn.k_proj")).not.toBeInstanceOf(LoraLinear);
    expect(logitsOf(peft).dataSync()).toEqual(before.dataSync());
    // q_proj 16 -> 16, v_proj 16 -> 8 (2 kv heads x head_dim 4): 4(16+16) + 4(16+8) = 224 per layer.
    const trainable = [...peft.namedParameters()].filter(([, p]) => p.requiresGrad);
    expect(trainable.reduce((n, [, p]) => n + p.numel, 0)).toBe(2 * 224);
    expect(trainable.every(([k]) => /\.lora_[AB]\.default\.weight$/.test(k))).toBe(true);
    expect(trainable[0]![0]).toBe("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight");
    const total = peft.parameters().reduce((n, p) => n + p.numel, 0);
    expect(peft.trainableParametersSummary()).toBe(
      `trainable params: 448 || all params: ${total.toLocaleString("en-US")} || trainable%: ${((100 * 448) / total).toFixed(4)}`,
    );
  });

  it("after training: merged equals unmerged, disableAdapter gives the base, unload returns the untouched base", () => {
    for (const use_dora of [false, true]) {
      const base = makeBase(1);
      const baseLogits = logitsOf(base);
      const baseWeights = new Map([...base.namedParameters()].map(([k, p]) => [k, p.dataSync().slice()]));
      const peft = getPeftModel(
        base,
        new LoraConfig({ r: 4, lora_alpha: 16, target_modules: "all-linear", use_dora, lora_dropout: 0.1 }),
      );
      train(peft);
      peft.eval();
      const unmerged = logitsOf(peft);
      expect(Math.max(...unmerged.sub(baseLogits).abs().dataSync())).toBeGreaterThan(1e-3);
      expectAllClose(
        peft.disableAdapter(() => logitsOf(peft)),
        baseLogits,
        { atol: 0, rtol: 0 },
      );
      peft.merge();
      expectAllClose(logitsOf(peft), unmerged, TOLERANCES.merged);
      peft.unmerge();
      expectAllClose(logitsOf(peft), unmerged, TOLERANCES.merged);
      const restored = peft.unload();
      restored.train();
      expect(restored.getSubmodule("model.layers.1.mlp.down_proj")).not.toBeInstanceOf(LoraLinear);
      // merge() then unmerge() moves W only by float32 rounding.
      for (const [k, p] of restored.namedParameters())
        expectAllClose(p, baseWeights.get(k)!, { atol: 1e-6, rtol: 0 });
    }
  });

  it("mergeAndUnload returns a plain model whose logits equal the adapted ones", () => {
    const peft = getPeftModel(makeBase(2), new LoraConfig({ r: 2, target_modules: ["o_proj", "up_proj"] }));
    train(peft);
    peft.eval();
    const adapted = logitsOf(peft);
    const merged = peft.mergeAndUnload();
    expect([...merged.namedParameters()].some(([k]) => k.includes("lora"))).toBe(false);
    expectAllClose(logitsOf(merged), adapted, TOLERANCES.merged);
  });

  it("bias='all' trains every bias and saves it; modules_to_save trains a copy of lm_head", () => {
    const peft = getPeftModel(
      makeBase(3),
      new LoraConfig({ target_modules: ["q_proj"], bias: "all", modules_to_save: ["lm_head"] }),
    );
    const names = [...peft.trainableParameters().keys()];
    expect(names).toContain("base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias");
    expect(names).toContain("base_model.model.model.layers.0.self_attn.k_proj.bias");
    expect(names).toContain("base_model.model.lm_head.modules_to_save.default.weight");
    expect(names).not.toContain("base_model.model.lm_head.original_module.weight");
  });
});

describe("save and load in PEFT's format", () => {
  it("round trips: a fresh base with the loaded adapter gives identical logits; keys and config are PEFT's", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tsgrad-peft-"));
    const peft = getPeftModel(
      makeBase(4),
      new LoraConfig({ r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"], use_dora: true }),
    );
    train(peft);
    peft.eval();
    const want = logitsOf(peft);
    await peft.savePretrained(dir);
    const cfg = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
    expect(cfg.peft_type).toBe("LORA");
    expect(cfg.inference_mode).toBe(true);
    expect(cfg.use_dora).toBe(true);
    const file = await openSafetensors(join(dir, "adapter_model.safetensors"));
    expect(file.metadata).toEqual({ format: "pt" });
    expect(file.keys()).toContain("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    expect(file.keys()).toContain("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
    expect(file.keys()).toContain("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector");
    expect(file.keys()).toHaveLength(2 * 2 * 3);
    await file.close();
    const loaded = await PeftModel.fromPretrained(makeBase(4), dir);
    expect(logitsOf(loaded).dataSync()).toEqual(want.dataSync());
    expect(loaded.parameters().every((p) => !p.requiresGrad)).toBe(true);
    const trainable = await PeftModel.fromPretrained(makeBase(4), dir, { is_trainable: true });
    expect(trainable.trainableParameters().size).toBe(12);
  });

  it("bad adapter folders fail clearly and leave the base model unchanged", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tsgrad-peft-bad-"));
    const peft = getPeftModel(makeBase(5), new LoraConfig({ r: 4, target_modules: ["q_proj"] }));
    await peft.savePretrained(dir);
    const base = makeBase(5);
    const before = logitsOf(base);
    const check = async (pattern: RegExp) => {
      await expect(PeftModel.fromPretrained(base, dir)).rejects.toThrow(pattern);
      expect(base.getSubmodule("model.layers.0.self_attn.q_proj")).not.toBeInstanceOf(LoraLinear);
      expect(logitsOf(base).dataSync()).toEqual(before.dataSync());
    };
    const good = await readFile(join(dir, "adapter_config.json"), "utf8");
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify({ ...JSON.parse(good), r: 8 }));
    await check(/lora_A.weight has shape \[4, 16\], but the model expects \[8, 16\]/);
    await writeFile(
      join(dir, "adapter_config.json"),
      JSON.stringify({ ...JSON.parse(good), target_modules: ["k_proj"] }),
    );
    await check(/names no adapter parameter/);
    await writeFile(
      join(dir, "adapter_config.json"),
      JSON.stringify({ ...JSON.parse(good), lora_alpha: "big" }),
    );
    await check(/adapter_config.json: field "lora_alpha" is "big"; expected a finite number/);
    const { peft_type: _, ...noType } = JSON.parse(good);
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify(noType));
    await check(/field "peft_type"/);
    await expect(PeftModel.fromPretrained(base, join(dir, "nope"))).rejects.toThrow(
      /nope\/adapter_config.json: adapter config not found/,
    );
  });
});

describe("prompt tuning", () => {
  it("prepends T virtual tokens, masks their labels, trains only the prompt and saves prompt_embeddings", async () => {
    const base = makeBase(6);
    const peft = getPeftModel(base, new PromptTuningConfig({ num_virtual_tokens: 3 }));
    const out = peft.forward({ input_ids: ids, attention_mask: mask, labels: ids });
    expect(out.logits.shape).toEqual([2, 9, 64]);
    expect([...peft.trainableParameters().keys()]).toEqual(["prompt_encoder.default.embedding.weight"]);
    // The loss equals the base model's on the same embeddings with -100 labels for the prefix.
    out.loss!.backward();
    expect(peft.prompt_encoder.get("default")!.embedding.weight.grad!.abs().sum().itemSync()).toBeGreaterThan(
      0,
    );
    expect(base.parameters().every((p) => p.grad === null)).toBe(true);
    const dir = await mkdtemp(join(tmpdir(), "tsgrad-pt-"));
    await peft.savePretrained(dir);
    const file = await openSafetensors(join(dir, "adapter_model.safetensors"));
    expect(file.keys()).toEqual(["prompt_embeddings"]);
    expect(file.info("prompt_embeddings").shape).toEqual([3, 16]);
    await file.close();
    const cfg = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
    expect([
      cfg.peft_type,
      cfg.token_dim,
      cfg.num_layers,
      cfg.num_attention_heads,
      cfg.num_transformer_submodules,
    ]).toEqual(["PROMPT_TUNING", 16, 2, 4, 1]);
    const loaded = await PeftModel.fromPretrained(makeBase(6), dir);
    expect(logitsOf(loaded).dataSync()).toEqual(logitsOf(peft).dataSync());
  });

  it("greedy generation with the learned prompt equals the argmax loop without a cache", () => {
    const peft = getPeftModel(makeBase(7), new PromptTuningConfig({ num_virtual_tokens: 2 }));
    const prompt = [[3, 9, 14]];
    const out = peft.generate(prompt, { max_new_tokens: 4, eos_token_id: null }).tolistSync() as number[][];
    const seq = [...prompt[0]!];
    for (let i = 0; i < 4; i++) {
      const logits = noGrad(() => peft.forward({ input_ids: [seq] }).logits) as Tensor;
      const last = logits.slice(1, -1).reshape([-1]);
      seq.push(last.argmax().itemSync());
    }
    expect(out[0]).toEqual(seq);
  });
});

describe("all-linear", () => {
  it("is saved as the expanded list of module names, as PEFT writes it", () => {
    const cfg = new LoraConfig({ target_modules: "all-linear" });
    getPeftModel(makeBase(8), cfg);
    expect([...(cfg.target_modules as string[])].sort()).toEqual([
      "down_proj",
      "gate_proj",
      "k_proj",
      "o_proj",
      "q_proj",
      "up_proj",
      "v_proj",
    ]);
    expect(JSON.parse(cfg.toJsonString()).target_modules).toHaveLength(7);
  });
});

describe("several adapters", () => {
  it("adds, switches, trains only the active one, and saves non-default adapters in sub-folders", async () => {
    const peft = getPeftModel(makeBase(9), new LoraConfig({ r: 2, target_modules: ["q_proj"] }));
    peft.addAdapter("other", new LoraConfig({ r: 3, target_modules: ["v_proj"] }));
    expect([...peft.trainableParameters().keys()].every((k) => k.includes(".default."))).toBe(true);
    train(peft, 1);
    const afterDefault = logitsOf(peft);
    peft.setAdapter("other");
    expect([...peft.trainableParameters().keys()].every((k) => k.includes(".other."))).toBe(true);
    train(peft, 2);
    peft.eval();
    const afterOther = logitsOf(peft);
    peft.setAdapter("default");
    peft.eval();
    expect(logitsOf(peft).dataSync()).toEqual(afterDefault.dataSync());
    const dir = await mkdtemp(join(tmpdir(), "tsgrad-multi-"));
    await peft.savePretrained(dir);
    const sub = JSON.parse(await readFile(join(dir, "other", "adapter_config.json"), "utf8"));
    expect(sub.r).toBe(3);
    const loaded = await PeftModel.fromPretrained(makeBase(9), join(dir, "other"), { adapter_name: "other" });
    expect(logitsOf(loaded).dataSync()).toEqual(afterOther.dataSync());
  });

  it("TEXT init copies the word embeddings of the tokenized text, tiled to num_virtual_tokens", () => {
    const base = makeBase(10);
    // Only encode() is used by TEXT init; the text "x" encodes to [5, 6, 7] here.
    const tokenizer = { encode: () => [5, 6, 7] } as unknown as PreTrainedTokenizer;
    const peft = getPeftModel(
      base,
      new PromptTuningConfig({
        num_virtual_tokens: 4,
        prompt_tuning_init: "TEXT",
        prompt_tuning_init_text: "x",
        tokenizer_name_or_path: "tok",
      }),
      { tokenizer },
    );
    const want = noGrad(() =>
      base.model.embed_tokens.weight.indexSelect(0, tensor([5, 6, 7, 5], { dtype: "int32" })),
    );
    expectAllClose(peft.prompt_encoder.get("default")!.embedding.weight, want, { atol: 0, rtol: 0 });
  });
});
