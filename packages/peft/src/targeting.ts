// Which modules get an adapter: PEFT's matching rules (trl-peft-spec 1.6, 1.2, 1.8), as pure functions
// over module names so they can be tested without a model.

import type { LoraConfig } from "./config.js";

/** What the matcher needs to know about a module. */
export interface ModuleEntry {
  name: string;
  kind: "linear" | "embedding" | "other";
}

/** Default targets when target_modules is null (PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
export const DEFAULT_TARGET_MODULES: Record<string, string[]> = {
  llama: ["q_proj", "v_proj"],
  qwen2: ["q_proj", "v_proj"],
  qwen3: ["q_proj", "v_proj"],
  mistral: ["q_proj", "v_proj"],
};

const fullMatch = (pattern: string, key: string) => new RegExp(`^(?:${pattern})$`).test(key);
const listMatch = (list: readonly string[], key: string) =>
  list.some((t) => key === t || key.endsWith(`.${t}`));

/** The rank_pattern / alpha_pattern key that applies to module `key`: regex ^(.*\.)?(k)$, first match in order. */
export function getPatternKey(patterns: Record<string, number>, key: string): string | undefined {
  return Object.keys(patterns).find((k) => new RegExp(`^(.*\\.)?(?:${k})$`).test(key));
}

/** The layer index in a module name (`model.layers.3.mlp` -> 3), with an optional list of ModuleList names. */
export function layerIndexOf(key: string, layersPattern: string[] | string | null): number | null {
  const patterns =
    layersPattern === null ? [null] : Array.isArray(layersPattern) ? layersPattern : [layersPattern];
  for (const p of patterns) {
    const re = p === null ? /^.*?\.[^.]*\.(\d+)\./ : new RegExp(`^.*?\\.${p}\\.(\\d+)\\.`);
    const m = re.exec(key);
    if (m) return Number(m[1]);
  }
  return null;
}

function excluded(config: LoraConfig, key: string): boolean {
  const ex = config.exclude_modules;
  if (ex === null) return false;
  return typeof ex === "string" ? fullMatch(ex, key) : listMatch(ex, key);
}

function isModuleToSave(config: LoraConfig, key: string): boolean {
  return (config.modules_to_save ?? []).some((m) => new RegExp(`(^|.*\\.)${m}($|\\..*)`).test(key));
}

export interface TargetResolution {
  /** Module names that get an adapter. */
  targets: string[];
  /** Entries of a list target_modules that matched no module (PEFT ignores them silently; tsgrad reports them). */
  unmatched: string[];
}

/**
 * Applies target_modules, exclude_modules, modules_to_save and layers_to_transform to the model's modules.
 * `outputEmbedding` is the output head's name, which "all-linear" leaves out.
 * Throws, as PEFT does, when nothing matches.
 */
export function resolveTargets(
  modules: readonly ModuleEntry[],
  config: LoraConfig,
  options: { modelType?: string; outputEmbedding?: string } = {},
): TargetResolution {
  let targets = config.target_modules;
  if (targets === null) {
    targets = options.modelType ? (DEFAULT_TARGET_MODULES[options.modelType] ?? null) : null;
    if (targets === null) {
      throw new Error(
        `LoraConfig: target_modules is null and model_type ${JSON.stringify(options.modelType)} has no default; please specify target_modules`,
      );
    }
  }
  const allLinear = typeof targets === "string" && targets.toLowerCase() === "all-linear";
  const out: string[] = [];
  const hit = new Set<string>();
  for (const { name, kind } of modules) {
    if (name === "" || excluded(config, name) || isModuleToSave(config, name)) continue;
    let matched: boolean;
    if (allLinear)
      matched =
        kind === "linear" &&
        name !== options.outputEmbedding &&
        !name.endsWith(`.${options.outputEmbedding}`);
    else if (typeof targets === "string") matched = fullMatch(targets, name);
    else {
      const list = targets;
      matched = listMatch(list, name);
      if (matched) for (const t of list) if (name === t || name.endsWith(`.${t}`)) hit.add(t);
    }
    if (!matched) continue;
    if (config.layers_to_transform !== null) {
      const idx = layerIndexOf(name, config.layers_pattern);
      const wanted = Array.isArray(config.layers_to_transform)
        ? config.layers_to_transform
        : [config.layers_to_transform];
      if (idx === null || !wanted.includes(idx)) continue;
    }
    if (kind === "other") {
      throw new Error(
        `LoraConfig: target module "${name}" is not a Linear or Embedding layer; tsgrad can only put LoRA on those`,
      );
    }
    out.push(name);
  }
  if (out.length === 0) {
    const shown = typeof targets === "string" ? targets : JSON.stringify(targets);
    const sample = modules
      .filter((m) => m.kind !== "other")
      .slice(0, 8)
      .map((m) => m.name);
    throw new Error(
      `LoraConfig: target modules ${shown} were not found in the base model; linear/embedding modules include: ${sample.join(", ")}`,
    );
  }
  const unmatched = Array.isArray(targets) ? targets.filter((t) => !hit.has(t)) : [];
  return { targets: out, unmatched };
}
