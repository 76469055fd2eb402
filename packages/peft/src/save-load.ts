// Saving and loading adapters in PEFT's layout (trl-peft-spec 5): adapter_config.json plus
// adapter_model.safetensors per adapter, the "default" one at the root and others in sub-folders.

import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type CausalLM, openSafetensors, saveSafetensors, writeFileAtomic } from "@tsgrad/nn";
import { noGrad, type Tensor } from "@tsgrad/tensor";
import { LoraConfig, type PeftConfig, peftConfigFromDict } from "./config.js";
import { stripAdapterName } from "./keys.js";
import { getPeftModel, PeftModel } from "./peft-model.js";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";

/** The parameters that make up adapter `name`, by model-side key (PeftModel paths). */
function adapterParameters(peft: PeftModel, name: string): Map<string, Tensor> {
  const cfg = peft.peftConfig.get(name)!;
  const out = new Map<string, Tensor>();
  for (const [key, p] of peft.namedParameters()) {
    if (key.startsWith(`prompt_encoder.${name}.`)) out.set(key, p);
    else if (
      key.includes(`.${name}.`) &&
      /\.(lora_A|lora_B|lora_magnitude_vector|modules_to_save)\./.test(key)
    )
      out.set(key, p);
    else if (
      cfg instanceof LoraConfig &&
      cfg.bias !== "none" &&
      key.endsWith(".bias") &&
      !/\.lora_B\./.test(key)
    ) {
      if (cfg.bias === "all" || key.endsWith(".base_layer.bias")) out.set(key, p);
    }
  }
  return out;
}

/** Model-side key -> the name in adapter_model.safetensors (spec 5.3 and 4.4). */
function fileKey(key: string, name: string): string {
  if (key.startsWith(`prompt_encoder.${name}.`)) return "prompt_embeddings";
  return stripAdapterName(key, name);
}

function adapterDir(dir: string, name: string): string {
  return name === "default" ? dir : join(dir, name);
}

/**
 * Writes each adapter's adapter_config.json and adapter_model.safetensors, atomically; Python PEFT loads them.
 * @example await peft.savePretrained("out/adapter");
 */
export async function savePeftModel(
  peft: PeftModel,
  dir: string,
  options: { selected_adapters?: string[] } = {},
): Promise<void> {
  const names = options.selected_adapters ?? [...peft.peftConfig.keys()];
  for (const name of names) {
    const cfg = peft.peftConfig.get(name);
    if (!cfg) throw new Error(`savePretrained: no adapter named "${name}"`);
    const out = adapterDir(dir, name);
    await mkdir(out, { recursive: true });
    const tensors: Record<string, Tensor> = {};
    for (const [key, p] of adapterParameters(peft, name)) tensors[fileKey(key, name)] = p;
    // As PEFT does, the base model's name is filled in at save time when the config has none.
    cfg.base_model_name_or_path ??= (peft.config as { _name_or_path?: string })._name_or_path ?? null;
    await saveSafetensors(join(out, ADAPTER_WEIGHTS), tensors, { metadata: { format: "pt" } });
    await writeFileAtomic(join(out, ADAPTER_CONFIG), cfg.toJsonString());
  }
}

/** Reads and validates dir/adapter_config.json. */
export async function loadPeftConfig(dir: string): Promise<PeftConfig> {
  const path = join(dir, ADAPTER_CONFIG);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new Error(
      `${path}: adapter config not found (an adapter folder holds ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS})`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return peftConfigFromDict(json, path);
}

export interface FromPretrainedOptions {
  adapter_name?: string;
  /** Keep the adapter trainable (PEFT's is_trainable); by default it is loaded frozen for inference. */
  is_trainable?: boolean;
}

/**
 * Loads an adapter folder written by tsgrad or Python PEFT onto `base`. On any error (bad config, a key
 * that names no module, a shape that does not fit, a missing tensor) the base model is left as it was.
 * @example const peft = await loadPeftModel(base, "out/adapter");
 */
export async function loadPeftModel(
  base: CausalLM,
  dir: string,
  options: FromPretrainedOptions = {},
): Promise<PeftModel> {
  const name = options.adapter_name ?? "default";
  const config = await loadPeftConfig(dir);
  config.inference_mode = !options.is_trainable;
  const frozen = new Map([...base.namedParameters()].map(([, p]) => [p, p.requiresGrad] as const));
  const peft = getPeftModel(base, config, { adapter_name: name });
  try {
    await loadAdapterWeights(peft, dir, name);
  } catch (e) {
    peft.unload();
    for (const [p, flag] of frozen) p.requiresGrad = flag;
    throw e;
  }
  // As PEFT's load_adapter: an adapter loaded for inference leaves the model in eval mode (no LoRA dropout).
  if (!options.is_trainable) peft.eval();
  return peft;
}

/** Copies dir/adapter_model.safetensors into adapter `name`, checking every key and shape first. */
export async function loadAdapterWeights(peft: PeftModel, dir: string, name: string): Promise<void> {
  const path = join(dir, ADAPTER_WEIGHTS);
  const reader = await openSafetensors(path);
  try {
    const wanted = new Map<string, Tensor>();
    for (const [key, p] of adapterParameters(peft, name)) wanted.set(fileKey(key, name), p);
    const fileKeys = reader.keys();
    const unknown = fileKeys.filter((k) => !wanted.has(k));
    if (unknown.length > 0) {
      const sample = [...wanted.keys()].slice(0, 3).join(", ");
      throw new Error(
        `${path}: key ${unknown[0]} names no adapter parameter of this model (${unknown.length} such keys; expected keys like ${sample})`,
      );
    }
    const missing = [...wanted.keys()].filter((k) => !reader.has(k));
    if (missing.length > 0)
      throw new Error(
        `${path}: missing adapter keys ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""}`,
      );
    for (const k of fileKeys) {
      const got = reader.info(k).shape;
      const want = wanted.get(k)!.shape;
      if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
        throw new Error(
          `${path}: tensor ${k} has shape [${got.join(", ")}], but the model expects [${want.join(", ")}] (does the adapter fit this base model?)`,
        );
      }
    }
    const values = new Map<string, Tensor>();
    for (const k of fileKeys) values.set(k, await reader.tensor(k));
    noGrad(() => {
      for (const [k, v] of values) (wanted.get(k) as unknown as { assign(t: Tensor): void }).assign(v);
    });
  } finally {
    await reader.close();
  }
}

PeftModel.fromPretrained = loadPeftModel;
PeftModel.prototype.savePretrained = function (
  this: PeftModel,
  dir: string,
  options?: { selected_adapters?: string[] },
) {
  return savePeftModel(this, dir, options);
};
