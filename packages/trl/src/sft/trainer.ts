// SFTTrainer (trl/trainer/sft_trainer.py; trl-peft-spec 6): takes a model (or its folder), wraps it with
// PEFT when given a peft_config, prepares the dataset once (format detection, masks, truncation, packing)
// and trains on token-mean cross-entropy over the whole accumulation window.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  type BitsAndBytesConfig,
  type CausalLM,
  type PreTrainedTokenizer,
} from "@tsgrad/nn";
import { getPeftModel, LoraConfig, type PeftConfig, PeftModel } from "@tsgrad/peft";
import { type DType, type Tensor, tensor } from "@tsgrad/tensor";
import { collate, countTargets, countTokens, type SFTBatch } from "../data/collate.js";
import type { Row } from "../data/formats.js";
import type { TokenizedExample } from "../data/packing.js";
import { prepareSFTDataset } from "../data/prepare.js";
import type { LogEntry } from "../trainer/report.js";
import {
  epochPermutation,
  type Stats,
  type TrainableModel,
  Trainer,
  type TrainerCallback,
} from "../trainer/trainer.js";
import { SFTConfig, type SFTConfigFields } from "./config.js";
import { dftLoss, tokenStats } from "./loss.js";

export interface SFTTrainerOptions {
  /** A causal LM, a PeftModel, or a model folder (config.json + safetensors). */
  model: CausalLM | PeftModel | string;
  args?: SFTConfig | Partial<SFTConfigFields>;
  train_dataset: readonly Row[];
  eval_dataset?: readonly Row[] | null;
  /** LoRA or prompt tuning; the trainer calls getPeftModel itself. */
  peft_config?: PeftConfig | null;
  /** The tokenizer (default: the one in the model folder). */
  processing_class?: PreTrainedTokenizer | null;
  /** A quantization config for loading a model folder (from getQuantizationConfig). */
  quantization_config?: BitsAndBytesConfig | null;
  callbacks?: TrainerCallback[];
}

export class SFTTrainer extends Trainer<TokenizedExample, SFTBatch> {
  declare readonly args: SFTConfig;
  private _model: TrainableModel | null = null;
  private _tokenizer: PreTrainedTokenizer | null;
  private readonly opts: SFTTrainerOptions;
  private readying: Promise<void> | null = null;
  private padId = 0;

  /**
   * Checks the arguments; the model folder is loaded and the datasets are tokenized by ready() (called by
   * train(), evaluate() and saveModel()).
   * @example const trainer = new SFTTrainer({ model, args: { output_dir: "out", max_steps: 50 }, train_dataset: rows, peft_config: new LoraConfig({ r: 8 }), processing_class: tok });
   */
  constructor(opts: SFTTrainerOptions) {
    const args = opts.args instanceof SFTConfig ? opts.args : new SFTConfig(opts.args ?? {});
    super(args, opts.callbacks ?? []);
    this.opts = opts;
    this._tokenizer = opts.processing_class ?? null;
    const m = opts.model;
    if (typeof m === "string") {
      if (!existsSync(join(m, "config.json")))
        throw new Error(
          `SFTTrainer: model "${m}" is not a model folder (${join(m, "config.json")} not found)`,
        );
    } else {
      if (m instanceof PeftModel && opts.peft_config)
        throw new Error(
          "SFTTrainer: the model already has adapters (a PeftModel) and a peft_config was passed; merge it first or drop peft_config",
        );
      // As in TRL, the adapter is injected here, so its initialization draws from the RNG at construction time.
      if (opts.peft_config && !opts.processing_class && !(opts.peft_config instanceof LoraConfig))
        throw new Error("SFTTrainer: prompt tuning needs processing_class (the tokenizer)");
      this._model = opts.peft_config
        ? getPeftModel(m as CausalLM, opts.peft_config, { tokenizer: opts.processing_class ?? undefined })
        : m;
    }
    if (!Array.isArray(opts.train_dataset) || opts.train_dataset.length === 0)
      throw new Error("SFTTrainer: train_dataset must be a non-empty list of rows");
    if (args.eval_strategy !== "no" && !opts.eval_dataset)
      throw new Error(`SFTTrainer: eval_strategy "${args.eval_strategy}" needs an eval_dataset`);
    if (opts.quantization_config && typeof m !== "string")
      throw new Error("SFTTrainer: quantization_config applies only when model is a folder path");
    if (args.chat_template_path !== null && !existsSync(args.chat_template_path))
      throw new Error(`SFTConfig: chat_template_path ${args.chat_template_path} does not exist`);
    if (args.bf16 === true)
      console.warn("SFTConfig: bf16 mixed precision is not implemented; training runs in the model's dtype");
  }

  get model(): TrainableModel {
    if (!this._model) throw new Error("SFTTrainer: the model is not loaded yet; await trainer.ready()");
    return this._model;
  }
  get tokenizer(): PreTrainedTokenizer | null {
    return this._tokenizer;
  }

  ready(): Promise<void> {
    this.readying ??= this.load();
    return this.readying;
  }

  private async load(): Promise<void> {
    const { opts, args } = this;
    if (typeof opts.model === "string") {
      const dtype = (args.model_init_kwargs?.dtype as DType | "auto" | undefined) ?? "float32";
      this._model = await AutoModelForCausalLM.fromPretrained(opts.model, {
        dtype: dtype === "auto" ? "float32" : dtype,
        quantization_config: (opts.quantization_config as BitsAndBytesConfig | null) ?? undefined,
      });
      this._tokenizer ??= await AutoTokenizer.fromPretrained(opts.model);
    }
    const tok = this._tokenizer;
    if (!tok) throw new Error("SFTTrainer: pass processing_class (the tokenizer) when model is not a folder");
    let model = this._model!;
    if (opts.peft_config && typeof opts.model === "string")
      model = getPeftModel(model as CausalLM, opts.peft_config, { tokenizer: tok });
    const base = model instanceof PeftModel ? model.model : model;
    if (args.gradient_checkpointing) base.gradientCheckpointingEnable();
    this._model = model;
    const pad = args.pad_token ?? tok.pad_token ?? tok.eos_token;
    const padId = pad === null ? null : tok.convertTokensToIds(pad);
    if (padId === null)
      throw new Error(`SFTTrainer: pad token ${JSON.stringify(pad)} is not in the tokenizer's vocabulary`);
    this.padId = padId;
    const template = args.chat_template_path ? readFileSync(args.chat_template_path, "utf8") : null;
    const prep = (rows: readonly Row[], packing: boolean, source: string) => {
      const skip = args.dataset_kwargs?.skip_prepare_dataset === true;
      if (skip) return rows as unknown as TokenizedExample[];
      const out = prepareSFTDataset(
        rows,
        { ...args, tokenizer: tok, packing, chat_template: template },
        source,
      );
      if (out.dropped > 0)
        console.warn(`${source}: dropped ${out.dropped} example(s) with no label left to train on`);
      return out.examples;
    };
    this.trainExamples = prep(opts.train_dataset, args.packing, "train_dataset");
    if (args.shuffle_dataset) {
      const p = epochPermutation(this.trainExamples.length, args.seed, -1);
      this.trainExamples = p.map((i) => this.trainExamples[i]!);
    }
    if (opts.eval_dataset)
      this.evalExamples = prep(opts.eval_dataset, args.eval_packing ?? args.packing, "eval_dataset");
  }

  /** The prepared training examples (input_ids, labels and, when packed, seq_lengths). */
  get trainDataset(): readonly TokenizedExample[] {
    return this.trainExamples;
  }
  get evalDataset(): readonly TokenizedExample[] | null {
    return this.evalExamples;
  }

  protected collate(examples: TokenizedExample[]): SFTBatch {
    // with packing the rows stay [B, T] (the same per-token results as TRL's one padding-free row)
    const paddingFree = this.args.padding_free && !this.args.packing;
    return collate(examples, this.padId, this.args.pad_to_multiple_of, paddingFree);
  }
  protected countItems(batch: SFTBatch): number {
    return countTargets(batch);
  }
  protected countTokens(batch: SFTBatch): number {
    return countTokens(batch);
  }

  protected computeLoss(batch: SFTBatch, numItemsInBatch: number): { loss: Tensor; stats: Stats } {
    const model = this.model;
    // packed rows go padding-free (no attention_mask, as TRL's collator): the model then keeps their
    // sequences apart by the position_ids restarts (block-diagonal causal attention, trl-peft-spec 6.3)
    const input = {
      input_ids: batch.input_ids,
      attention_mask: batch.position_ids ? null : batch.attention_mask,
      position_ids: batch.position_ids,
    };
    const dft = this.args.loss_type === "dft";
    const out = model.forward(
      dft ? input : { ...input, labels: batch.labels, num_items_in_batch: numItemsInBatch },
    );
    // NOTE: prompt tuning prepends virtual tokens; metrics (and dft) use only the real positions (pain point 12).
    const T =
      model instanceof PeftModel && model.isPromptLearning
        ? out.logits.shape[1]! - batch.input_ids[0]!.length
        : 0;
    const logits = T > 0 ? out.logits.slice(1, T) : out.logits;
    const loss = dft ? dftLoss(logits, tensor(batch.labels, { dtype: "int32" }), numItemsInBatch) : out.loss!;
    return { loss, stats: tokenStats(logits, batch.labels) };
  }

  protected metrics(stats: Stats): LogEntry {
    if (!stats.targets) return {};
    return { mean_token_accuracy: stats.correct! / stats.targets, entropy: stats.entropy! / stats.targets };
  }
}
