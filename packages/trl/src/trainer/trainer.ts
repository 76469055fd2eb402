// The training loop every trainer shares (transformers' Trainer, trimmed to what SFT/DPO/GRPO need):
// epochs of seeded shuffled micro-batches, gradient accumulation normalized by the number of items in the
// whole accumulation window, global-norm clipping, AdamW and a schedule, logging, evaluation, checkpoints
// and resuming. A subclass implements collation and computeLoss (style guide 3.11).

import { mkdir } from "node:fs/promises";
import {
  AdamW,
  type CausalLM,
  clipGradNorm,
  getScheduler,
  getWarmupSteps,
  type LRScheduler,
  type Parameter,
  type PreTrainedTokenizer,
  RMSNorm,
} from "@tsgrad/nn";
import type { PeftModel } from "@tsgrad/peft";
import { manualSeed, noGrad, type Tensor, tidy } from "@tsgrad/tensor";
import type { FieldsOf } from "../config/fields.js";
import type { TRAINING_ARGS_SPEC } from "../config/training-args.js";
import {
  listCheckpoints,
  loadModelFiles,
  readCheckpoint,
  restoreRng,
  saveModelFiles,
  type TrainerState,
  writeCheckpoint,
} from "./checkpoint.js";
import { type LogEntry, RunReport } from "./report.js";

export type TrainingArgs = FieldsOf<typeof TRAINING_ARGS_SPEC>;
export type TrainableModel = CausalLM | PeftModel;

/** Per-batch sums a subclass reports (e.g. correct predictions); the trainer adds them up per interval. */
export type Stats = Record<string, number>;

export interface TrainerCallback {
  /** After each optimizer step (and its logging, evaluation and saving); return true to stop training. */
  onStepEnd?(state: TrainerState): boolean | undefined;
  onLog?(entry: LogEntry): void;
}

export interface TrainOutput {
  global_step: number;
  training_loss: number;
  metrics: LogEntry;
}

/** Seeded permutation of 0..n-1 (mulberry32 + Fisher-Yates), one per epoch, so a resumed run sees the same order. */
export function epochPermutation(n: number, seed: number, epoch: number): number[] {
  let a = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b)) >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

export abstract class Trainer<E, B> {
  state: TrainerState | null = null;
  readonly callbacks: TrainerCallback[];
  protected trainExamples: E[] = [];
  protected evalExamples: E[] | null = null;

  constructor(
    readonly args: TrainingArgs,
    callbacks: TrainerCallback[] = [],
  ) {
    this.callbacks = callbacks;
  }

  abstract get model(): TrainableModel;
  abstract get tokenizer(): PreTrainedTokenizer | null;
  /** Loads and prepares whatever the constructor was given (model path, datasets); idempotent. */
  abstract ready(): Promise<void>;
  protected abstract collate(examples: E[]): B;
  /** Loss targets in a batch (what num_items_in_batch counts). */
  protected abstract countItems(batch: B): number;
  /** Non-padding input tokens in a batch. */
  protected abstract countTokens(batch: B): number;
  /** The batch loss, already divided by numItemsInBatch, and stat sums for the metrics. */
  protected abstract computeLoss(batch: B, numItemsInBatch: number): { loss: Tensor; stats: Stats };
  /** Turns summed stats into logged metrics (e.g. mean_token_accuracy). */
  protected abstract metrics(stats: Stats): LogEntry;

  /** Trainable parameters by name; weight decay skips biases and norm weights (get_decay_parameter_names). */
  private optimizerParams(): { params: Map<string, Parameter>; noDecay: Set<string> } {
    const params = new Map([...this.model.namedParameters()].filter(([, p]) => p.requiresGrad));
    if (params.size === 0) throw new Error("train: the model has no trainable parameters");
    const noDecay = new Set<string>();
    for (const [path, m] of this.model.namedModules())
      if (m instanceof RMSNorm) for (const [n] of m.namedParameters(path)) noDecay.add(n);
    for (const n of params.keys()) if (/(^|\.)bias$|\.bias\./.test(n)) noDecay.add(n);
    return { params, noDecay };
  }

  private layout(): { nBatches: number; stepsPerEpoch: number; maxSteps: number; epochs: number } {
    const a = this.args;
    const N = this.trainExamples.length;
    const bs = a.per_device_train_batch_size;
    const nBatches = a.dataloader_drop_last ? Math.floor(N / bs) : Math.ceil(N / bs);
    if (nBatches === 0) throw new Error(`train: ${N} examples make no batch of ${bs} (dataloader_drop_last)`);
    const stepsPerEpoch = Math.max(1, Math.ceil(nBatches / a.gradient_accumulation_steps));
    const maxSteps = a.max_steps > 0 ? a.max_steps : Math.ceil(a.num_train_epochs * stepsPerEpoch);
    if (maxSteps <= 0) throw new Error("train: num_train_epochs and max_steps give no steps to run");
    return { nBatches, stepsPerEpoch, maxSteps, epochs: Math.ceil(maxSteps / stepsPerEpoch) };
  }

  /** The checkpoint to resume from: a path, or "true"/"last" for the newest in output_dir. */
  private async resumeDir(): Promise<string | null> {
    const r = this.args.resume_from_checkpoint;
    if (r === null || r === "false") return null;
    if (r === "true" || r === "last") {
      const all = await listCheckpoints(this.args.output_dir);
      if (all.length === 0)
        throw new Error(`resume_from_checkpoint: no checkpoint-N folder in ${this.args.output_dir}`);
      return all[all.length - 1]!;
    }
    return r;
  }

  /**
   * Runs the training loop to max_steps (or num_train_epochs), resuming when resume_from_checkpoint is set.
   * @example const out = await new SFTTrainer({ model, args, train_dataset }).train();
   */
  async train(): Promise<TrainOutput> {
    await this.ready();
    const a = this.args;
    const { nBatches, stepsPerEpoch, maxSteps } = this.layout();
    const resume = await this.resumeDir();
    const saved = resume ? await readCheckpoint(resume) : null;
    manualSeed(a.seed);
    const { params, noDecay } = this.optimizerParams();
    const optimizer = new AdamW(params, {
      lr: a.learning_rate,
      betas: [a.adam_beta1, a.adam_beta2],
      eps: a.adam_epsilon,
      weight_decay: a.weight_decay,
      decay: (n) => !noDecay.has(n),
    });
    const scheduler = getScheduler(a.lr_scheduler_type, optimizer, {
      ...(a.lr_scheduler_kwargs ?? {}),
      num_warmup_steps: getWarmupSteps(maxSteps, a.warmup_steps, a.warmup_ratio),
      num_training_steps: maxSteps,
    });
    const state: TrainerState = saved?.state ?? {
      global_step: 0,
      epoch: 0,
      max_steps: maxSteps,
      num_train_epochs: Math.ceil(maxSteps / stepsPerEpoch),
      logging_steps: a.logging_steps,
      save_steps: a.save_steps,
      eval_steps: a.eval_steps,
      train_batch_size: a.per_device_train_batch_size,
      num_input_tokens_seen: 0,
      log_history: [],
    };
    if (saved) {
      await loadModelFiles(this.model, resume!);
      optimizer.loadStateDict(saved.optimizer);
      scheduler.loadStateDict(saved.scheduler);
      restoreRng(saved.rng);
      state.max_steps = maxSteps;
    }
    this.state = state;
    await mkdir(a.output_dir, { recursive: true });
    const report = new RunReport(a.output_dir, !a.disable_tqdm);
    await report.start(maxSteps, state.global_step);
    const bs = a.per_device_train_batch_size;
    const GA = a.gradient_accumulation_steps;
    const seed = a.data_seed ?? a.seed;
    let perm: number[] = [];
    let permEpoch = -1;
    let interval = { loss: 0, steps: 0, stats: {} as Stats };
    let totalLoss = 0;
    const t0 = performance.now();
    const startStep = state.global_step;
    this.model.train();
    try {
      while (state.global_step < maxSteps) {
        const epoch = Math.floor(state.global_step / stepsPerEpoch);
        if (epoch !== permEpoch) {
          perm = epochPermutation(this.trainExamples.length, seed, epoch);
          permEpoch = epoch;
        }
        const w = state.global_step % stepsPerEpoch;
        const batches: B[] = [];
        for (let b = w * GA; b < Math.min((w + 1) * GA, nBatches); b++)
          batches.push(this.collate(perm.slice(b * bs, (b + 1) * bs).map((i) => this.trainExamples[i]!)));
        const items = Math.max(
          1,
          batches.reduce((n, b) => n + this.countItems(b), 0),
        );
        let stepLoss = 0;
        for (const batch of batches) {
          const { value, stats } = tidy(() => {
            const out = this.computeLoss(batch, items);
            out.loss.backward();
            return { value: out.loss.itemSync(), stats: out.stats };
          });
          stepLoss += value;
          for (const [k, v] of Object.entries(stats)) interval.stats[k] = (interval.stats[k] ?? 0) + v;
          state.num_input_tokens_seen += this.countTokens(batch);
        }
        const norm = clipGradNorm(
          params.values(),
          a.max_grad_norm > 0 ? a.max_grad_norm : Number.POSITIVE_INFINITY,
        );
        const gradNorm = norm.itemSync();
        norm.dispose();
        optimizer.step();
        scheduler.step();
        optimizer.zeroGrad();
        state.global_step++;
        state.epoch = state.global_step / stepsPerEpoch;
        interval.loss += stepLoss;
        interval.steps++;
        totalLoss += stepLoss;
        report.tick(state.global_step, stepLoss);
        const epochEnd = state.global_step % stepsPerEpoch === 0;
        const last = state.global_step === maxSteps;
        const logNow =
          (a.logging_strategy === "steps" &&
            (state.global_step % a.logging_steps === 0 ||
              (a.logging_first_step && state.global_step === 1))) ||
          (a.logging_strategy === "epoch" && epochEnd);
        if (logNow) {
          await this.log(report, {
            loss: interval.loss / interval.steps,
            grad_norm: gradNorm,
            learning_rate: scheduler.getLastLr(),
            ...this.metrics(interval.stats),
            num_tokens: state.num_input_tokens_seen,
            epoch: round(state.epoch),
            step: state.global_step,
          });
          interval = { loss: 0, steps: 0, stats: {} };
        }
        const evalNow =
          this.evalExamples !== null &&
          ((a.eval_strategy === "steps" && state.global_step % (a.eval_steps ?? a.logging_steps) === 0) ||
            (a.eval_strategy === "epoch" && (epochEnd || last)));
        if (evalNow) await this.evaluateInto(report);
        const saveNow =
          (a.save_strategy === "steps" && state.global_step % a.save_steps === 0) ||
          (a.save_strategy === "epoch" && epochEnd);
        if (saveNow) await this.saveCheckpoint(optimizer, scheduler);
        let stop = false;
        for (const cb of this.callbacks) stop = cb.onStepEnd?.(state) === true || stop;
        if (stop) break;
      }
      const runtime = (performance.now() - t0) / 1000;
      const steps = state.global_step - startStep;
      const summary: LogEntry = {
        train_runtime: round(runtime),
        train_steps_per_second: round(steps / Math.max(runtime, 1e-9)),
        train_loss: steps > 0 ? totalLoss / steps : Number.NaN,
        epoch: round(state.epoch),
        step: state.global_step,
      };
      await this.log(report, summary);
      await report.writeLossCurve(state.log_history);
      return { global_step: state.global_step, training_loss: summary.train_loss!, metrics: summary };
    } finally {
      report.stop();
      this.model.eval();
    }
  }

  private async log(report: RunReport, entry: LogEntry): Promise<void> {
    this.state?.log_history.push(entry);
    await report.log(entry);
    for (const cb of this.callbacks) cb.onLog?.(entry);
  }

  private async saveCheckpoint(optimizer: AdamW, scheduler: LRScheduler): Promise<void> {
    await writeCheckpoint(
      this.args.output_dir,
      {
        model: this.model,
        tokenizer: this.tokenizer,
        optimizer,
        scheduler,
        state: this.state!,
        args: this.args,
        saveOnlyModel: this.args.save_only_model,
      },
      this.args.save_total_limit,
    );
  }

  private async evaluateInto(report: RunReport): Promise<void> {
    const metrics = await this.evaluate();
    await this.log(report, { ...metrics, epoch: round(this.state!.epoch), step: this.state!.global_step });
  }

  /**
   * Loss and metrics on the eval set, in eval mode without gradients: eval_loss is the token mean over the
   * whole set (sum of target NLLs / number of targets).
   */
  async evaluate(examples?: E[]): Promise<LogEntry> {
    await this.ready();
    const data = examples ?? this.evalExamples;
    if (!data || data.length === 0) throw new Error("evaluate: no eval_dataset was given");
    const wasTraining = this.model.training;
    this.model.eval();
    const t0 = performance.now();
    let lossSum = 0;
    let items = 0;
    const stats: Stats = {};
    try {
      const bs = this.args.per_device_eval_batch_size;
      for (let s = 0; s < data.length; s += bs) {
        const batch = this.collate(data.slice(s, s + bs));
        const n = this.countItems(batch);
        if (n === 0) continue;
        const out = tidy(() =>
          noGrad(() => {
            const r = this.computeLoss(batch, n);
            return { value: r.loss.itemSync(), stats: r.stats };
          }),
        );
        lossSum += out.value * n;
        items += n;
        for (const [k, v] of Object.entries(out.stats)) stats[k] = (stats[k] ?? 0) + v;
      }
    } finally {
      this.model.train(wasTraining);
    }
    const m = this.metrics(stats);
    const out: LogEntry = { eval_loss: items > 0 ? lossSum / items : Number.NaN };
    for (const [k, v] of Object.entries(m)) out[`eval_${k}`] = v;
    out.eval_runtime = round((performance.now() - t0) / 1000);
    return out;
  }

  /** Writes the model (the adapter only, when PEFT is on) and the tokenizer into `dir` (default output_dir). */
  async saveModel(dir: string = this.args.output_dir): Promise<void> {
    await this.ready();
    await saveModelFiles(this.model, this.tokenizer, dir);
  }
}

function round(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}
