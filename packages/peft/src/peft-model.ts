// PeftModel: the base model with adapters injected, as PEFT's PeftModelForCausalLM. Its parameter paths
// are PEFT's model-side keys ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"),
// so saving only has to drop the adapter name (trl-peft-spec 5.3).

import {
  type CausalLM,
  type CausalLMInput,
  type CausalLMOutput,
  Embedding,
  type GenerateOptions,
  generate,
  type IntInput,
  isLinearLike,
  isQuantizedLinear,
  Module,
  type PreTrainedTokenizer,
} from "@tsgrad/nn";
import type { Tensor } from "@tsgrad/tensor";
import { type AdapterLayer, isAdapterLayer } from "./adapter-layer.js";
import { LoraConfig, type PeftConfig, PromptTuningConfig } from "./config.js";
import { LoraLinear } from "./lora/layer.js";
import { ModuleDict } from "./module-dict.js";
import { ModulesToSaveWrapper } from "./modules-to-save.js";
import { PromptEmbedding, promptTuningForward, promptTuningGenerateModel } from "./prompt-tuning.js";
import { getPatternKey, type ModuleEntry, resolveTargets } from "./targeting.js";

/** PEFT's LoraModel: holds the base model as `.model`, which puts "model." after "base_model.". */
export class LoraModel extends Module {
  constructor(public model: CausalLM) {
    super();
  }
}

export interface GetPeftModelOptions {
  adapter_name?: string;
  /** Required for prompt tuning with TEXT init. */
  tokenizer?: PreTrainedTokenizer;
}

export class PeftModel extends Module {
  /** LoraModel for LoRA; the causal LM itself for prompt tuning (as in PEFT). */
  base_model: LoraModel | CausalLM;
  prompt_encoder = new ModuleDict<PromptEmbedding>();
  private _configs = new Map<string, PeftConfig>();
  private _active: string;
  private _disabled = false;

  /** @internal Use getPeftModel or PeftModel.fromPretrained. */
  constructor(model: CausalLM, config: PeftConfig, adapterName: string) {
    super();
    this.base_model = config instanceof LoraConfig ? new LoraModel(model) : model;
    this._active = adapterName;
    this._configs.set(adapterName, config);
  }

  /** The wrapped Hugging Face model (with adapter layers inside, for LoRA). */
  get model(): CausalLM {
    return this.base_model instanceof LoraModel ? this.base_model.model : this.base_model;
  }
  get config(): CausalLM["config"] {
    return this.model.config;
  }
  get peftConfig(): ReadonlyMap<string, PeftConfig> {
    return this._configs;
  }
  get activeAdapter(): string {
    return this._active;
  }
  get activeConfig(): PeftConfig {
    return this._configs.get(this._active)!;
  }
  get isPromptLearning(): boolean {
    return this.activeConfig instanceof PromptTuningConfig;
  }

  /** Adapter layers and modules_to_save wrappers in the model. */
  adapterLayers(): (Module & AdapterLayer)[] {
    return [...this.model.namedModules()].map(([, m]) => m).filter(isAdapterLayer);
  }
  private wrappers(): ModulesToSaveWrapper[] {
    return [...this.model.namedModules()].map(([, m]) => m).filter((m) => m instanceof ModulesToSaveWrapper);
  }

  forward(input: CausalLMInput): CausalLMOutput {
    if (this.isPromptLearning && !this._disabled) {
      return promptTuningForward(this.model, this.prompt_encoder.get(this._active)!, input);
    }
    return this.model.forward(input);
  }

  generate(inputIds: IntInput, options: GenerateOptions): Tensor {
    if (this.isPromptLearning && !this._disabled) {
      return generate(
        promptTuningGenerateModel(this.model, this.prompt_encoder.get(this._active)!),
        inputIds,
        options,
      );
    }
    return generate(this.model, inputIds, options);
  }

  /**
   * Runs fn with every adapter off: the base model's outputs (DPO and GRPO use this as the reference).
   * @example const ref = peft.disableAdapter(() => peft.forward({ input_ids }).logits);
   */
  disableAdapter<T>(fn: () => T): T {
    const was = this._disabled;
    this.setDisabled(true);
    try {
      return fn();
    } finally {
      this.setDisabled(was);
    }
  }
  private setDisabled(disabled: boolean): void {
    this._disabled = disabled;
    for (const l of this.adapterLayers()) l.setDisabled(disabled);
    for (const w of this.wrappers()) w.setDisabled(disabled);
  }

  /** Makes `name` the active adapter and the only trainable one (unless loaded for inference). */
  setAdapter(name: string): void {
    const cfg = this._configs.get(name);
    if (!cfg)
      throw new Error(`setAdapter: no adapter named "${name}"; have ${[...this._configs.keys()].join(", ")}`);
    this._active = name;
    for (const l of this.adapterLayers()) l.setActiveAdapters([name]);
    for (const w of this.wrappers()) w.setActiveAdapter(name);
    this.markTrainable(name);
  }

  /** Injects a second adapter; it is neither active nor trainable until setAdapter(name). */
  addAdapter(name: string, config: PeftConfig, options: { tokenizer?: PreTrainedTokenizer } = {}): void {
    if (this._configs.has(name)) throw new Error(`addAdapter: an adapter named "${name}" already exists`);
    if (config instanceof LoraConfig !== this.activeConfig instanceof LoraConfig) {
      throw new Error("addAdapter: LoRA and prompt-tuning adapters cannot be mixed in one model");
    }
    this._configs.set(name, config);
    if (config instanceof LoraConfig) {
      injectLora(this.model, config, name);
      for (const l of this.adapterLayers()) l.setActiveAdapters([this._active]);
      this.markTrainable(this._active);
      return;
    }
    this.prompt_encoder.set(name, PromptEmbedding.create(this.model, config, options.tokenizer));
    this.markTrainable(this._active);
  }

  /** Freezes everything, then unfreezes the adapter's own weights and the biases `bias` selects. */
  markTrainable(name: string): void {
    const cfg = this._configs.get(name)!;
    for (const p of this.parameters()) p.requiresGrad = false;
    if (cfg.inference_mode) return;
    for (const [key, p] of this.namedParameters()) {
      const own =
        key.includes(`.${name}.`) && /\.(lora_A|lora_B|lora_magnitude_vector|modules_to_save)\./.test(key);
      if (own || key.startsWith(`prompt_encoder.${name}.`)) p.requiresGrad = true;
    }
    if (cfg instanceof LoraConfig && cfg.bias !== "none") {
      for (const [key, p] of this.namedParameters()) {
        if (!(key === "bias" || key.endsWith(".bias")) || /\.lora_B\./.test(key)) continue;
        if (cfg.bias === "all" || key.endsWith(".base_layer.bias")) p.requiresGrad = true;
      }
    }
  }

  /** "trainable params: 1,081,344 || all params: 495,114,112 || trainable%: 0.2184", as PEFT prints it. */
  trainableParametersSummary(): string {
    let trainable = 0;
    let all = 0;
    for (const p of this.parameters()) {
      all += p.numel;
      if (p.requiresGrad) trainable += p.numel;
    }
    const fmt = (n: number) => n.toLocaleString("en-US");
    return `trainable params: ${fmt(trainable)} || all params: ${fmt(all)} || trainable%: ${((100 * trainable) / all).toFixed(4)}`;
  }
  printTrainableParameters(): void {
    console.log(this.trainableParametersSummary());
  }

  /** Folds the active LoRA adapters into the base weights; forward is unchanged. */
  merge(): void {
    this.requireLora("merge");
    this.dequantizeQuantizedBases("merge");
    for (const l of this.adapterLayers()) l.merge();
  }
  unmerge(): void {
    this.requireLora("unmerge");
    for (const l of this.adapterLayers()) l.unmerge();
  }

  /**
   * Merges the active adapter and returns the plain base model with every adapter layer replaced by its
   * base layer and every modules_to_save wrapper by its trained copy (PEFT's merge_and_unload).
   */
  mergeAndUnload(): CausalLM {
    this.requireLora("mergeAndUnload");
    this.dequantizeQuantizedBases("mergeAndUnload");
    for (const l of this.adapterLayers()) if (!l.merged) l.merge();
    return this.unwrap(true);
  }

  /**
   * A quantized base (QLoRA) is dequantized before merging, as the recommended recipe says (spec 1.9,
   * 11.1): the merged model comes back in full precision, with one warning, and without quantization_config.
   */
  private dequantizeQuantizedBases(op: string): void {
    let n = 0;
    for (const l of this.adapterLayers()) if (l instanceof LoraLinear && l.dequantizeBase()) n++;
    if (n === 0) return;
    console.warn(
      `${op}: the base model is quantized; ${n} quantized layers were dequantized to float32 and the merged model is full precision (re-quantize it explicitly if you need a quantized copy; rounding changes generations)`,
    );
    const config = this.model.config as unknown as Record<string, unknown>;
    if (![...this.model.namedModules()].some(([, m]) => isQuantizedLinear(m)))
      delete config.quantization_config;
  }

  /** The base model with adapters removed and nothing merged (PEFT's unload). */
  unload(): CausalLM {
    if (this.isPromptLearning) return this.model;
    for (const l of this.adapterLayers()) if (l.merged) l.unmerge();
    return this.unwrap(false);
  }

  private unwrap(keepTrainedCopies: boolean): CausalLM {
    const model = this.model;
    const targets = [...model.namedModules()].filter(
      ([, m]) => isAdapterLayer(m) || m instanceof ModulesToSaveWrapper,
    );
    for (const [path, m] of targets.reverse()) {
      if (m instanceof ModulesToSaveWrapper)
        model.setSubmodule(path, keepTrainedCopies ? m.current() : m.original_module);
      else model.setSubmodule(path, (m as unknown as AdapterLayer).base_layer);
    }
    return model;
  }

  private requireLora(op: string): void {
    if (!(this.activeConfig instanceof LoraConfig))
      throw new Error(`${op}: only LoRA adapters can be merged`);
  }

  // Saving and loading live in save-load.ts, which installs these so the API reads like PEFT's.
  declare savePretrained: (dir: string, options?: { selected_adapters?: string[] }) => Promise<void>;
  declare static fromPretrained: (
    base: CausalLM,
    dir: string,
    options?: { adapter_name?: string; is_trainable?: boolean },
  ) => Promise<PeftModel>;
}

/** Which module kind the matcher sees: adapter layers count as the Linear they wrap. */
function moduleEntries(model: CausalLM): ModuleEntry[] {
  const out: ModuleEntry[] = [];
  const inside: string[] = [];
  for (const [name, m] of model.namedModules()) {
    if (inside.some((p) => name.startsWith(`${p}.`))) continue;
    if (isAdapterLayer(m) || m instanceof ModulesToSaveWrapper) inside.push(name);
    const kind = isLinearLike(m) ? "linear" : m instanceof Embedding ? "embedding" : "other";
    out.push({ name, kind });
  }
  return out;
}

/** Wraps the modules config selects with LoRA adapter `name` (PEFT's inject_adapter), and modules_to_save. */
export function injectLora(model: CausalLM, config: LoraConfig, name: string): string[] {
  const entries = moduleEntries(model);
  const { targets, unmatched } = resolveTargets(entries, config, {
    modelType: (model.config as { model_type?: string }).model_type,
    outputEmbedding: "lm_head",
  });
  if (typeof config.target_modules === "string" && config.target_modules.toLowerCase() === "all-linear") {
    // PEFT saves the expanded list of module names in place of "all-linear".
    config.target_modules = [...new Set(targets.map((t) => t.slice(t.lastIndexOf(".") + 1)))];
  }
  if (unmatched.length > 0)
    console.warn(
      `LoraConfig: target_modules ${JSON.stringify(unmatched)} matched no module and were ignored`,
    );
  for (const path of targets) {
    const m = model.getSubmodule(path);
    if (m instanceof Embedding)
      throw new Error(`LoRA on the embedding "${path}" is not supported; target Linear layers`);
    const rKey = getPatternKey(config.rank_pattern, path);
    const aKey = getPatternKey(config.alpha_pattern, path);
    const settings = {
      ...config,
      r: rKey !== undefined ? config.rank_pattern[rKey]! : config.r,
      lora_alpha: aKey !== undefined ? config.alpha_pattern[aKey]! : config.lora_alpha,
    };
    if (m instanceof LoraLinear) m.addAdapter(name, settings);
    else if (isLinearLike(m)) model.setSubmodule(path, new LoraLinear(m, name, settings));
  }
  for (const suffix of config.modules_to_save ?? []) {
    const hits = entries.filter((e) => e.name !== "" && e.name.endsWith(suffix));
    if (hits.length === 0)
      throw new Error(`LoraConfig: modules_to_save "${suffix}" matches no module of the model`);
    for (const { name: path } of hits) {
      const m = model.getSubmodule(path);
      if (m instanceof ModulesToSaveWrapper) m.addAdapter(name);
      else model.setSubmodule(path, new ModulesToSaveWrapper(m, name));
    }
  }
  return targets;
}

/**
 * Wraps `model` with a new adapter as PEFT's get_peft_model: matching Linear layers get LoRA (the model
 * code never mentions it), everything else is frozen. Prompt tuning with TEXT init needs the tokenizer
 * in options (load it with AutoTokenizer.fromPretrained(config.tokenizer_name_or_path)).
 * @example const peft = getPeftModel(model, new LoraConfig({ r: 16, lora_alpha: 32, target_modules: "all-linear" }));
 */
export function getPeftModel(
  model: CausalLM,
  config: PeftConfig,
  options: GetPeftModelOptions = {},
): PeftModel {
  const name = options.adapter_name ?? "default";
  if (model instanceof PeftModel)
    throw new Error("getPeftModel: the model already has adapters; use addAdapter");
  const peft = new PeftModel(model, config, name);
  if (config instanceof LoraConfig) injectLora(model, config, name);
  else peft.prompt_encoder.set(name, PromptEmbedding.create(model, config, options.tokenizer));
  peft.markTrainable(name);
  return peft;
}
