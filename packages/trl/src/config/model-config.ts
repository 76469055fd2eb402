// TRL's ModelConfig and its helpers get_peft_config, get_quantization_config and get_kbit_device_map
// (trl/trainer/model_config.py and trl/trainer/utils.py; trl-peft-spec 9.2, 9.3).

import type { BitsAndBytesConfig } from "@tsgrad/nn";
import { LoraConfig } from "@tsgrad/peft";
import { buildFields, type FieldsOf, f } from "./fields.js";
import { createQuantizationConfig } from "./quantization.js";

export const MODEL_CONFIG_SPEC = {
  model_name_or_path: f.strOrNull(null, "A model folder (config.json + safetensors) to fine-tune."),
  model_revision: f.str("main", "Accepted for TRL compatibility (local folders have no revisions)."),
  dtype: f.choice(
    "float32",
    ["auto", "bfloat16", "float16", "float32"] as const,
    "Parameter dtype of the loaded model.",
  ),
  attn_implementation: f.strOrNull(null, "Accepted for TRL compatibility (tsgrad has one attention path)."),
  use_peft: f.bool(false, "Train a LoRA adapter instead of the full model."),
  lora_r: f.int(16, "LoRA rank.", { min: 1 }),
  lora_alpha: f.int(32, "LoRA alpha (scaling = alpha / r, or alpha / sqrt(r) with rsLoRA)."),
  lora_dropout: f.float(0.05, "Dropout on the LoRA input."),
  lora_target_modules: f.list(
    null,
    'Module names to adapt (space-separated), or "all-linear"; default q_proj v_proj.',
  ),
  lora_target_parameters: f.list(null, "Parameter targets (not supported by tsgrad; must stay unset)."),
  lora_modules_to_save: f.list(null, "Modules trained in full and saved with the adapter (e.g. lm_head)."),
  lora_task_type: f.str("CAUSAL_LM", "PEFT task type."),
  use_rslora: f.bool(false, "rsLoRA scaling alpha / sqrt(r)."),
  use_dora: f.bool(false, "DoRA: weight-decomposed LoRA."),
  load_in_8bit: f.bool(false, "Quantize the base model to 8 bits (LLM.int8)."),
  load_in_4bit: f.bool(false, "Quantize the base model to 4 bits (QLoRA)."),
  bnb_4bit_quant_type: f.choice("nf4", ["fp4", "nf4"] as const, "4-bit code book."),
  use_bnb_nested_quant: f.bool(false, "Double quantization of the 4-bit block scales."),
  bnb_4bit_quant_storage: f.strOrNull(null, "Storage dtype of packed 4-bit weights."),
};
export type ModelConfigFields = FieldsOf<typeof MODEL_CONFIG_SPEC>;

export interface ModelConfig extends ModelConfigFields {}
/**
 * The model arguments of TRL's scripts.
 * @example const peft = getPeftConfig(new ModelConfig({ use_peft: true, lora_target_modules: ["q_proj"] }));
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the constructor assigns every field from the checked spec
export class ModelConfig {
  constructor(fields: Partial<ModelConfigFields> = {}) {
    Object.assign(this, buildFields("ModelConfig", MODEL_CONFIG_SPEC, fields));
    if (this.load_in_4bit && this.load_in_8bit)
      throw new Error("ModelConfig: load_in_4bit and load_in_8bit cannot both be true");
    // NOTE: TRL turns a one-element list into a plain string, so `--lora_target_modules q_proj` becomes the
    // regex "q_proj" that full-matches nothing (trl-peft-spec 11, pain point 2). tsgrad keeps the list,
    // except for the special value all-linear.
    if (this.lora_target_modules?.length === 1 && this.lora_target_modules[0] === "all-linear")
      (this as { lora_target_modules: unknown }).lora_target_modules = "all-linear";
  }
}

/** LoraConfig(r, alpha, dropout, bias "none", task, targets) from the flags, or null without --use_peft. */
export function getPeftConfig(m: ModelConfig): LoraConfig | null {
  if (!m.use_peft) return null;
  if (m.lora_target_parameters !== null)
    throw new Error(
      "--lora_target_parameters is not supported by tsgrad; target modules with --lora_target_modules",
    );
  return new LoraConfig({
    task_type: m.lora_task_type as LoraConfig["task_type"],
    r: m.lora_r,
    target_modules: m.lora_target_modules as string[] | string | null,
    lora_alpha: m.lora_alpha,
    lora_dropout: m.lora_dropout,
    bias: "none",
    use_rslora: m.use_rslora,
    use_dora: m.use_dora,
    modules_to_save: m.lora_modules_to_save,
  });
}

/**
 * The quantization config --load_in_4bit / --load_in_8bit ask for (BitsAndBytesConfig fields), or null.
 * 4-bit: compute dtype = --dtype, quant type, double quantization and storage from the flags.
 */
export function getQuantizationConfig(m: ModelConfig): BitsAndBytesConfig | null {
  if (m.load_in_4bit)
    return createQuantizationConfig({
      load_in_4bit: true,
      bnb_4bit_compute_dtype: m.dtype,
      bnb_4bit_quant_type: m.bnb_4bit_quant_type,
      bnb_4bit_use_double_quant: m.use_bnb_nested_quant,
      bnb_4bit_quant_storage: m.bnb_4bit_quant_storage,
    });
  if (m.load_in_8bit) return createQuantizationConfig({ load_in_8bit: true });
  return null;
}

/**
 * TRL's get_kbit_device_map: { "": process index } on a GPU machine, else null. tsgrad runs one process
 * and places the whole model on the active backend, so this is always null. (Removed from TRL in PR #6158.)
 */
export function getKbitDeviceMap(): Record<string, number> | null {
  return null;
}
