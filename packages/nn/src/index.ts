// @tsgrad/nn: modules named like Hugging Face checkpoint keys, layers, Qwen2 and Llama, safetensors,
// tokenizers, chat templates and generation.

// io: safetensors, tokenizers, chat templates
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

// modules, layers, models, generation
