// @tsgrad/peft: LoRA, rsLoRA, DoRA and prompt tuning over @tsgrad/nn models, saved and loaded in PEFT's format.
export {
  ConfigError,
  LORA_DEFAULTS,
  LoraConfig,
  type LoraConfigFields,
  PEFT_VERSION,
  type PeftConfig,
  type PeftType,
  PROMPT_TUNING_DEFAULTS,
  PromptTuningConfig,
  type PromptTuningConfigFields,
  peftConfigFromDict,
  type TaskType,
} from "./config.js";
export { SAVED_PREFIX, savedKey, stripAdapterName } from "./keys.js";
export { pythonJsonDumps } from "./python-json.js";
export {
  DEFAULT_TARGET_MODULES,
  getPatternKey,
  layerIndexOf,
  type ModuleEntry,
  resolveTargets,
  type TargetResolution,
} from "./targeting.js";
