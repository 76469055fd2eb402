// AutoModelForCausalLM: picks the model class from config.json's model_type, as transformers' auto classes do.

import type { DType } from "@tsgrad/tensor";
import { BitsAndBytesConfig, type BitsAndBytesConfigFields } from "../quant/config.js";
import { buildForQuantizedLoad, loadQuantizedWeights } from "../quant/model.js";
import type { CausalLM } from "./causal-lm.js";
import { LlamaConfig, LlamaForCausalLM } from "./llama.js";
import { CONFIG_FILE, loadWeights, readConfigJson, readGenerationConfig } from "./pretrained.js";
import { Qwen2Config, Qwen2ForCausalLM } from "./qwen2.js";

const MODELS: Record<string, (config: Record<string, unknown>, dtype: DType) => CausalLM> = {
  qwen2: (c, dtype) => new Qwen2ForCausalLM(new Qwen2Config(c), { dtype, init: "zeros" }),
  llama: (c, dtype) => new LlamaForCausalLM(new LlamaConfig(c), { dtype, init: "zeros" }),
};

export interface FromPretrainedOptions {
  /** Compute dtype of the parameters (stored BF16/F16/F32 weights are converted); default float32. */
  dtype?: DType;
  /** Throw on checkpoint tensors the model has no parameter for (default true). */
  strict?: boolean;
  /**
   * bitsandbytes quantization: the decoder's Linear layers are quantized as their weights are read
   * (embeddings, norms and lm_head stay full precision). A checkpoint saved quantized carries its own
   * quantization_config in config.json and loads without re-quantizing.
   */
  quantization_config?: BitsAndBytesConfig | BitsAndBytesConfigFields;
}

export const AutoModelForCausalLM = {
  /**
   * Builds the model named by `dir/config.json` and loads `dir`'s safetensors weights. The model comes
   * back in eval mode, as transformers' from_pretrained leaves it.
   * @example const model = await AutoModelForCausalLM.fromPretrained("./Qwen2.5-0.5B", { dtype: "float32" });
   */
  async fromPretrained(dir: string, options: FromPretrainedOptions = {}): Promise<CausalLM> {
    const config = await readConfigJson(dir);
    const type = config.model_type;
    const make = typeof type === "string" ? MODELS[type] : undefined;
    if (!make) {
      throw new Error(
        `fromPretrained: ${dir}/${CONFIG_FILE}: model_type ${JSON.stringify(type)} is not supported; expected one of ${Object.keys(MODELS).join(", ")}`,
      );
    }
    const stored = config.quantization_config as BitsAndBytesConfigFields | undefined;
    const quant = options.quantization_config ?? stored;
    const qcfg =
      quant === undefined || quant instanceof BitsAndBytesConfig ? quant : new BitsAndBytesConfig(quant);
    const dtype = options.dtype ?? "float32";
    // A quantized load builds the decoder layer by layer, so the float32 model is never allocated whole.
    const model = qcfg?.quantized
      ? buildForQuantizedLoad((c) => make(c, dtype), config, qcfg, dtype)
      : make(config, dtype);
    const tied = model.lm_head === null;
    const loadOptions = {
      strict: options.strict ?? true,
      ignore: (k: string) => (tied && k === "lm_head.weight") || k.endsWith(".rotary_emb.inv_freq"),
    };
    if (qcfg?.quantized) await loadQuantizedWeights(model, dir, qcfg, loadOptions);
    else await loadWeights(model, dir, loadOptions);
    model.generationConfig = await readGenerationConfig(dir);
    // As transformers does, remember where the model came from (adapters record it as base_model_name_or_path).
    (model.config as { _name_or_path?: string })._name_or_path ??= dir;
    return model.eval();
  },
  /** The supported model_type values. */
  modelTypes(): string[] {
    return Object.keys(MODELS);
  },
};
