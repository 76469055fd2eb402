// The training loop: gradient accumulation equals the large batch, resuming equals an uninterrupted run,
// checkpoints are complete and pruned, frozen weights stay frozen, evaluation, memory stays flat.

import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { LoraConfig, type PeftModel } from "@tsgrad/peft";
import { getBackend, noGrad } from "@tsgrad/tensor";
import { describe, expect, it } from "vitest";
import { type LogEntry, type SFTConfigFields, SFTTrainer } from "../src/index.js";
import { makeModel, makeTokenizer, PC_ROWS, TEXT_ROWS, withTempDir, writeModelDir } from "./helpers.js";

const ROWS = [
  ...PC_ROWS,
  { prompt: "what is ice?", completion: " ice is hard and cold." },
  { prompt: "q:", completion: " a" },
  { prompt: "the sea", completion: " is deep." },
  { prompt: "fire, wind, rain:", completion: " bright, fast, wet." },
];
const lora = (dropout = 0) =>
  new LoraConfig({
    r: 4,
    lora_alpha: 8,
    lora_dropout: dropout,
    target_modules: ["q_proj", "v_proj", "up_proj"],
  });

function trainer(
  dir: string,
  args: Partial<SFTConfigFields>,
  extra: { callbacks?: SFTTrainer["callbacks"]; dropout?: number } = {},
) {
  return new SFTTrainer({
    model: makeModel(3),
    args: {
      output_dir: dir,
      learning_rate: 1e-2,
      logging_steps: 1,
      disable_tqdm: true,
      save_strategy: "no",
      ...args,
    },
    train_dataset: ROWS,
    peft_config: lora(extra.dropout),
    processing_class: makeTokenizer(),
    callbacks: extra.callbacks,
  });
}

const losses = (h: LogEntry[]) => h.filter((e) => e.loss !== undefined);
const trainable = (t: SFTTrainer) =>
  new Map(
    [...t.model.namedParameters()].filter(([, p]) => p.requiresGrad).map(([k, p]) => [k, [...p.dataSync()]]),
  );

describe("gradient accumulation", () => {
  it("4 micro-batches of 2 equal one batch of 8 (loss, grad_norm and parameters after two steps)", async () => {
    await withTempDir(async (dir) => {
      const big = trainer(join(dir, "a"), {
        per_device_train_batch_size: 8,
        gradient_accumulation_steps: 1,
        max_steps: 2,
      });
      const small = trainer(join(dir, "b"), {
        per_device_train_batch_size: 2,
        gradient_accumulation_steps: 4,
        max_steps: 2,
      });
      await big.train();
      await small.train();
      const [a, b] = [losses(big.state!.log_history), losses(small.state!.log_history)];
      expect(a.length).toBe(2);
      for (let i = 0; i < 2; i++) {
        expect(b[i]!.loss).toBeCloseTo(a[i]!.loss!, 5);
        expect(b[i]!.grad_norm).toBeCloseTo(a[i]!.grad_norm!, 5);
        expect(b[i]!.num_tokens).toBe(a[i]!.num_tokens);
      }
      const [pa, pb] = [trainable(big), trainable(small)];
      for (const [k, v] of pa)
        for (let i = 0; i < v.length; i++) expect(Math.abs(v[i]! - pb.get(k)![i]!), k).toBeLessThan(1e-5);
    });
  });

  it("the first logged loss is the token mean over the whole batch (not a mean of per-example means)", async () => {
    await withTempDir(async (dir) => {
      const t = trainer(dir, {
        per_device_train_batch_size: 2,
        gradient_accumulation_steps: 4,
        max_steps: 1,
      });
      await t.ready();
      const model = t.model as PeftModel;
      model.train();
      const all = t.trainDataset;
      const T = Math.max(...all.map((e) => e.input_ids.length));
      const pad = (xs: number[], v: number) => [...xs, ...new Array<number>(T - xs.length).fill(v)];
      const expected = noGrad(() =>
        model
          .forward({
            input_ids: all.map((e) => pad(e.input_ids, 0)),
            attention_mask: all.map((e) =>
              pad(
                e.input_ids.map(() => 1),
                0,
              ),
            ),
            labels: all.map((e) => pad(e.labels, -100)),
          })
          .loss!.itemSync(),
      );
      await t.train();
      expect(losses(t.state!.log_history)[0]!.loss).toBeCloseTo(expected, 5);
    });
  });
});

describe("checkpoints and resume", () => {
  it("resuming from checkpoint-2 gives the same losses and weights as an uninterrupted run", async () => {
    await withTempDir(async (dir) => {
      const args = {
        per_device_train_batch_size: 2,
        max_steps: 6,
        save_strategy: "steps" as const,
        save_steps: 2,
      };
      const full = trainer(join(dir, "full"), args, { dropout: 0.1 });
      await full.train();
      const cut = trainer(join(dir, "cut"), args, {
        dropout: 0.1,
        callbacks: [{ onStepEnd: (s) => s.global_step === 2 }],
      });
      await cut.train();
      expect(cut.state!.global_step).toBe(2);
      const resumed = trainer(
        join(dir, "cut"),
        { ...args, resume_from_checkpoint: join(dir, "cut", "checkpoint-2") },
        { dropout: 0.1 },
      );
      await resumed.train();
      const want = losses(full.state!.log_history);
      const got = losses(resumed.state!.log_history);
      expect(got.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6]);
      for (let i = 0; i < 6; i++) {
        expect(got[i]!.loss).toBeCloseTo(want[i]!.loss!, 6);
        expect(got[i]!.learning_rate).toBeCloseTo(want[i]!.learning_rate!, 10);
      }
      expect(trainable(resumed)).toEqual(trainable(full));
      const jsonl = (await readFile(join(dir, "cut", "trainer_log.jsonl"), "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(jsonl.filter((e) => e.loss !== undefined).map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6]);
    });
  });

  it("writes complete checkpoints atomically and keeps save_total_limit of them; resume 'true' finds the newest", async () => {
    await withTempDir(async (dir) => {
      const t = trainer(dir, {
        per_device_train_batch_size: 4,
        max_steps: 3,
        save_strategy: "steps",
        save_steps: 1,
        save_total_limit: 2,
      });
      await t.train();
      const names = (await readdir(dir)).sort();
      expect(names.filter((n) => n.startsWith("checkpoint-"))).toEqual(["checkpoint-2", "checkpoint-3"]);
      expect(names.some((n) => n.startsWith(".tmp"))).toBe(false);
      for (const f of [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "optimizer.safetensors",
        "optimizer.json",
        "scheduler.json",
        "rng_state.json",
        "trainer_state.json",
      ])
        expect(existsSync(join(dir, "checkpoint-3", f)), f).toBe(true);
      const state = JSON.parse(await readFile(join(dir, "checkpoint-3", "trainer_state.json"), "utf8"));
      expect(state.global_step).toBe(3);
      const more = trainer(dir, {
        per_device_train_batch_size: 4,
        max_steps: 4,
        resume_from_checkpoint: "true",
      });
      await more.train();
      expect(losses(more.state!.log_history).map((e) => e.step)).toEqual([1, 2, 3, 4]);
    });
  });
});

describe("full fine-tuning from a model folder", () => {
  it("loads model and tokenizer from the path, trains every weight, saves config and weights", async () => {
    await withTempDir(async (dir) => {
      await writeModelDir(join(dir, "model"));
      const t = new SFTTrainer({
        model: join(dir, "model"),
        args: {
          output_dir: join(dir, "out"),
          max_steps: 2,
          per_device_train_batch_size: 4,
          learning_rate: 1e-3,
          disable_tqdm: true,
        },
        train_dataset: TEXT_ROWS,
      });
      await t.ready();
      const before = new Map([...t.model.namedParameters()].map(([k, p]) => [k, [...p.dataSync()]]));
      await t.train();
      for (const [k, p] of t.model.namedParameters()) expect([...p.dataSync()], k).not.toEqual(before.get(k));
      await t.saveModel();
      expect(existsSync(join(dir, "out", "model.safetensors"))).toBe(true);
      expect(existsSync(join(dir, "out", "config.json"))).toBe(true);
    });
  });

  it("with LoRA, every adapter weight moves (lora_B too) and no base weight does", async () => {
    await withTempDir(async (dir) => {
      const t = trainer(dir, { per_device_train_batch_size: 4, max_steps: 2 });
      await t.ready();
      const before = new Map([...t.model.namedParameters()].map(([k, p]) => [k, [...p.dataSync()]]));
      await t.train();
      let moved = 0;
      for (const [k, p] of t.model.namedParameters()) {
        if (p.requiresGrad) {
          expect([...p.dataSync()], k).not.toEqual(before.get(k));
          moved++;
        } else expect([...p.dataSync()], k).toEqual(before.get(k));
      }
      expect(moved).toBe(2 * 3 * 2); // 2 layers x 3 targets x (A, B)
    });
  });
});

describe("evaluation and memory", () => {
  it("evaluates every eval_steps and returns the token-mean eval_loss", async () => {
    await withTempDir(async (dir) => {
      const t = new SFTTrainer({
        model: makeModel(3),
        args: {
          output_dir: dir,
          max_steps: 4,
          eval_strategy: "steps",
          eval_steps: 2,
          disable_tqdm: true,
          per_device_eval_batch_size: 3,
        },
        train_dataset: ROWS,
        eval_dataset: ROWS,
        peft_config: lora(),
        processing_class: makeTokenizer(),
      });
      await t.train();
      expect(t.state!.log_history.filter((e) => e.eval_loss !== undefined).map((e) => e.step)).toEqual([
        2, 4,
      ]);
      const m = await t.evaluate();
      const one = await t.evaluate(t.evalDataset!.slice());
      expect(one.eval_loss).toBe(m.eval_loss);
      expect(m.eval_mean_token_accuracy).toBeGreaterThanOrEqual(0);
      expect(Number.isFinite(m.eval_loss)).toBe(true);
    });
  });

  it.each([false, true])(
    "live bytes stay flat across steps (gradient_checkpointing %s)",
    async (gradient_checkpointing) => {
      await withTempDir(async (dir) => {
        const bytes: number[] = [];
        const t = trainer(
          dir,
          {
            per_device_train_batch_size: 2,
            gradient_accumulation_steps: 2,
            max_steps: 6,
            gradient_checkpointing,
          },
          { callbacks: [{ onStepEnd: () => void bytes.push(getBackend().liveBytes()) }] },
        );
        await t.train();
        expect(bytes[5]).toBe(bytes[2]);
      });
    },
  );
});
