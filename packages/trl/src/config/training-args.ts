// The trainer fields every TRL trainer config shares: transformers' TrainingArguments (the subset tsgrad
// implements) with TRL's _BaseConfig overrides (trl-peft-spec 9.4), under their Python names.

import { SCHEDULER_TYPES, type SchedulerType } from "@tsgrad/nn";
import { f } from "./fields.js";

export const TRAINING_ARGS_SPEC = {
  output_dir: f.str("trainer_output", "Where checkpoints, logs and the final model are written."),
  overwrite_output_dir: f.bool(
    false,
    "Accepted for compatibility (a run overwrites checkpoint-N folders of the same step).",
  ),
  eval_strategy: f.choice("no", ["no", "steps", "epoch"] as const, "When to evaluate on eval_dataset."),
  per_device_train_batch_size: f.int(8, "Examples per micro-batch.", { min: 1 }),
  per_device_eval_batch_size: f.int(8, "Examples per evaluation batch.", { min: 1 }),
  gradient_accumulation_steps: f.int(1, "Micro-batches per optimizer step.", { min: 1 }),
  learning_rate: f.float(2e-5, "Peak AdamW learning rate (TRL's SFT default; LoRA usually wants ~2e-4).", {
    min: 0,
  }),
  weight_decay: f.float(0, "Decoupled AdamW weight decay (not applied to biases and norm weights).", {
    min: 0,
  }),
  adam_beta1: f.float(0.9, "AdamW beta1."),
  adam_beta2: f.float(0.999, "AdamW beta2."),
  adam_epsilon: f.float(1e-8, "AdamW epsilon."),
  max_grad_norm: f.float(1, "Clip gradients to this global L2 norm (0 disables clipping)."),
  num_train_epochs: f.float(3, "Passes over the training set (ignored when max_steps > 0)."),
  max_steps: f.int(-1, "Total optimizer steps; overrides num_train_epochs when > 0."),
  lr_scheduler_type: f.choice<SchedulerType>("linear", SCHEDULER_TYPES, "Learning-rate schedule."),
  lr_scheduler_kwargs: f.json(null, "Extra schedule arguments (num_cycles, lr_end, power, timescale)."),
  warmup_ratio: f.float(0, "Fraction of the total steps used for linear warmup.", { min: 0 }),
  warmup_steps: f.float(
    0,
    "Warmup steps (a value below 1 is a ratio of the total); wins over warmup_ratio.",
    {
      min: 0,
    },
  ),
  logging_strategy: f.choice("steps", ["no", "steps", "epoch"] as const, "When to log training metrics."),
  logging_steps: f.int(10, "Log every this many optimizer steps.", { min: 1 }),
  logging_first_step: f.bool(false, "Also log after the first step."),
  save_strategy: f.choice("steps", ["no", "steps", "epoch"] as const, "When to write checkpoints."),
  save_steps: f.int(500, "Write checkpoint-N every this many steps.", { min: 1 }),
  save_total_limit: f.intOrNull(null, "Keep at most this many checkpoints (oldest deleted first)."),
  save_only_model: f.bool(false, "Checkpoints hold only the model (no optimizer, scheduler or RNG state)."),
  eval_steps: f.intOrNull(null, "Evaluate every this many steps (default: logging_steps)."),
  seed: f.int(42, "Seed for initialization, dropout and data order."),
  data_seed: f.intOrNull(null, "Seed for the data order only (default: seed)."),
  dataloader_drop_last: f.bool(false, "Drop the last incomplete micro-batch of each epoch."),
  gradient_checkpointing: f.bool(true, "Recompute activations in backward to save memory (TRL default on)."),
  bf16: f.boolOrNull(
    null,
    "bf16 mixed precision (not implemented on the CPU backend; training runs in the model dtype).",
  ),
  fp16: f.bool(false, "fp16 mixed precision (not implemented; must stay false)."),
  optim: f.choice(
    "adamw_torch",
    ["adamw_torch", "adamw_torch_fused"] as const,
    "Optimizer (both mean AdamW).",
  ),
  resume_from_checkpoint: f.strOrNull(
    null,
    'A checkpoint folder to resume from, or "true" for the latest one in output_dir.',
  ),
  report_to: f.str("none", 'Experiment trackers; only "none" is available.'),
  run_name: f.strOrNull(null, "A name for this run, stored in trainer_state.json."),
  disable_tqdm: f.bool(false, "Hide the progress bar."),
  push_to_hub: f.bool(false, "Upload to the Hub (not available: no network)."),
  trust_remote_code: f.bool(
    false,
    "Accepted for TRL compatibility; tsgrad never runs model code from a folder.",
  ),
};
