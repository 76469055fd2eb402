// SFTConfig: TRL's SFT fields and defaults (trl/trainer/sft_config.py; trl-peft-spec 6, 9.4) on top of the
// shared trainer fields. Unknown fields are errors that name the closest known field.

import { buildFields, type FieldsOf, f } from "../config/fields.js";
import { TRAINING_ARGS_SPEC } from "../config/training-args.js";

export const SFT_CONFIG_SPEC = {
  ...TRAINING_ARGS_SPEC,
  model_init_kwargs: f.json(null, "Options for loading the model from a path (dtype)."),
  chat_template_path: f.strOrNull(null, "A Jinja chat template file used instead of the tokenizer's."),
  dataset_text_field: f.str("text", "Column holding the text of language-modeling datasets."),
  dataset_kwargs: f.json(null, 'Dataset options; {"skip_prepare_dataset": true} uses rows as given.'),
  dataset_num_proc: f.intOrNull(null, "Accepted for TRL compatibility (preparation runs in one thread)."),
  eos_token: f.strOrNull(
    null,
    "End-of-sequence token appended to non-conversational text (default: the tokenizer's).",
  ),
  pad_token: f.strOrNull(null, "Padding token (default: the tokenizer's pad token, else its EOS)."),
  max_length: f.intOrNull(1024, "Truncate (or pack) sequences to this many tokens; null keeps them whole."),
  truncation_mode: f.choice(
    "keep_start",
    ["keep_start", "keep_end"] as const,
    "Which end of a long sequence to keep.",
  ),
  shuffle_dataset: f.bool(
    false,
    "Shuffle the prepared dataset once (the sampler still shuffles every epoch).",
  ),
  packing: f.bool(false, "Pack several sequences into each max_length row."),
  packing_strategy: f.choice("bfd", ["bfd", "bfd_split", "wrapped"] as const, "How sequences are packed."),
  padding_free: f.bool(
    false,
    "Concatenate a batch into one row, attention kept within each sequence (without packing: needs max_length null).",
  ),
  pad_to_multiple_of: f.intOrNull(null, "Pad each batch to a multiple of this length."),
  eval_packing: f.boolOrNull(null, "Pack the eval set too (default: same as packing)."),
  completion_only_loss: f.boolOrNull(
    null,
    "Train only on completions (default: on for prompt-completion data).",
  ),
  assistant_only_loss: f.bool(false, "Train only on assistant turns (conversational data)."),
  loss_type: f.choice("nll", ["nll", "chunked_nll", "dft"] as const, "nll (= chunked_nll here) or dft."),
  activation_offloading: f.bool(false, "Not available (must stay false)."),
};
export type SFTConfigFields = FieldsOf<typeof SFT_CONFIG_SPEC>;

export interface SFTConfig extends SFTConfigFields {}
/**
 * The SFT trainer's arguments, with TRL's names and defaults.
 * @example new SFTConfig({ output_dir: "out", learning_rate: 2e-4, max_steps: 100, packing: true })
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the constructor assigns every field from the checked spec
export class SFTConfig {
  constructor(fields: Partial<SFTConfigFields> = {}) {
    Object.assign(this, buildFields("SFTConfig", SFT_CONFIG_SPEC, fields));
    const no = (field: string, why: string) => {
      throw new Error(`SFTConfig: ${field} ${why}`);
    };
    if (this.fp16) no("fp16", "is not supported (tsgrad trains in the model's dtype)");
    if (this.activation_offloading) no("activation_offloading", "is not supported");
    if (this.push_to_hub) no("push_to_hub", "is not available (no network); copy output_dir instead");
    if (this.report_to !== "none" && this.report_to !== "")
      no("report_to", `"${this.report_to}" is not available; use "none"`);
    if (this.padding_free && !this.packing && this.max_length !== null)
      no("padding_free", "without packing needs max_length null (sequences are not truncated), as in TRL");
    if (this.max_length !== null && this.max_length < 1) no("max_length", "must be >= 1 or null");
    if (this.packing && this.max_length === null) no("max_length", "must be set when packing");
    if (this.eval_strategy === "steps" && this.eval_steps === null) this.eval_steps = this.logging_steps;
  }
}
