// @tsgrad/peft: LoRA, rsLoRA, DoRA and prompt tuning over @tsgrad/nn models, saved and loaded in PEFT's format.

export { type AdapterLayer, isAdapterLayer } from "./adapter-layer.js";
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
export { type LoraAdapterSettings, LoraLinear, LoraMagnitude } from "./lora/layer.js";
export { ModuleDict } from "./module-dict.js";
export { cloneModule, ModulesToSaveWrapper } from "./modules-to-save.js";
export { type GetPeftModelOptions, getPeftModel, injectLora, LoraModel, PeftModel } from "./peft-model.js";
export { PromptEmbedding, tileInitIds } from "./prompt-tuning.js";
export { pythonJsonDumps } from "./python-json.js";
export {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  type FromPretrainedOptions,
  loadAdapterWeights,
  loadPeftConfig,
  loadPeftModel,
  savePeftModel,
} from "./save-load.js";
export {
  DEFAULT_TARGET_MODULES,
  getPatternKey,
  layerIndexOf,
  type ModuleEntry,
  resolveTargets,
  type TargetResolution,
} from "./targeting.js";
