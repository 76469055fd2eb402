// BitsAndBytesConfig: transformers' quantization_config for bitsandbytes (trl-peft-spec 3.1, 9.3), with
// its field names and defaults, validated up front so a bad combination fails before any weight is read.

import type { QuantType4 } from "./functional.js";

export type ComputeDType = "float32" | "bfloat16";
export type QuantStorage = "uint8" | "float32" | "bfloat16" | "float16";

export interface BitsAndBytesConfigFields {
  load_in_4bit?: boolean;
  load_in_8bit?: boolean;
  bnb_4bit_quant_type?: QuantType4;
  /** Dequantized weights and activations are rounded to this dtype for the matmul; default float32. */
  bnb_4bit_compute_dtype?: ComputeDType | null;
  bnb_4bit_use_double_quant?: boolean;
  /** How the packed bytes are viewed when stored; tsgrad always keeps the bytes (uint8). */
  bnb_4bit_quant_storage?: QuantStorage | null;
  llm_int8_threshold?: number;
  llm_int8_skip_modules?: string[] | null;
  llm_int8_has_fp16_weight?: boolean;
  llm_int8_enable_fp32_cpu_offload?: boolean;
  quant_method?: string;
}

const FIELDS = new Set([
  "load_in_4bit",
  "load_in_8bit",
  "_load_in_4bit",
  "_load_in_8bit",
  "bnb_4bit_quant_type",
  "bnb_4bit_compute_dtype",
  "bnb_4bit_use_double_quant",
  "bnb_4bit_quant_storage",
  "llm_int8_threshold",
  "llm_int8_skip_modules",
  "llm_int8_has_fp16_weight",
  "llm_int8_enable_fp32_cpu_offload",
  "quant_method",
]);

function bad(msg: string): never {
  throw new Error(`BitsAndBytesConfig: ${msg}`);
}

export class BitsAndBytesConfig {
  readonly quant_method = "bitsandbytes";
  load_in_4bit = false;
  load_in_8bit = false;
  /** transformers' default is "fp4"; TRL's ModelConfig passes "nf4". */
  bnb_4bit_quant_type: QuantType4 = "fp4";
  bnb_4bit_compute_dtype: ComputeDType = "float32";
  bnb_4bit_use_double_quant = false;
  bnb_4bit_quant_storage: QuantStorage = "uint8";
  llm_int8_threshold = 6.0;
  llm_int8_skip_modules: string[] | null = null;
  llm_int8_has_fp16_weight = false;
  llm_int8_enable_fp32_cpu_offload = false;

  /**
   * @example const q = new BitsAndBytesConfig({ load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true });
   */
  constructor(fields: BitsAndBytesConfigFields = {}) {
    const unknown = Object.keys(fields).filter((k) => !FIELDS.has(k));
    if (unknown.length > 0)
      bad(
        `unknown field(s) ${unknown.join(", ")}; expected some of ${[...FIELDS].filter((k) => !k.startsWith("_")).join(", ")}`,
      );
    const f = fields as Record<string, unknown>;
    const b4 = f.load_in_4bit ?? f._load_in_4bit ?? false;
    const b8 = f.load_in_8bit ?? f._load_in_8bit ?? false;
    if (typeof b4 !== "boolean" || typeof b8 !== "boolean")
      bad("load_in_4bit and load_in_8bit must be booleans");
    if (b4 && b8) bad("load_in_4bit and load_in_8bit are both true; choose one of them");
    this.load_in_4bit = b4;
    this.load_in_8bit = b8;
    if (f.quant_method !== undefined && f.quant_method !== "bitsandbytes")
      bad(`quant_method ${JSON.stringify(f.quant_method)} is not supported; only "bitsandbytes"`);
    if (fields.bnb_4bit_quant_type !== undefined) {
      if (fields.bnb_4bit_quant_type !== "nf4" && fields.bnb_4bit_quant_type !== "fp4")
        bad(`bnb_4bit_quant_type must be "nf4" or "fp4", got ${JSON.stringify(fields.bnb_4bit_quant_type)}`);
      this.bnb_4bit_quant_type = fields.bnb_4bit_quant_type;
    }
    const cd = fields.bnb_4bit_compute_dtype;
    if (cd !== undefined && cd !== null) {
      const name = String(cd).replace(/^torch\./, "");
      if (name !== "float32" && name !== "bfloat16")
        bad(
          `bnb_4bit_compute_dtype ${JSON.stringify(cd)} is not supported; use "float32" or "bfloat16"${name === "auto" ? ' ("auto" is not a dtype)' : ""}`,
        );
      this.bnb_4bit_compute_dtype = name;
    }
    if (fields.bnb_4bit_use_double_quant !== undefined) {
      if (typeof fields.bnb_4bit_use_double_quant !== "boolean")
        bad("bnb_4bit_use_double_quant must be a boolean");
      this.bnb_4bit_use_double_quant = fields.bnb_4bit_use_double_quant;
    }
    const qs = fields.bnb_4bit_quant_storage;
    if (qs !== undefined && qs !== null) {
      const name = String(qs).replace(/^torch\./, "");
      if (!["uint8", "float32", "bfloat16", "float16"].includes(name))
        bad(
          `bnb_4bit_quant_storage ${JSON.stringify(qs)} is not supported; use uint8, float32, bfloat16 or float16`,
        );
      this.bnb_4bit_quant_storage = name as QuantStorage;
    }
    if (fields.llm_int8_threshold !== undefined) {
      const t = fields.llm_int8_threshold;
      if (typeof t !== "number" || !(t >= 0))
        bad(`llm_int8_threshold must be a number >= 0, got ${JSON.stringify(t)}`);
      this.llm_int8_threshold = t;
    }
    const skip = fields.llm_int8_skip_modules;
    if (skip !== undefined && skip !== null) {
      if (!Array.isArray(skip) || skip.some((s) => typeof s !== "string"))
        bad("llm_int8_skip_modules must be a list of module names");
      this.llm_int8_skip_modules = [...skip];
    }
    if (fields.llm_int8_has_fp16_weight)
      bad("llm_int8_has_fp16_weight=true (8-bit training of the base) is not supported");
    if (fields.llm_int8_enable_fp32_cpu_offload) this.llm_int8_enable_fp32_cpu_offload = true;
  }

  /** True when either mode is on. */
  get quantized(): boolean {
    return this.load_in_4bit || this.load_in_8bit;
  }

  /** Modules never quantized: llm_int8_skip_modules, or the output head when none are given. */
  skipModules(): string[] {
    return this.llm_int8_skip_modules ?? ["lm_head"];
  }

  /** Whether the module at `path` must stay in full precision (transformers' should_convert_module). */
  skips(path: string): boolean {
    return this.skipModules().some(
      (k) => path === k || path.startsWith(`${k}.`) || path.endsWith(`.${k}`) || path.includes(`.${k}.`),
    );
  }

  /** The dict transformers writes as config.json's quantization_config (to_dict, keys sorted). */
  toDict(): Record<string, unknown> {
    return {
      _load_in_4bit: this.load_in_4bit,
      _load_in_8bit: this.load_in_8bit,
      bnb_4bit_compute_dtype: this.bnb_4bit_compute_dtype,
      bnb_4bit_quant_storage: this.bnb_4bit_quant_storage,
      bnb_4bit_quant_type: this.bnb_4bit_quant_type,
      bnb_4bit_use_double_quant: this.bnb_4bit_use_double_quant,
      llm_int8_enable_fp32_cpu_offload: this.llm_int8_enable_fp32_cpu_offload,
      llm_int8_has_fp16_weight: this.llm_int8_has_fp16_weight,
      llm_int8_skip_modules: this.llm_int8_skip_modules,
      llm_int8_threshold: this.llm_int8_threshold,
      load_in_4bit: this.load_in_4bit,
      load_in_8bit: this.load_in_8bit,
      quant_method: this.quant_method,
    };
  }

  static fromDict(d: Record<string, unknown>): BitsAndBytesConfig {
    return new BitsAndBytesConfig(d as BitsAndBytesConfigFields);
  }
}
