// Checkpoints as the Trainer writes them: output_dir/checkpoint-N/ with the model (the adapter when PEFT
// is on), the tokenizer, optimizer, scheduler and RNG state, and trainer_state.json. Each is written in a
// temporary folder and renamed into place, so a crash never leaves a half-written checkpoint-N.

import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  type AdamW,
  type CausalLM,
  type LRScheduler,
  loadWeights,
  openSafetensors,
  type PreTrainedTokenizer,
  saveSafetensors,
  writeFileAtomic,
} from "@tsgrad/nn";
import { loadAdapterWeights, PeftModel } from "@tsgrad/peft";
import { getRngState, type RngState, setRngState, type Tensor } from "@tsgrad/tensor";
import type { LogEntry } from "./report.js";

export const TRAINER_STATE = "trainer_state.json";
export const OPTIMIZER_WEIGHTS = "optimizer.safetensors";
export const OPTIMIZER_META = "optimizer.json";
export const SCHEDULER_STATE = "scheduler.json";
export const RNG_STATE = "rng_state.json";
export const TRAINING_ARGS = "training_args.json";
export const CHECKPOINT_PREFIX = "checkpoint-";

export interface TrainerState {
  global_step: number;
  epoch: number;
  max_steps: number;
  num_train_epochs: number;
  logging_steps: number;
  save_steps: number;
  eval_steps: number | null;
  train_batch_size: number;
  num_input_tokens_seen: number;
  log_history: LogEntry[];
}

/** The model files: adapter_config.json + adapter_model.safetensors with PEFT, else config.json + weights. */
export async function saveModelFiles(
  model: CausalLM | PeftModel,
  tokenizer: PreTrainedTokenizer | null,
  dir: string,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await model.savePretrained(dir);
  if (tokenizer) await tokenizer.savePretrained(dir);
}

export interface CheckpointParts {
  model: CausalLM | PeftModel;
  tokenizer: PreTrainedTokenizer | null;
  optimizer: AdamW;
  scheduler: LRScheduler;
  state: TrainerState;
  args: object;
  saveOnlyModel: boolean;
}

/** Writes output_dir/checkpoint-<step> atomically and prunes to `limit` checkpoints; returns its path. */
export async function writeCheckpoint(
  outputDir: string,
  parts: CheckpointParts,
  limit: number | null,
): Promise<string> {
  const step = parts.state.global_step;
  const final = join(outputDir, `${CHECKPOINT_PREFIX}${step}`);
  const tmp = join(
    outputDir,
    `.tmp-${CHECKPOINT_PREFIX}${step}-${process.pid}-${randomBytes(3).toString("hex")}`,
  );
  try {
    await saveModelFiles(parts.model, parts.tokenizer, tmp);
    if (!parts.saveOnlyModel) {
      const { tensors, meta } = parts.optimizer.stateDict();
      await saveSafetensors(join(tmp, OPTIMIZER_WEIGHTS), tensors);
      await writeFileAtomic(join(tmp, OPTIMIZER_META), `${JSON.stringify(meta, null, 2)}\n`);
      await writeFileAtomic(
        join(tmp, SCHEDULER_STATE),
        `${JSON.stringify(parts.scheduler.stateDict(), null, 2)}\n`,
      );
      await writeFileAtomic(join(tmp, RNG_STATE), `${JSON.stringify(getRngState())}\n`);
    }
    await writeFileAtomic(join(tmp, TRAINER_STATE), `${JSON.stringify(parts.state, null, 2)}\n`);
    await writeFileAtomic(join(tmp, TRAINING_ARGS), `${JSON.stringify(parts.args, null, 2)}\n`);
    if (existsSync(final)) await rm(final, { recursive: true, force: true });
    await rename(tmp, final);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  if (limit !== null) await pruneCheckpoints(outputDir, limit);
  return final;
}

/** checkpoint-N folders of output_dir, oldest (smallest N) first. */
export async function listCheckpoints(outputDir: string): Promise<string[]> {
  if (!existsSync(outputDir)) return [];
  const names = (await readdir(outputDir, { withFileTypes: true }))
    .filter((e) => e.isDirectory() && /^checkpoint-\d+$/.test(e.name))
    .map((e) => e.name);
  return names
    .sort((a, b) => Number(a.slice(CHECKPOINT_PREFIX.length)) - Number(b.slice(CHECKPOINT_PREFIX.length)))
    .map((n) => join(outputDir, n));
}

export async function pruneCheckpoints(outputDir: string, limit: number): Promise<void> {
  const all = await listCheckpoints(outputDir);
  for (const dir of all.slice(0, Math.max(0, all.length - Math.max(limit, 1))))
    await rm(dir, { recursive: true, force: true });
}

async function readJson<T>(path: string): Promise<T> {
  if (!existsSync(path)) throw new Error(`resume_from_checkpoint: ${path} is missing`);
  try {
    return JSON.parse(await readFile(path, "utf8")) as T;
  } catch (e) {
    throw new Error(`resume_from_checkpoint: ${path} is not valid JSON (${(e as Error).message})`);
  }
}

/** Everything a resumed run needs from a checkpoint, read and checked before anything is changed. */
export async function readCheckpoint(dir: string): Promise<{
  state: TrainerState;
  optimizer: ReturnType<AdamW["stateDict"]>;
  scheduler: { last_step: number; base_lr: number };
  rng: RngState;
}> {
  if (!existsSync(dir)) throw new Error(`resume_from_checkpoint: ${dir} does not exist`);
  const state = await readJson<TrainerState>(join(dir, TRAINER_STATE));
  if (!existsSync(join(dir, OPTIMIZER_WEIGHTS)))
    throw new Error(
      `resume_from_checkpoint: ${dir} has no optimizer state (was it saved with save_only_model?)`,
    );
  const meta = await readJson<ReturnType<AdamW["stateDict"]>["meta"]>(join(dir, OPTIMIZER_META));
  const reader = await openSafetensors(join(dir, OPTIMIZER_WEIGHTS));
  const tensors = new Map<string, Tensor>();
  try {
    for (const k of reader.keys()) tensors.set(k, await reader.tensor(k));
  } finally {
    await reader.close();
  }
  return {
    state,
    optimizer: { tensors, meta },
    scheduler: await readJson(join(dir, SCHEDULER_STATE)),
    rng: await readJson(join(dir, RNG_STATE)),
  };
}

/** Loads a checkpoint's trainable weights into the model (the adapter, or the whole model). */
export async function loadModelFiles(model: CausalLM | PeftModel, dir: string): Promise<void> {
  if (model instanceof PeftModel) await loadAdapterWeights(model, dir, model.activeAdapter);
  else
    await loadWeights(model, dir, {
      ignore: (k) => (model.lm_head === null && k === "lm_head.weight") || k.endsWith(".rotary_emb.inv_freq"),
    });
}

/** Restores the RNG after the rest of the checkpoint is loaded. */
export function restoreRng(rng: RngState): void {
  setRngState(rng);
}
