// TRL's ScriptArguments (trl/scripts/utils.py): which dataset and splits a script trains on.

import { buildFields, type FieldsOf, f } from "./fields.js";

export const SCRIPT_ARGS_SPEC = {
  dataset_name: f.strOrNull(
    null,
    "A JSON, JSONL or Parquet file, a folder in the Hugging Face datasets layout, or a built-in dataset name.",
  ),
  dataset_config: f.strOrNull(null, "A sub-folder (configuration) of a dataset folder."),
  dataset_train_split: f.str("train", "Split to train on."),
  dataset_test_split: f.str("test", "Split to evaluate on (used when eval_strategy is not no)."),
  dataset_streaming: f.bool(false, "Accepted for TRL compatibility; datasets are read whole."),
  ignore_bias_buffers: f.bool(false, "Accepted for TRL compatibility (no effect)."),
};
export type ScriptArgumentsFields = FieldsOf<typeof SCRIPT_ARGS_SPEC>;

export interface ScriptArguments extends ScriptArgumentsFields {}
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the constructor assigns every field from the checked spec
export class ScriptArguments {
  constructor(fields: Partial<ScriptArgumentsFields> = {}) {
    Object.assign(this, buildFields("ScriptArguments", SCRIPT_ARGS_SPEC, fields));
  }
}
