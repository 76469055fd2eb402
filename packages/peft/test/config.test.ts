import { describe, expect, it } from "vitest";
import { LoraConfig, PromptTuningConfig, peftConfigFromDict } from "../src/config.js";
import { savedKey, stripAdapterName } from "../src/keys.js";
import { getPatternKey, layerIndexOf, type ModuleEntry, resolveTargets } from "../src/targeting.js";

describe("LoraConfig", () => {
  it("has PEFT's defaults", () => {
    const c = new LoraConfig();
    expect([
      c.r,
      c.lora_alpha,
      c.lora_dropout,
      c.bias,
      c.use_rslora,
      c.use_dora,
      c.init_lora_weights,
    ]).toEqual([8, 8, 0, "none", false, false, true]);
    expect(c.target_modules).toBeNull();
  });

  it("computes the spec's worked scalings (1.4)", () => {
    expect(new LoraConfig({ r: 8, lora_alpha: 8 }).scaling()).toBe(1);
    expect(new LoraConfig({ r: 16, lora_alpha: 32 }).scaling()).toBe(2);
    expect(new LoraConfig({ r: 16, lora_alpha: 32, use_rslora: true }).scaling()).toBe(8);
    expect(new LoraConfig({ r: 2, lora_alpha: 4, use_rslora: true }).scaling()).toBeCloseTo(2.8284271, 7);
  });

  it("rejects bad values naming the field, the value and what is allowed", () => {
    expect(() => new LoraConfig({ r: 0 })).toThrow(/"r" is 0; expected an integer >= 1/);
    expect(() => new LoraConfig({ bias: "some" as never })).toThrow(
      /"bias" is "some"; expected one of "none", "all", "lora_only"/,
    );
    expect(() => new LoraConfig({ lora_dropout: 1.5 })).toThrow(/lora_dropout/);
    expect(() => new LoraConfig({ rank: 8 } as never)).toThrow(/"rank".*known fields: .*lora_alpha/);
    expect(() => new LoraConfig({ target_modules: "q_proj", layers_to_transform: [0] })).toThrow(
      /regex string/,
    );
    expect(() => new LoraConfig({ use_dora: true, lora_bias: true })).toThrow(/DoRA/);
    expect(() => new LoraConfig({ init_lora_weights: "pissa" as never })).toThrow(/init_lora_weights/);
  });

  it("writes adapter_config.json as Python's json.dumps(indent=2, sort_keys=True)", () => {
    const c = new LoraConfig({
      r: 16,
      lora_alpha: 32,
      lora_dropout: 0.05,
      target_modules: ["q_proj", "v_proj"],
      task_type: "CAUSAL_LM",
    });
    const text = c.toJsonString();
    const keys = [...text.matchAll(/^ {2}"([^"]+)":/gm)].map((m) => m[1]);
    expect(keys).toEqual([...keys].sort());
    expect(text).toContain('"inference_mode": true');
    expect(text).toContain('"lora_dropout": 0.05');
    expect(text).toContain('"target_modules": [\n    "q_proj",\n    "v_proj"\n  ]');
    expect(text).toContain('"rank_pattern": {}');
    expect(text.endsWith("}")).toBe(true);
    expect(new LoraConfig().toJsonString()).toContain('"lora_dropout": 0.0,');
    expect(new LoraConfig({ base_model_name_or_path: "modèle" }).toJsonString()).toContain('"mod\\u00e8le"');
  });

  it("reads minimal and full files, drops unknown keys, rejects wrong types with the file name", () => {
    const c = peftConfigFromDict({
      peft_type: "LORA",
      r: 8,
      lora_alpha: 16,
      target_modules: ["q_proj", "v_proj"],
      task_type: "CAUSAL_LM",
      some_future_field: 1,
    });
    expect(c.peft_type).toBe("LORA");
    expect((c as LoraConfig).lora_alpha).toBe(16);
    expect(() => peftConfigFromDict({ peft_type: "LORA", r: "eight" }, "dir/adapter_config.json")).toThrow(
      /dir\/adapter_config.json: field "r" is "eight"/,
    );
    expect(() => peftConfigFromDict({ r: 8 }, "x.json")).toThrow(/x.json: field "peft_type"/);
    const round = peftConfigFromDict(
      JSON.parse(new LoraConfig({ r: 4, target_modules: "all-linear" }).toJsonString()),
    );
    expect((round as LoraConfig).target_modules).toBe("all-linear");
  });
});

describe("PromptTuningConfig", () => {
  it("requires num_virtual_tokens and TEXT's text and tokenizer", () => {
    expect(() => new PromptTuningConfig({} as never)).toThrow(/num_virtual_tokens/);
    expect(() => new PromptTuningConfig({ num_virtual_tokens: 8, prompt_tuning_init: "TEXT" })).toThrow(
      /prompt_tuning_init_text/,
    );
    const c = new PromptTuningConfig({
      num_virtual_tokens: 8,
      prompt_tuning_init: "TEXT",
      prompt_tuning_init_text: "hi",
      tokenizer_name_or_path: "tok",
    });
    expect(c.peft_type).toBe("PROMPT_TUNING");
    expect(JSON.parse(c.toJsonString()).num_virtual_tokens).toBe(8);
  });
});

describe("target matching (spec 1.6)", () => {
  const layer = (i: number): ModuleEntry[] =>
    ["q_proj", "k_proj", "v_proj", "o_proj"]
      .map((p) => ({ name: `model.layers.${i}.self_attn.${p}`, kind: "linear" as const }))
      .concat(
        ["gate_proj", "up_proj", "down_proj"].map((p) => ({
          name: `model.layers.${i}.mlp.${p}`,
          kind: "linear" as const,
        })),
      );
  const modules: ModuleEntry[] = [
    { name: "model.embed_tokens", kind: "embedding" },
    ...layer(0),
    ...layer(1),
    { name: "model.norm", kind: "other" },
    { name: "lm_head", kind: "linear" },
  ];

  it("list entries match on a dot boundary, never a bare substring", () => {
    const r = resolveTargets(modules, new LoraConfig({ target_modules: ["q_proj", "v_proj", "nope"] }));
    expect(r.targets).toEqual([
      "model.layers.0.self_attn.q_proj",
      "model.layers.0.self_attn.v_proj",
      "model.layers.1.self_attn.q_proj",
      "model.layers.1.self_attn.v_proj",
    ]);
    expect(r.unmatched).toEqual(["nope"]);
    expect(() => resolveTargets(modules, new LoraConfig({ target_modules: ["proj"] }))).toThrow(
      /not found in the base model/,
    );
  });

  it("a string is a full-match regex; all-linear leaves out the head", () => {
    expect(
      resolveTargets(modules, new LoraConfig({ target_modules: ".*\\.1\\.mlp\\..*_proj" })).targets,
    ).toHaveLength(3);
    const all = resolveTargets(modules, new LoraConfig({ target_modules: "all-linear" }), {
      outputEmbedding: "lm_head",
    }).targets;
    expect(all).toHaveLength(14);
    expect(all).not.toContain("lm_head");
  });

  it("honours exclude_modules, modules_to_save, layers_to_transform and the per-architecture default", () => {
    const ex = resolveTargets(
      modules,
      new LoraConfig({ target_modules: ["q_proj"], exclude_modules: ["model.layers.0.self_attn.q_proj"] }),
    );
    expect(ex.targets).toEqual(["model.layers.1.self_attn.q_proj"]);
    const lt = resolveTargets(
      modules,
      new LoraConfig({
        target_modules: ["q_proj", "lm_head"],
        layers_to_transform: [1],
        modules_to_save: ["lm_head"],
      }),
    );
    expect(lt.targets).toEqual(["model.layers.1.self_attn.q_proj"]);
    expect(resolveTargets(modules, new LoraConfig(), { modelType: "qwen2" }).targets).toHaveLength(4);
    expect(() => resolveTargets(modules, new LoraConfig(), { modelType: "gpt9" })).toThrow(
      /specify target_modules/,
    );
    expect(() => resolveTargets(modules, new LoraConfig({ target_modules: ["norm"] }))).toThrow(
      /not a Linear or Embedding/,
    );
  });

  it("pattern keys and layer indices", () => {
    expect(
      getPatternKey({ q_proj: 4, "layers.1.self_attn.v_proj": 2 }, "model.layers.1.self_attn.v_proj"),
    ).toBe("layers.1.self_attn.v_proj");
    expect(getPatternKey({ q_proj: 4 }, "model.layers.1.self_attn.xq_proj")).toBeUndefined();
    expect(layerIndexOf("model.layers.12.mlp.up_proj", null)).toBe(12);
    expect(layerIndexOf("model.layers.3.mlp.up_proj", "layers")).toBe(3);
    expect(layerIndexOf("lm_head", null)).toBeNull();
  });
});

describe("saved key names (spec 5.3)", () => {
  it("drops the adapter name the way PEFT does", () => {
    expect(savedKey("model.layers.0.self_attn.q_proj.lora_A.default.weight", "default")).toBe(
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
    );
    expect(
      stripAdapterName("model.layers.0.self_attn.q_proj.lora_magnitude_vector.default.weight", "default"),
    ).toBe("model.layers.0.self_attn.q_proj.lora_magnitude_vector");
    expect(stripAdapterName("lm_head.modules_to_save.default.weight", "default")).toBe("lm_head.weight");
    expect(stripAdapterName("model.embed_tokens.lora_embedding_A.default", "default")).toBe(
      "model.embed_tokens.lora_embedding_A",
    );
    expect(stripAdapterName("model.layers.0.self_attn.q_proj.lora_A.other.weight", "other")).toBe(
      "model.layers.0.self_attn.q_proj.lora_A.weight",
    );
  });
});

describe("prompt tuning TEXT init ids (spec 4.2)", () => {
  it("tiles a short text and cuts a long one to num_virtual_tokens", async () => {
    const { tileInitIds } = await import("../src/prompt-tuning.js");
    expect(tileInitIds([1, 2, 3, 4, 5], 8)).toEqual([1, 2, 3, 4, 5, 1, 2, 3]);
    expect(tileInitIds([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 8)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(() => tileInitIds([], 8)).toThrow(/no tokens/);
  });
});
