// @tsgrad/nn: modules named like Hugging Face checkpoint keys, layers, Qwen2 and Llama, safetensors,
// tokenizers, chat templates and generation.

// io: safetensors, tokenizers, chat templates
export { writeFileAtomic } from "./io/atomic.js";
export {
  INDEX_FILE,
  NATURAL_DTYPE,
  openSafetensors,
  type SafetensorsDType,
  SafetensorsFile,
  type SafetensorsReader,
  type SaveSafetensorsOptions,
  type SaveShardedOptions,
  ShardedSafetensors,
  SINGLE_FILE,
  safetensorsDTypeSize,
  saveSafetensors,
  saveShardedSafetensors,
  type TensorInfo,
  type TensorReadOptions,
} from "./io/safetensors.js";
export {
  type ChatMessage,
  type ChatTemplateOptions,
  type ChatTemplateSpec,
  renderChatTemplate,
} from "./tokenizer/chat-template.js";
export {
  AutoTokenizer,
  type BatchEncoding,
  type CallOptions,
  type DecodeOptions,
  type PaddingSide,
  PreTrainedTokenizer,
  type TokenizerFromPretrainedOptions,
} from "./tokenizer/tokenizer.js";

// modules, layers, models, generation

export { type GenerateOptions, generate, positionsFromMask, sampleToken } from "./generation/generate.js";
export { sequenceLogProbs } from "./generation/logprobs.js";
export {
  Attention,
  type AttentionContext,
  type AttentionOptions,
  buildAttentionMask,
  dtypeMin,
  type KVCache,
  packedSequenceIds,
  repeatKv,
} from "./layers/attention.js";
export { checkpoint } from "./layers/checkpoint.js";
export { DecoderLayer, type DecoderLayerOptions } from "./layers/decoder-layer.js";
export { Dropout } from "./layers/dropout.js";
export { Embedding } from "./layers/embedding.js";
export { initNormal, initUniform } from "./layers/init.js";
export {
  isLinearLike,
  type LayerOptions,
  Linear,
  type LinearLike,
  type LinearModule,
} from "./layers/linear.js";
export { RMSNorm } from "./layers/rms-norm.js";
export { applyRotary, type RopeScaling, ropeCosSin, ropeInvFreq, rotateHalf } from "./layers/rope.js";
export { SwiGLU } from "./layers/swiglu.js";
export { AutoModelForCausalLM, type FromPretrainedOptions } from "./models/auto.js";
export {
  CausalLM,
  type CausalLMInput,
  type CausalLMOutput,
  DecoderModel,
  type GenerationConfig,
  type IntInput,
  toIdTensor,
} from "./models/causal-lm.js";
export type { DecoderConfigFields, ModelOptions } from "./models/config.js";
export { LlamaConfig, LlamaForCausalLM, LlamaModel } from "./models/llama.js";
export {
  loadWeights,
  readConfigJson,
  readGenerationConfig,
  type SavePretrainedOptions,
  savePretrained,
} from "./models/pretrained.js";
export { Qwen2Config, Qwen2ForCausalLM, Qwen2Model } from "./models/qwen2.js";
export { type LoadStateDictOptions, type LoadStateDictResult, Module } from "./module.js";
// optimizers
export { AdamW, type AdamWOptions, type AdamWStateDict } from "./optim/adamw.js";
export { clipGradNorm } from "./optim/clip.js";
export {
  getScheduler,
  getWarmupSteps,
  LRScheduler,
  SCHEDULER_TYPES,
  type SchedulerOptions,
  type SchedulerType,
  scheduleLambda,
} from "./optim/schedules.js";
export { Parameter } from "./parameter.js";

// quantization
export * from "./quant/index.js";
