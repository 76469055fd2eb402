// `tsgrad sft` in-process: --help lists every flag with its default, a 2-step LoRA run, YAML configs with
// flags winning, and bad input that fails with a message naming the flag, field, column or path while
// leaving output_dir untouched.

import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { main } from "../src/cli/main.js";
import { MODEL_CONFIG_SPEC, parseCli, SCRIPT_ARGS_SPEC, SFT_CONFIG_SPEC, SFT_GROUPS } from "../src/index.js";
import { PC_ROWS, TEXT_ROWS, withTempDir, writeModelDir } from "./helpers.js";

let out: string[];
let err: string[];
beforeEach(() => {
  out = [];
  err = [];
  vi.spyOn(process.stdout, "write").mockImplementation((s) => {
    out.push(String(s));
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation((s) => {
    err.push(String(s));
    return true;
  });
  vi.spyOn(console, "log").mockImplementation((...a) => void out.push(`${a.join(" ")}\n`));
  vi.spyOn(console, "warn").mockImplementation((...a) => void err.push(`${a.join(" ")}\n`));
});
afterEach(() => vi.restoreAllMocks());

const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n");

async function setup(dir: string): Promise<{ model: string; data: string; output: string }> {
  const model = join(dir, "model");
  await writeModelDir(model);
  const data = join(dir, "data.jsonl");
  await writeFile(data, jsonl(PC_ROWS));
  return { model, data, output: join(dir, "out") };
}

describe("tsgrad sft --help", () => {
  it("lists every seed flag and every config field with its default", async () => {
    expect(await main(["sft", "--help"])).toBe(0);
    const help = out.join("");
    const seed =
      "--model_name_or_path --dataset_name --use_peft --lora_r --lora_alpha --lora_dropout --lora_target_modules --lora_modules_to_save --use_rslora --use_dora --load_in_4bit --load_in_8bit --learning_rate --num_train_epochs --per_device_train_batch_size --gradient_accumulation_steps --output_dir --max_steps --logging_steps --dataset_train_split --config";
    for (const flag of seed.split(" ")) expect(help).toContain(`${flag} `);
    for (const spec of [SFT_CONFIG_SPEC, MODEL_CONFIG_SPEC, SCRIPT_ARGS_SPEC])
      for (const name of Object.keys(spec)) expect(help).toMatch(new RegExp(`--${name} .*\\(default: `));
    expect(help).toMatch(/--learning_rate FLOAT .*\(default: 0\.00002\)/);
    expect(help).toMatch(/--lora_r INT .*\(default: 16\)/);
    expect(help).toMatch(/--packing_strategy \{bfd,bfd_split,wrapped\}.*\(default: bfd\)/);
    expect(await main(["--help"])).toBe(0);
  });
});

describe("tsgrad sft", () => {
  it("runs 2 LoRA steps and saves the adapter (one --lora_target_modules value per module, kept as a list)", async () => {
    await withTempDir(async (dir) => {
      const { model, data, output } = await setup(dir);
      const code = await main([
        "sft",
        "--model_name_or_path",
        model,
        "--dataset_name",
        data,
        "--use_peft",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
        "--max_steps=2",
        "--logging_steps",
        "1",
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "2e-4",
        "--output_dir",
        output,
        "--disable_tqdm",
      ]);
      expect(err.join("")).toBe("");
      expect(code).toBe(0);
      const cfg = JSON.parse(await readFile(join(output, "adapter_config.json"), "utf8"));
      expect(cfg).toMatchObject({
        r: 16,
        lora_alpha: 32,
        lora_dropout: 0.05,
        bias: "none",
        task_type: "CAUSAL_LM",
      });
      expect([...cfg.target_modules].sort()).toEqual(["q_proj", "v_proj"]);
      expect(out.join("")).toMatch(/LoRA on 4 modules: q_proj, v_proj/);
      const log = (await readFile(join(output, "trainer_log.jsonl"), "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(log.filter((e) => "loss" in e).map((e) => e.step)).toEqual([1, 2]);
      for (const k of ["loss", "grad_norm", "learning_rate", "mean_token_accuracy", "num_tokens", "epoch"])
        expect(log[0]).toHaveProperty(k);
      expect(existsSync(join(output, "loss_curve.svg"))).toBe(true);
      expect(existsSync(join(output, "tokenizer_config.json"))).toBe(true);
    });
  });

  it("reads --config YAML, lets flags override it, and keeps a single target module as a list", async () => {
    await withTempDir(async (dir) => {
      const { model, data, output } = await setup(dir);
      const yaml = join(dir, "sft.yaml");
      await writeFile(
        yaml,
        `model_name_or_path: ${model}\ndataset_name: ${data}\nuse_peft: true\nlora_r: 4\nlora_target_modules: q_proj\nlearning_rate: 1e-3\nmax_steps: 5\nsave_strategy: "no"\ndisable_tqdm: true\n`,
      );
      expect(
        await main([
          "sft",
          "--config",
          yaml,
          "--max_steps",
          "1",
          "--output_dir",
          output,
          "--lora-alpha",
          "8",
        ]),
      ).toBe(0);
      const cfg = JSON.parse(await readFile(join(output, "adapter_config.json"), "utf8"));
      expect(cfg).toMatchObject({ r: 4, lora_alpha: 8, target_modules: ["q_proj"] });
      const log = (await readFile(join(output, "trainer_log.jsonl"), "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(log.at(-1).step).toBe(1);
    });
  });

  it("trains on a Parquet split of a Hugging Face style folder, with an eval split", async () => {
    const { writeParquet } = await import("./parquet.js");
    await withTempDir(async (dir) => {
      const { model, output } = await setup(dir);
      const data = join(dir, "ds");
      await mkdir(join(data, "data"), { recursive: true });
      await writeFile(join(data, "data", "train-00000-of-00001.parquet"), writeParquet(TEXT_ROWS));
      await writeFile(join(data, "data", "validation-00000-of-00001.jsonl"), jsonl(TEXT_ROWS.slice(0, 2)));
      const args = ["sft", "--model_name_or_path", model, "--dataset_name", data, "--output_dir", output];
      const more = [
        "--max_steps",
        "2",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "2",
        "--disable_tqdm",
        "true",
      ];
      expect(await main([...args, ...more, "--dataset_test_split", "test"])).toBe(1);
      expect(err.join("")).toMatch(
        /--dataset_test_split "test": .* has no such split \(it has "train", "validation"\)/,
      );
      expect(existsSync(output)).toBe(false);
      expect(await main([...args, ...more, "--dataset_test_split", "validation"])).toBe(0);
      const log = (await readFile(join(output, "trainer_log.jsonl"), "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(log.some((e) => "eval_loss" in e)).toBe(true);
      expect(existsSync(join(output, "model.safetensors"))).toBe(true);
    });
  });
});

describe("tsgrad sft bad input", () => {
  const cases: [
    string,
    (p: { model: string; data: string; output: string; dir: string }) => Promise<string[]>,
    RegExp,
    number,
  ][] = [
    [
      "an unknown flag",
      async (p) => ["--model_name_or_path", p.model, "--lora_rr", "4"],
      /unrecognized argument --lora_rr; did you mean --lora_r\?/,
      2,
    ],
    [
      "a bad value",
      async (p) => ["--model_name_or_path", p.model, "--lora_r", "four"],
      /--lora_r: "four" is not an integer/,
      2,
    ],
    [
      "a bad choice",
      async () => ["--lr_scheduler_type", "cosinus"],
      /--lr_scheduler_type: "cosinus" is not one of "linear", "cosine"/,
      2,
    ],
    ["a bool with junk", async () => ["--use_peft", "maybe"], /--use_peft: "maybe" is not true or false/, 2],
    [
      "a misspelt YAML field",
      async (p) => {
        const y = join(p.dir, "bad.yaml");
        await writeFile(y, `model_name_or_path: ${p.model}\nlearning_rat: 0.1\n`);
        return ["--config", y];
      },
      /unknown field "learning_rat"; did you mean "learning_rate"\?/,
      2,
    ],
    [
      "a missing model",
      async (p) => ["--model_name_or_path", join(p.dir, "nope"), "--dataset_name", p.data],
      /--model_name_or_path .*nope: not a model folder/,
      2,
    ],
    [
      "a missing dataset",
      async (p) => ["--model_name_or_path", p.model, "--dataset_name", join(p.dir, "no.jsonl")],
      /no such file or folder, and not a built-in dataset/,
      1,
    ],
    [
      "a missing column",
      async (p) => {
        const f = join(p.dir, "cols.jsonl");
        await writeFile(f, jsonl([{ question: "a", answer: "b" }]));
        return ["--model_name_or_path", p.model, "--dataset_name", f];
      },
      /column "text" is missing \(dataset_text_field\); found columns "question", "answer"/,
      1,
    ],
    [
      "a malformed row",
      async (p) => {
        const f = join(p.dir, "broken.jsonl");
        await writeFile(f, `${JSON.stringify({ text: "a" })}\n{"text": "b"\n`);
        return ["--model_name_or_path", p.model, "--dataset_name", f];
      },
      /broken\.jsonl: line 2 \(row 1\) is not valid JSON/,
      1,
    ],
    [
      "both 4 and 8 bit",
      async (p) => ["--model_name_or_path", p.model, "--load_in_4bit", "--load_in_8bit"],
      /load_in_4bit and load_in_8bit cannot both be true/,
      2,
    ],
  ];
  for (const [what, args, message, code] of cases) {
    it(`${what}: a clear error and output_dir left as it was`, async () => {
      await withTempDir(async (dir) => {
        const p = { ...(await setup(dir)), dir };
        await mkdir(p.output);
        await writeFile(join(p.output, "earlier.txt"), "keep me");
        const got = await main([
          "sft",
          "--dataset_name",
          p.data,
          "--output_dir",
          p.output,
          ...(await args(p)),
        ]);
        expect(err.join("")).toMatch(message);
        expect(got).toBe(code);
        expect(await readFile(join(p.output, "earlier.txt"), "utf8")).toBe("keep me");
        const { readdir } = await import("node:fs/promises");
        expect(await readdir(p.output)).toEqual(["earlier.txt"]);
      });
    });
  }

  it("an unknown command", async () => {
    expect(await main(["dpo"])).toBe(2);
    expect(err.join("")).toMatch(/unknown command "dpo"; expected one of sft/);
  });
});

describe("parseCli", () => {
  it("reads bools, negations, lists, dashes, = values and None", () => {
    const { values } = parseCli(
      [
        "--use_peft",
        "--no_gradient_checkpointing",
        "--lora-target-modules",
        "all-linear",
        "--lora_dropout=0.1",
        "--max_length",
        "None",
        "--packing",
        "false",
      ],
      SFT_GROUPS,
    );
    expect(values).toEqual({
      use_peft: true,
      gradient_checkpointing: false,
      lora_target_modules: ["all-linear"],
      lora_dropout: 0.1,
      max_length: null,
      packing: false,
    });
    expect(() => parseCli(["--lora_r", "1", "2"], SFT_GROUPS)).toThrow(
      /--lora_r expects one value, got 2: 1 2/,
    );
    expect(() => parseCli(["--lora_target_modules"], SFT_GROUPS)).toThrow(/expects one or more values/);
    expect(() => parseCli(["q_proj"], SFT_GROUPS)).toThrow(/unexpected argument "q_proj"/);
  });
});
