// @tsgrad/trl: the SFT trainer, its configs (TRL's field names and defaults), dataset loading and
// preparation, and the tsgrad CLI.

export { CliError, helpText, type ParsedArgs, parseCli, type SpecGroup } from "./cli/args.js";
export { main as runCli } from "./cli/main.js";
export { runSft, SFT_GROUPS, SFT_USAGE } from "./cli/sft.js";
export {
  buildFields,
  ConfigFieldError,
  closest,
  type Field,
  type FieldsOf,
  parseFieldString,
  type Spec,
} from "./config/fields.js";
export {
  getKbitDeviceMap,
  getPeftConfig,
  getQuantizationConfig,
  MODEL_CONFIG_SPEC,
  ModelConfig,
  type ModelConfigFields,
} from "./config/model-config.js";
export { SCRIPT_ARGS_SPEC, ScriptArguments, type ScriptArgumentsFields } from "./config/script-args.js";
export { TRAINING_ARGS_SPEC } from "./config/training-args.js";
export { chatWithAssistantMask } from "./data/chat.js";
export { collate, countTargets, countTokens, type SFTBatch } from "./data/collate.js";
export {
  type DatasetFormat,
  detectFormat,
  fromShareGpt,
  isConversational,
  type Row,
} from "./data/formats.js";
export { type PackingStrategy, packExamples, type TokenizedExample } from "./data/packing.js";
export { type PreparedDataset, type PrepareOptions, prepareSFTDataset } from "./data/prepare.js";
export { BUILTIN_DATASETS, builtinDatasetPath } from "./datasets/builtin.js";
export { type DatasetDict, getSplit, loadDataset, readDataFile } from "./datasets/load.js";
export { SFT_CONFIG_SPEC, SFTConfig, type SFTConfigFields } from "./sft/config.js";
export { dftLoss, tokenStats } from "./sft/loss.js";
export { SFTTrainer, type SFTTrainerOptions } from "./sft/trainer.js";
export {
  CHECKPOINT_PREFIX,
  listCheckpoints,
  TRAINER_STATE,
  type TrainerState,
} from "./trainer/checkpoint.js";
export { formatLog, LOG_FILE, LOSS_CURVE_FILE, type LogEntry, lossCurveSvg } from "./trainer/report.js";
export {
  epochPermutation,
  type Stats,
  type TrainableModel,
  Trainer,
  type TrainerCallback,
  type TrainingArgs,
  type TrainOutput,
} from "./trainer/trainer.js";
