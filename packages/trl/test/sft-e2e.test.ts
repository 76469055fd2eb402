// End-to-end SFT on a tiny Qwen2: LoRA, DoRA and prompt tuning each lower the loss, and the saved adapter
// reloads onto a fresh base and reproduces the trained model's logits.

import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AutoModelForCausalLM, isQuantizedLinear } from "@tsgrad/nn";
import { LoraConfig, PeftModel, PromptTuningConfig } from "@tsgrad/peft";
import { noGrad, tensor } from "@tsgrad/tensor";
import { describe, expect, it } from "vitest";
import {
  dftLoss,
  getPeftConfig,
  getQuantizationConfig,
  ModelConfig,
  type SFTConfigFields,
  SFTTrainer,
} from "../src/index.js";
import { makeModel, makeTokenizer, TEXT_ROWS, withTempDir, writeModelDir } from "./helpers.js";

const probe = { input_ids: [[20, 8, 5, 0, 19, 11, 25]], attention_mask: [[1, 1, 1, 1, 1, 1, 1]] };

async function trainAndReload(peft_config: LoraConfig | PromptTuningConfig, lr: number) {
  return withTempDir(async (dir) => {
    const trainer = new SFTTrainer({
      model: makeModel(1),
      args: {
        output_dir: dir,
        learning_rate: lr,
        max_steps: 30,
        per_device_train_batch_size: 4,
        logging_steps: 5,
        save_strategy: "no",
        disable_tqdm: true,
        lr_scheduler_type: "constant",
      },
      train_dataset: TEXT_ROWS,
      peft_config,
      processing_class: makeTokenizer(),
    });
    const out = await trainer.train();
    expect(out.global_step).toBe(30);
    const losses = trainer.state!.log_history.filter((e) => e.loss !== undefined).map((e) => e.loss!);
    expect(losses.length).toBe(6);
    const model = trainer.model as PeftModel;
    model.eval();
    const trained = noGrad(() => model.forward(probe).logits).dataSync();
    await trainer.saveModel(join(dir, "final"));
    expect(existsSync(join(dir, "final", "adapter_model.safetensors"))).toBe(true);
    expect(existsSync(join(dir, "final", "tokenizer.json"))).toBe(true);
    expect(existsSync(join(dir, "trainer_log.jsonl"))).toBe(true);
    expect(await readFile(join(dir, "loss_curve.svg"), "utf8")).toMatch(/<svg[\s\S]*polyline/);
    const reloaded = await PeftModel.fromPretrained(makeModel(1), join(dir, "final"));
    reloaded.eval();
    const again = noGrad(() => reloaded.forward(probe).logits).dataSync();
    return { losses, trained, again };
  });
}

describe("SFTTrainer end to end", () => {
  it("LoRA lowers the loss and the saved adapter reproduces the logits", async () => {
    const { losses, trained, again } = await trainAndReload(
      new LoraConfig({ r: 4, lora_alpha: 8, target_modules: "all-linear", task_type: "CAUSAL_LM" }),
      2e-2,
    );
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.8);
    expect([...again]).toEqual([...trained]);
  });

  it("DoRA lowers the loss and reloads", async () => {
    const { losses, trained, again } = await trainAndReload(
      new LoraConfig({
        r: 4,
        lora_alpha: 8,
        target_modules: ["q_proj", "v_proj", "down_proj"],
        use_dora: true,
      }),
      2e-2,
    );
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.9);
    expect([...again]).toEqual([...trained]);
  });

  it("prompt tuning lowers the loss and reloads", async () => {
    const { losses, trained, again } = await trainAndReload(
      new PromptTuningConfig({ num_virtual_tokens: 4, task_type: "CAUSAL_LM" }),
      3e-2,
    );
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    expect([...again]).toEqual([...trained]);
  });
});

describe("QLoRA", () => {
  it("a 4-bit NF4 base from a folder trains a LoRA adapter that lowers the loss and reloads onto the quantized base", async () => {
    await withTempDir(async (dir) => {
      await writeModelDir(join(dir, "model"), 1);
      const quantization_config = getQuantizationConfig(new ModelConfig({ load_in_4bit: true }));
      expect(quantization_config?.bnb_4bit_quant_type).toBe("nf4");
      const trainer = new SFTTrainer({
        model: join(dir, "model"),
        args: {
          output_dir: join(dir, "out"),
          learning_rate: 2e-2,
          max_steps: 20,
          per_device_train_batch_size: 4,
          logging_steps: 5,
          disable_tqdm: true,
          lr_scheduler_type: "constant",
        },
        train_dataset: TEXT_ROWS,
        peft_config: getPeftConfig(
          new ModelConfig({ use_peft: true, lora_r: 4, lora_alpha: 8, lora_target_modules: ["all-linear"] }),
        ),
        quantization_config,
      });
      await trainer.train();
      const losses = trainer.state!.log_history.filter((e) => e.loss !== undefined).map((e) => e.loss!);
      expect(losses.at(-1)!).toBeLessThan(losses[0]! - 0.2);
      const model = trainer.model as PeftModel;
      expect([...model.model.namedModules()].some(([, m]) => isQuantizedLinear(m))).toBe(true);
      model.eval();
      const trained = noGrad(() => model.forward(probe).logits).dataSync();
      await trainer.saveModel();
      const base = await AutoModelForCausalLM.fromPretrained(join(dir, "model"), {
        quantization_config: quantization_config!,
      });
      const reloaded = await PeftModel.fromPretrained(base, join(dir, "out"));
      reloaded.eval();
      expect([...noGrad(() => reloaded.forward(probe).logits).dataSync()]).toEqual([...trained]);
    });
  });
});

describe("SFT options", () => {
  it("dft loss: -p log p of each target over the item count (hand-derived)", () => {
    // Two positions with uniform logits over V = 2: p = 1/2 for the one target, so the loss is ln2 / 2 / 1.
    const logits = tensor([
      [
        [0, 0],
        [0, 0],
      ],
    ]);
    const loss = dftLoss(logits, tensor([[-100, 1]], { dtype: "int32" }), 1).itemSync();
    expect(loss).toBeCloseTo(Math.log(2) / 2, 6);
  });

  it("a packed row's loss is the loss of its sequences run apart (no attention across them)", async () => {
    await withTempDir(async (dir) => {
      const data = [{ text: "the cat sat on the mat." }, { text: "a dog ran." }, { text: "hi there!" }];
      const firstLoss = async (name: string, args: Partial<SFTConfigFields>): Promise<number> => {
        const trainer = new SFTTrainer({
          model: makeModel(1),
          args: {
            output_dir: join(dir, name),
            max_steps: 1,
            logging_steps: 1,
            learning_rate: 0,
            per_device_train_batch_size: 3,
            disable_tqdm: true,
            save_strategy: "no",
            ...args,
          },
          train_dataset: data,
          processing_class: makeTokenizer(),
        });
        await trainer.train();
        // packed: all three in one row; padding-free: each batch becomes one row
        if (args.packing) expect(trainer.trainDataset).toHaveLength(1);
        const collate = (trainer as unknown as { collate(e: unknown[]): { input_ids: number[][] } }).collate;
        const rows = collate.call(trainer, [...trainer.trainDataset]).input_ids.length;
        expect(rows).toBe(args.padding_free || args.packing ? 1 : 3);
        return trainer.state!.log_history.find((e) => "loss" in e)!.loss as number;
      };
      const apart = await firstLoss("apart", { max_length: 64 });
      expect(await firstLoss("packed", { packing: true, max_length: 64 })).toBeCloseTo(apart, 5);
      // padding-free without packing: the batch as one row of three sequences
      expect(await firstLoss("free", { padding_free: true, max_length: null })).toBeCloseTo(apart, 5);
    });
  });

  it("packs with bfd and trains with the dft loss and a chat template file", async () => {
    await withTempDir(async (dir) => {
      const template = join(dir, "t.jinja");
      await writeFile(template, "{% for m in messages %}{{ m.role }}: {{ m.content }}<|im_end|>{% endfor %}");
      const trainer = new SFTTrainer({
        model: makeModel(1),
        args: {
          output_dir: dir,
          max_steps: 2,
          packing: true,
          max_length: 64,
          loss_type: "dft",
          chat_template_path: template,
          disable_tqdm: true,
        },
        train_dataset: [
          {
            messages: [
              { role: "user", content: "hi" },
              { role: "assistant", content: "yo" },
            ],
          },
          {
            messages: [
              { role: "user", content: "a" },
              { role: "assistant", content: "b" },
            ],
          },
        ],
        peft_config: new LoraConfig({ r: 2 }),
        processing_class: makeTokenizer(),
      });
      await trainer.train();
      expect(trainer.trainDataset).toHaveLength(1);
      expect(trainer.trainDataset[0]!.seq_lengths).toEqual([23, 21]); // "user: hi<|im_end|>assistant: yo<|im_end|>" is 23 tokens
      expect(trainer.state!.global_step).toBe(2);
    });
  });
});
