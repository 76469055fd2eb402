// Quantized bases for QLoRA: bitsandbytes' NF4/FP4 4-bit and LLM.int8 8-bit formats (trl-peft-spec 3).

export {
  createDynamicMap,
  DYNAMIC_MAP,
  FP4_CODE,
  NF4_CODE,
  NF4_THRESHOLDS,
  quantizeDynamic,
  quantizeFP4,
  quantizeNF4,
} from "./codebooks.js";
export {
  BitsAndBytesConfig,
  type BitsAndBytesConfigFields,
  type ComputeDType,
  type QuantStorage,
} from "./config.js";
export {
  absmaxOf,
  type BlockwiseState,
  dequantize4bit,
  dequantize4bitArray,
  dequantize8bit,
  dequantizeBlockwiseArray,
  int8VectorwiseDequant,
  int8VectorwiseQuant,
  type NestedState,
  type Quantize4bitOptions,
  type QuantSourceDType,
  type QuantState4bit,
  type QuantType4,
  quantize4bit,
  quantize4bitState,
  quantize8bit,
  quantizeBlockwiseArray,
} from "./functional.js";
export { Linear4bit, type Linear4bitKernel, type Linear4bitOptions } from "./linear4bit.js";
export { Linear8bitLt } from "./linear8bit.js";
export {
  isQuantizedLinear,
  type LoadQuantizedOptions,
  loadQuantizedWeights,
  type QuantizedLinear,
  quantizedWeightBytes,
  quantizeLinear,
  quantizeModel,
} from "./model.js";
export { type QMatmulOptions, qmatmul4, qmatmul4Reference, qmatmul4T } from "./qmatmul.js";
export {
  fusedQmatmulAvailable,
  fusedQmatmulSupports,
  qmatmul4Fused,
  qmatmul4TFused,
  qmatmulModuleBytes,
} from "./qmatmul-wasm.js";
export {
  hasQuantizedModules,
  linear4bitTensors,
  parseQuantStateJson,
  pythonFloatRepr,
  quantStateJson,
  stateDictForSave,
} from "./serialize.js";
