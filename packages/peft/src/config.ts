// PEFT configs with PEFT's field names and defaults (trl-peft-spec 1.1, 4.1, 5.2). Constructing a config
// rejects unknown fields and bad values; reading an adapter_config.json drops unknown keys with a warning
// (as PEFT does, for forward compatibility) but still rejects wrong types and bad values.

import { pythonJsonDumps } from "./python-json.js";

export type TaskType =
  | "CAUSAL_LM"
  | "SEQ_CLS"
  | "SEQ_2_SEQ_LM"
  | "TOKEN_CLS"
  | "QUESTION_ANS"
  | "FEATURE_EXTRACTION";
export type PeftType = "LORA" | "PROMPT_TUNING";
const TASK_TYPES: TaskType[] = [
  "CAUSAL_LM",
  "SEQ_CLS",
  "SEQ_2_SEQ_LM",
  "TOKEN_CLS",
  "QUESTION_ANS",
  "FEATURE_EXTRACTION",
];

/** Version written as peft_version, so files say which tsgrad wrote them. */
export const PEFT_VERSION = "tsgrad-0.1.0";

export class ConfigError extends Error {
  constructor(source: string, field: string, got: unknown, expected: string) {
    super(`${source}: field "${field}" is ${JSON.stringify(got)}; expected ${expected}`);
    this.name = "ConfigError";
  }
}

const BASE_DEFAULTS = {
  task_type: null as TaskType | null,
  base_model_name_or_path: null as string | null,
  revision: null as string | null,
  inference_mode: false,
  auto_mapping: null as Record<string, unknown> | null,
};

export const LORA_DEFAULTS = {
  ...BASE_DEFAULTS,
  r: 8,
  target_modules: null as string[] | string | null,
  exclude_modules: null as string[] | string | null,
  lora_alpha: 8,
  lora_dropout: 0,
  fan_in_fan_out: false,
  bias: "none" as "none" | "all" | "lora_only",
  use_rslora: false,
  modules_to_save: null as string[] | null,
  init_lora_weights: true as boolean | "gaussian",
  layers_to_transform: null as number[] | number | null,
  layers_pattern: null as string[] | string | null,
  rank_pattern: {} as Record<string, number>,
  alpha_pattern: {} as Record<string, number>,
  use_dora: false,
  lora_bias: false,
  // Fields PEFT writes that tsgrad accepts only at their defaults (other LoRA variants and init methods).
  megatron_config: null as null,
  megatron_core: "megatron.core",
  trainable_token_indices: null as null,
  loftq_config: {} as Record<string, never>,
  eva_config: null as null,
  corda_config: null as null,
  lora_ga_config: null as null,
  layer_replication: null as null,
  target_parameters: null as null,
  ensure_weight_tying: false,
  use_qalora: false,
  qalora_group_size: 16,
  alora_invocation_tokens: null as null,
  arrow_config: null as null,
  kasa_config: null as null,
  monteclora_config: null as null,
  velora_config: null as null,
  use_bdlora: null as null,
};
export type LoraConfigFields = typeof LORA_DEFAULTS;

export const PROMPT_TUNING_DEFAULTS = {
  ...BASE_DEFAULTS,
  num_virtual_tokens: 0,
  token_dim: null as number | null,
  num_transformer_submodules: null as number | null,
  num_attention_heads: null as number | null,
  num_layers: null as number | null,
  modules_to_save: null as string[] | null,
  prompt_tuning_init: "RANDOM" as "RANDOM" | "TEXT" | "SAMPLE_VOCAB",
  prompt_tuning_init_text: null as string | null,
  tokenizer_name_or_path: null as string | null,
  tokenizer_kwargs: null as Record<string, unknown> | null,
};
export type PromptTuningConfigFields = typeof PROMPT_TUNING_DEFAULTS;

type Check = (v: unknown) => string | null; // null when fine, else what was expected

const isStrList = (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === "string");
const checks = {
  int:
    (min: number): Check =>
    (v) =>
      Number.isInteger(v) && (v as number) >= min ? null : `an integer >= ${min}`,
  number: (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? null : "a finite number"),
  bool: (v: unknown) => (typeof v === "boolean" ? null : "true or false"),
  oneOf:
    (...xs: unknown[]): Check =>
    (v) =>
      xs.includes(v) ? null : `one of ${xs.map((x) => JSON.stringify(x)).join(", ")}`,
  nullable:
    (c: Check): Check =>
    (v) =>
      v === null ? null : c(v),
  str: (v: unknown) => (typeof v === "string" ? null : "a string"),
  strList: (v: unknown) => (isStrList(v) ? null : "a list of strings"),
  strOrList: (v: unknown) =>
    typeof v === "string" || isStrList(v) ? null : "a string (regex) or a list of strings",
  numRecord: (v: unknown) =>
    v !== null &&
    typeof v === "object" &&
    !Array.isArray(v) &&
    Object.values(v).every((x) => typeof x === "number")
      ? null
      : "an object mapping patterns to numbers",
  onlyDefault:
    (d: unknown): Check =>
    (v) =>
      JSON.stringify(v) === JSON.stringify(d)
        ? null
        : `${JSON.stringify(d)} (other values are not supported by tsgrad)`,
};

const BASE_CHECKS: Record<keyof typeof BASE_DEFAULTS, Check> = {
  task_type: checks.nullable(checks.oneOf(...TASK_TYPES)),
  base_model_name_or_path: checks.nullable(checks.str),
  revision: checks.nullable(checks.str),
  inference_mode: checks.bool,
  auto_mapping: (v) => (v === null || typeof v === "object" ? null : "an object or null"),
};

const LORA_CHECKS: Record<keyof LoraConfigFields, Check> = {
  ...BASE_CHECKS,
  r: checks.int(1),
  target_modules: checks.nullable(checks.strOrList),
  exclude_modules: checks.nullable(checks.strOrList),
  lora_alpha: checks.number,
  lora_dropout: (v) => (typeof v === "number" && v >= 0 && v < 1 ? null : "a number in [0, 1)"),
  fan_in_fan_out: checks.onlyDefault(false),
  bias: checks.oneOf("none", "all", "lora_only"),
  use_rslora: checks.bool,
  modules_to_save: checks.nullable(checks.strList),
  init_lora_weights: checks.oneOf(true, false, "gaussian"),
  layers_to_transform: (v) =>
    v === null || Number.isInteger(v) || (Array.isArray(v) && v.every(Number.isInteger))
      ? null
      : "an integer, a list of integers, or null",
  layers_pattern: checks.nullable(checks.strOrList),
  rank_pattern: checks.numRecord,
  alpha_pattern: checks.numRecord,
  use_dora: checks.bool,
  lora_bias: checks.bool,
  megatron_config: checks.onlyDefault(null),
  megatron_core: checks.nullable(checks.str),
  trainable_token_indices: checks.onlyDefault(null),
  loftq_config: checks.onlyDefault({}),
  eva_config: checks.onlyDefault(null),
  corda_config: checks.onlyDefault(null),
  lora_ga_config: checks.onlyDefault(null),
  layer_replication: checks.onlyDefault(null),
  target_parameters: checks.onlyDefault(null),
  ensure_weight_tying: checks.bool,
  use_qalora: checks.onlyDefault(false),
  qalora_group_size: checks.int(1),
  alora_invocation_tokens: checks.onlyDefault(null),
  arrow_config: checks.onlyDefault(null),
  kasa_config: checks.onlyDefault(null),
  monteclora_config: checks.onlyDefault(null),
  velora_config: checks.onlyDefault(null),
  use_bdlora: (v) =>
    v === null || v === false ? null : "null or false (other values are not supported by tsgrad)",
};

const PROMPT_TUNING_CHECKS: Record<keyof PromptTuningConfigFields, Check> = {
  ...BASE_CHECKS,
  num_virtual_tokens: checks.int(1),
  token_dim: checks.nullable(checks.int(1)),
  num_transformer_submodules: checks.nullable(checks.int(1)),
  num_attention_heads: checks.nullable(checks.int(1)),
  num_layers: checks.nullable(checks.int(1)),
  modules_to_save: checks.nullable(checks.strList),
  prompt_tuning_init: checks.oneOf("RANDOM", "TEXT", "SAMPLE_VOCAB"),
  prompt_tuning_init_text: checks.nullable(checks.str),
  tokenizer_name_or_path: checks.nullable(checks.str),
  tokenizer_kwargs: (v) =>
    v === null || (typeof v === "object" && !Array.isArray(v)) ? null : "an object or null",
};

/** Copies `given` over `defaults`, validating every field; unknown fields throw, or are dropped with a warning from files. */
function build<T extends object>(
  source: string,
  defaults: T,
  fieldChecks: Record<keyof T, Check>,
  given: Record<string, unknown>,
  fromFile: boolean,
): T {
  const out = structuredClone(defaults) as Record<string, unknown>;
  for (const [k, v] of Object.entries(given)) {
    if (k === "peft_type" || k === "peft_version" || k === "runtime_config") continue;
    if (!(k in defaults)) {
      if (fromFile) {
        console.warn(`${source}: unknown field "${k}" ignored`);
        continue;
      }
      throw new ConfigError(source, k, v, `one of the known fields: ${Object.keys(defaults).join(", ")}`);
    }
    if (v === undefined) continue;
    const problem = fieldChecks[k as keyof T](v);
    if (problem !== null) throw new ConfigError(source, k, v, problem);
    out[k] = structuredClone(v);
  }
  return out as T;
}

abstract class PeftConfigBase {
  abstract readonly peft_type: PeftType;
  peft_version: string = PEFT_VERSION;
  /** The dict PEFT's to_dict() gives: every field, inference_mode forced true as in saved files. */
  toDict(): Record<string, unknown> {
    const { ...fields } = this as unknown as Record<string, unknown>;
    return { ...fields, inference_mode: true };
  }
  /** adapter_config.json text, byte-compatible with Python PEFT's writer. */
  toJsonString(): string {
    return pythonJsonDumps(this.toDict());
  }
}

export interface LoraConfig extends LoraConfigFields {}
/**
 * LoRA settings with PEFT's names and defaults.
 * @example new LoraConfig({ r: 16, lora_alpha: 32, target_modules: ["q_proj", "v_proj"], task_type: "CAUSAL_LM" })
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the constructor assigns every field from the validated defaults
export class LoraConfig extends PeftConfigBase {
  readonly peft_type = "LORA" as const;
  constructor(fields: Partial<LoraConfigFields> = {}, source = "LoraConfig", fromFile = false) {
    super();
    Object.assign(
      this,
      build(source, LORA_DEFAULTS, LORA_CHECKS, fields as Record<string, unknown>, fromFile),
    );
    if (
      typeof this.target_modules === "string" &&
      (this.layers_to_transform !== null || this.layers_pattern !== null)
    ) {
      throw new ConfigError(
        source,
        "layers_to_transform",
        this.layers_to_transform,
        "null when target_modules is a regex string (PEFT forbids the combination)",
      );
    }
    if (this.layers_pattern !== null && this.layers_to_transform === null) {
      throw new ConfigError(
        source,
        "layers_pattern",
        this.layers_pattern,
        "to be used together with layers_to_transform",
      );
    }
    if (this.use_dora && this.lora_bias)
      throw new ConfigError(
        source,
        "lora_bias",
        true,
        "false when use_dora is true (DoRA does not support lora_bias)",
      );
    if (Array.isArray(this.target_modules) && this.target_modules.length === 0) {
      throw new ConfigError(
        source,
        "target_modules",
        [],
        'a non-empty list, a regex string, "all-linear", or null for the architecture\'s default',
      );
    }
  }
  /** alpha / r, or alpha / sqrt(r) with rsLoRA (trl-peft-spec 1.2). */
  scaling(r = this.r, alpha = this.lora_alpha): number {
    return this.use_rslora ? alpha / Math.sqrt(r) : alpha / r;
  }
}

export interface PromptTuningConfig extends PromptTuningConfigFields {}
/** Prompt tuning: num_virtual_tokens learned embeddings prepended to the input (trl-peft-spec 4). */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the constructor assigns every field from the validated defaults
export class PromptTuningConfig extends PeftConfigBase {
  readonly peft_type = "PROMPT_TUNING" as const;
  constructor(
    fields: Partial<PromptTuningConfigFields> & { num_virtual_tokens: number },
    source = "PromptTuningConfig",
    fromFile = false,
  ) {
    super();
    if (fields?.num_virtual_tokens === undefined)
      throw new ConfigError(source, "num_virtual_tokens", undefined, "an integer >= 1 (required)");
    Object.assign(
      this,
      build(
        source,
        PROMPT_TUNING_DEFAULTS,
        PROMPT_TUNING_CHECKS,
        fields as Record<string, unknown>,
        fromFile,
      ),
    );
    if (this.prompt_tuning_init === "TEXT") {
      if (!this.prompt_tuning_init_text)
        throw new ConfigError(
          source,
          "prompt_tuning_init_text",
          this.prompt_tuning_init_text,
          "a string when prompt_tuning_init is TEXT",
        );
      if (!this.tokenizer_name_or_path)
        throw new ConfigError(
          source,
          "tokenizer_name_or_path",
          this.tokenizer_name_or_path,
          "a path when prompt_tuning_init is TEXT",
        );
    } else if (this.tokenizer_kwargs !== null) {
      throw new ConfigError(
        source,
        "tokenizer_kwargs",
        this.tokenizer_kwargs,
        "null unless prompt_tuning_init is TEXT",
      );
    }
  }
}

export type PeftConfig = LoraConfig | PromptTuningConfig;

/** Builds the config an adapter_config.json describes, naming the file in every error. */
export function peftConfigFromDict(dict: unknown, source = "adapter_config.json"): PeftConfig {
  if (dict === null || typeof dict !== "object" || Array.isArray(dict))
    throw new ConfigError(source, "(root)", dict, "a JSON object");
  const d = dict as Record<string, unknown>;
  switch (d.peft_type) {
    case "LORA":
      return new LoraConfig(d as Partial<LoraConfigFields>, source, true);
    case "PROMPT_TUNING":
      return new PromptTuningConfig(d as PromptTuningConfigFields, source, true);
    default:
      throw new ConfigError(source, "peft_type", d.peft_type, '"LORA" or "PROMPT_TUNING"');
  }
}
