// Configs: TRL's defaults, unknown fields with suggestions, ModelConfig and its helpers (spec 9.2, 9.3,
// 12 item 14), and dataset files (JSON, JSONL, Parquet, folders, built-ins).

import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BitsAndBytesConfig } from "@tsgrad/nn";
import { describe, expect, it } from "vitest";
import {
  BUILTIN_DATASETS,
  getKbitDeviceMap,
  getPeftConfig,
  getQuantizationConfig,
  loadDataset,
  ModelConfig,
  ScriptArguments,
  SFTConfig,
} from "../src/index.js";
import { withTempDir } from "./helpers.js";
import { writeParquet } from "./parquet.js";

describe("SFTConfig", () => {
  it("has TRL's defaults", () => {
    expect(new SFTConfig()).toMatchObject({
      learning_rate: 2e-5,
      per_device_train_batch_size: 8,
      gradient_accumulation_steps: 1,
      num_train_epochs: 3,
      max_steps: -1,
      max_length: 1024,
      packing: false,
      packing_strategy: "bfd",
      completion_only_loss: null,
      assistant_only_loss: false,
      dataset_text_field: "text",
      logging_steps: 10,
      save_steps: 500,
      save_total_limit: null,
      eval_steps: null,
      eval_strategy: "no",
      lr_scheduler_type: "linear",
      warmup_ratio: 0,
      warmup_steps: 0,
      weight_decay: 0,
      adam_beta1: 0.9,
      adam_beta2: 0.999,
      adam_epsilon: 1e-8,
      max_grad_norm: 1,
      seed: 42,
      gradient_checkpointing: true,
      resume_from_checkpoint: null,
      truncation_mode: "keep_start",
    });
  });

  it("rejects unknown fields naming the closest known one, and bad values naming the field", () => {
    expect(() => new SFTConfig({ learning_rat: 1 } as never)).toThrow(
      /unknown field "learning_rat"; did you mean "learning_rate"\?/,
    );
    expect(() => new SFTConfig({ packing_stratgy: "bfd" } as never)).toThrow(
      /did you mean "packing_strategy"/,
    );
    expect(() => new SFTConfig({ zzzzzzzz: 1 } as never)).toThrow(/unknown field "zzzzzzzz"$/);
    expect(() => new SFTConfig({ max_steps: 1.5 })).toThrow(/field "max_steps" is 1.5; expected an integer/);
    expect(() => new SFTConfig({ lr_scheduler_type: "cosinus" as never })).toThrow(
      /one of "linear", "cosine"/,
    );
    expect(() => new SFTConfig({ per_device_train_batch_size: 0 })).toThrow(
      /per_device_train_batch_size.*>= 1/,
    );
    expect(() => new SFTConfig({ padding_free: true })).toThrow(
      /padding_free.*without packing needs max_length null/,
    );
    expect(new SFTConfig({ padding_free: true, max_length: null }).padding_free).toBe(true);
    expect(new SFTConfig({ eval_strategy: "steps", logging_steps: 7 }).eval_steps).toBe(7);
  });
});

describe("ModelConfig and the helpers", () => {
  it("--use_peft gives LoraConfig(r=16, alpha=32, dropout 0.05, bias none, CAUSAL_LM, default targets)", () => {
    expect(getPeftConfig(new ModelConfig())).toBeNull();
    const c = getPeftConfig(new ModelConfig({ use_peft: true }))!;
    expect(c).toMatchObject({
      r: 16,
      lora_alpha: 32,
      lora_dropout: 0.05,
      bias: "none",
      task_type: "CAUSAL_LM",
      target_modules: null,
    });
    expect(c.scaling()).toBe(2);
    const rs = getPeftConfig(
      new ModelConfig({
        use_peft: true,
        use_rslora: true,
        use_dora: true,
        lora_modules_to_save: ["lm_head"],
      }),
    )!;
    expect(rs).toMatchObject({ use_rslora: true, use_dora: true, modules_to_save: ["lm_head"] });
  });

  it("one target module stays a list; exactly all-linear becomes the string (pain point 2)", () => {
    expect(
      getPeftConfig(new ModelConfig({ use_peft: true, lora_target_modules: ["q_proj"] }))!.target_modules,
    ).toEqual(["q_proj"]);
    expect(
      getPeftConfig(new ModelConfig({ use_peft: true, lora_target_modules: ["all-linear"] }))!.target_modules,
    ).toBe("all-linear");
  });

  it("--load_in_4bit -> nf4, no double quant, compute dtype = --dtype; --load_in_8bit; both is an error", () => {
    expect(getQuantizationConfig(new ModelConfig())).toBeNull();
    const q4 = getQuantizationConfig(new ModelConfig({ load_in_4bit: true }))!;
    expect(q4).toBeInstanceOf(BitsAndBytesConfig);
    expect(q4).toMatchObject({
      load_in_4bit: true,
      bnb_4bit_quant_type: "nf4",
      bnb_4bit_use_double_quant: false,
      bnb_4bit_compute_dtype: "float32",
    });
    const nested = getQuantizationConfig(
      new ModelConfig({ load_in_4bit: true, use_bnb_nested_quant: true, dtype: "bfloat16" }),
    )!;
    expect(nested).toMatchObject({ bnb_4bit_use_double_quant: true, bnb_4bit_compute_dtype: "bfloat16" });
    expect(getQuantizationConfig(new ModelConfig({ load_in_8bit: true }))).toMatchObject({
      load_in_8bit: true,
      load_in_4bit: false,
    });
    expect(() => new ModelConfig({ load_in_4bit: true, load_in_8bit: true })).toThrow(/cannot both be true/);
    expect(() => getQuantizationConfig(new ModelConfig({ load_in_4bit: true, dtype: "auto" }))).toThrow(
      /"auto" is not a dtype/,
    );
    expect(getKbitDeviceMap()).toBeNull();
  });

  it("ScriptArguments defaults", () => {
    expect(new ScriptArguments()).toMatchObject({
      dataset_name: null,
      dataset_train_split: "train",
      dataset_test_split: "test",
    });
  });
});

describe("loadDataset", () => {
  it("reads JSON arrays, JSON split objects, JSON lines, Parquet, folders and built-in names", async () => {
    await withTempDir(async (dir) => {
      const rows = [{ text: "a" }, { text: "b" }];
      await writeFile(join(dir, "arr.json"), JSON.stringify(rows));
      await writeFile(join(dir, "splits.json"), JSON.stringify({ train: rows, test: rows.slice(1) }));
      await writeFile(join(dir, "lines.json"), rows.map((r) => JSON.stringify(r)).join("\n"));
      await writeFile(join(dir, "t.parquet"), writeParquet(rows));
      expect(await loadDataset(join(dir, "arr.json"))).toEqual({ train: rows });
      expect(await loadDataset(join(dir, "splits.json"))).toEqual({ train: rows, test: [{ text: "b" }] });
      expect(await loadDataset(join(dir, "lines.json"))).toEqual({ train: rows });
      expect(await loadDataset(join(dir, "t.parquet"))).toEqual({ train: rows });
      await mkdir(join(dir, "folder", "data"), { recursive: true });
      await writeFile(join(dir, "folder", "data", "train-00000-of-00002.parquet"), writeParquet(rows));
      await writeFile(
        join(dir, "folder", "data", "train-00001-of-00002.parquet"),
        writeParquet([{ text: "c" }]),
      );
      await writeFile(join(dir, "folder", "data", "test.jsonl"), JSON.stringify({ text: "t" }));
      expect(await loadDataset(join(dir, "folder"))).toEqual({
        train: [...rows, { text: "c" }],
        test: [{ text: "t" }],
      });
      BUILTIN_DATASETS["tiny-test"] = join(dir, "arr.json");
      try {
        expect(await loadDataset("tiny-test")).toEqual({ train: rows });
      } finally {
        delete BUILTIN_DATASETS["tiny-test"];
      }
      await expect(loadDataset("tiny-test")).rejects.toThrow(/not a built-in dataset/);
      await writeFile(join(dir, "bad.parquet"), "not parquet");
      await expect(loadDataset(join(dir, "bad.parquet"))).rejects.toThrow(/not a readable Parquet file/);
      await writeFile(join(dir, "bad.json"), "[1, 2]");
      await expect(loadDataset(join(dir, "bad.json"))).rejects.toThrow(/row 0 is not a JSON object/);
    });
  });
});
