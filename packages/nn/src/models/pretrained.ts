// Reading and writing Hugging Face model directories: config.json plus model.safetensors, or shards with
// model.safetensors.index.json. Weights load tensor by tensor into the existing parameters, so a model is
// never held twice; every key and shape is checked before the first tensor is read.

import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../io/atomic.js";
import { openSafetensors, saveShardedSafetensors } from "../io/safetensors.js";
import type { Module } from "../module.js";
import { stateDictForSave } from "../quant/serialize.js";

function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

export const CONFIG_FILE = "config.json";

/** config.json of a model directory, parsed, with errors that name the file. */
export async function readConfigJson(dir: string): Promise<Record<string, unknown>> {
  const path = join(dir, CONFIG_FILE);
  if (!existsSync(path))
    throw new Error(
      `fromPretrained: ${path} not found; a model directory needs ${CONFIG_FILE} beside its weights`,
    );
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new Error(`fromPretrained: ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json))
    throw new Error(
      `fromPretrained: ${path} must hold a JSON object, got ${JSON.stringify(json)?.slice(0, 80)}`,
    );
  return json as Record<string, unknown>;
}

export const GENERATION_CONFIG_FILE = "generation_config.json";

/** The token ids of generation_config.json, or {} when the directory has none. */
export async function readGenerationConfig(dir: string): Promise<{
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  bos_token_id?: number | null;
}> {
  const path = join(dir, GENERATION_CONFIG_FILE);
  if (!existsSync(path)) return {};
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new Error(`fromPretrained: ${path} is not valid JSON: ${(e as Error).message}`);
  }
  const out: Record<string, unknown> = {};
  for (const k of ["eos_token_id", "pad_token_id", "bos_token_id"]) if (k in json) out[k] = json[k];
  return out;
}

export interface LoadWeightsOptions {
  /** Throw on tensors in the checkpoint that the model has no parameter for (default true). */
  strict?: boolean;
  /** Checkpoint keys that may be present without a parameter (tied lm_head.weight, rotary inv_freq buffers). */
  ignore?: (key: string) => boolean;
}

/**
 * Loads the safetensors weights in `dir` into `model`'s parameters, by name, casting to each parameter's
 * dtype. Missing tensors, wrong shapes and (when strict) unexpected tensors are errors naming the key and file.
 */
export async function loadWeights(
  model: Module,
  dir: string,
  options: LoadWeightsOptions = {},
): Promise<void> {
  const { strict = true, ignore = () => false } = options;
  const reader = await openSafetensors(dir);
  try {
    const params = new Map(model.namedParameters());
    const problems: string[] = [];
    for (const [key, p] of params) {
      if (!reader.has(key)) {
        problems.push(`tensor "${key}" is missing (expected shape ${fmt(p.shape)})`);
        continue;
      }
      const { shape } = reader.info(key);
      if (shape.length !== p.ndim || shape.some((d, i) => d !== p.shape[i]))
        problems.push(`tensor "${key}" has shape ${fmt(shape)}, expected ${fmt(p.shape)}`);
    }
    if (strict) {
      const unexpected = reader.keys().filter((k) => !params.has(k) && !ignore(k));
      if (unexpected.length > 0) problems.push(`unexpected tensors: ${unexpected.join(", ")}`);
    }
    if (problems.length > 0) throw new Error(`fromPretrained: ${reader.path}: ${problems.join("; ")}`);
    for (const [key, p] of params) {
      const t = await reader.tensor(key, { dtype: p.dtype });
      p.assign(t);
      t.dispose();
    }
  } finally {
    await reader.close();
  }
}

export interface SavePretrainedOptions {
  /** Largest weights file before sharding, bytes or "5GB"-style (default "5GB"). */
  maxShardSize?: number | string;
}

/**
 * Writes `dir/config.json` and the state dict as safetensors (sharded above maxShardSize). Each file is
 * written to a temporary name and renamed into place; returns the file names written.
 */
export async function savePretrained(
  model: Module & { config: object; dtype: string },
  dir: string,
  options: SavePretrainedOptions = {},
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = await saveShardedSafetensors(dir, stateDictForSave(model), {
    maxShardSize: options.maxShardSize ?? "5GB",
    metadata: { format: "pt" },
  });
  const config = { ...model.config, torch_dtype: model.dtype };
  delete (config as Record<string, unknown>).gradient_checkpointing;
  await writeFileAtomic(join(dir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  const gen = (model as { generationConfig?: object }).generationConfig ?? {};
  if (Object.keys(gen).length === 0) return [...files, CONFIG_FILE];
  await writeFileAtomic(join(dir, GENERATION_CONFIG_FILE), `${JSON.stringify(gen, null, 2)}\n`);
  return [...files, CONFIG_FILE, GENERATION_CONFIG_FILE];
}
