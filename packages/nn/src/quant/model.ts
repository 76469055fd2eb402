// Quantizing a causal LM: which Linears become Linear4bit / Linear8bitLt (those of the decoder layers, minus
// llm_int8_skip_modules; embeddings, norms and lm_head stay in full precision), in place on a built model or
// while its checkpoint is read, one weight at a time, so the float32 model is never held whole.

import { bfloat16BitsToFloat32, type DType, float16BitsToFloat32, type Tensor } from "@tsgrad/tensor";
import { openSafetensors, type SafetensorsReader } from "../io/safetensors.js";
import { Linear } from "../layers/linear.js";
import { type CausalLM, decoderLayerFor } from "../models/causal-lm.js";
import type { ResolvedDecoderConfig } from "../models/config.js";
import { Module } from "../module.js";
import { BitsAndBytesConfig, type BitsAndBytesConfigFields } from "./config.js";
import type { QuantSourceDType } from "./functional.js";
import { Linear4bit } from "./linear4bit.js";
import { Linear8bitLt } from "./linear8bit.js";
import { QUANT_STATE_PREFIX, readLinear4bit, readLinear8bit } from "./serialize.js";

export type QuantizedLinear = Linear4bit | Linear8bitLt;

export function isQuantizedLinear(m: unknown): m is QuantizedLinear {
  return m instanceof Linear4bit || m instanceof Linear8bitLt;
}

function asConfig(c: BitsAndBytesConfig | BitsAndBytesConfigFields): BitsAndBytesConfig {
  return c instanceof BitsAndBytesConfig ? c : new BitsAndBytesConfig(c);
}

/**
 * Stands in for a Linear that loadQuantizedWeights will replace by its quantized form: the shape and
 * whether there is a bias, no weight data. Never left in a loaded model.
 */
export class PendingLinear extends Module {
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly hasBias: boolean,
  ) {
    super();
  }
  forward(): Tensor {
    throw new Error("PendingLinear: this layer was never loaded");
  }
}

/**
 * Builds a causal LM for a quantized load without ever holding all of its float32 weights: the model is
 * made with no decoder layers, then each layer is made (zero-filled) and its quantization targets are
 * swapped for PendingLinear placeholders at once, so at most one layer's float weights exist.
 */
export function buildForQuantizedLoad(
  make: (config: Record<string, unknown>) => CausalLM,
  config: Record<string, unknown>,
  quantization: BitsAndBytesConfig | BitsAndBytesConfigFields,
  dtype: DType = "float32",
): CausalLM {
  const cfg = asConfig(quantization);
  const L = config.num_hidden_layers;
  if (typeof L !== "number" || !Number.isInteger(L) || L < 0)
    throw new Error(`fromPretrained: num_hidden_layers ${JSON.stringify(L)} is not a non-negative integer`);
  const model = make({ ...config, num_hidden_layers: 0 });
  // The same layers DecoderModel builds; the quant-model test checks the trees stay identical.
  const r = (model as unknown as { _r: ResolvedDecoderConfig })._r;
  for (let i = 0; i < L; i++) {
    const layer = decoderLayerFor(r, { dtype, init: "zeros" });
    for (const [path, m] of [...layer.namedModules()]) {
      if (!(m instanceof Linear) || cfg.skips(`model.layers.${i}.${path}`)) continue;
      layer.setSubmodule(path, new PendingLinear(m.inFeatures, m.outFeatures, m.bias !== null));
      m.weight.dispose();
      m.bias?.dispose();
    }
    model.model.layers.push(layer);
  }
  r.layers = L;
  (model.config as unknown as Record<string, unknown>).num_hidden_layers = L;
  return model;
}

/** Paths of the decoder-layer modules (model.layers.N.*) that are not Module containers, skip list applied. */
function decoderLeafPaths(model: Module, cfg: BitsAndBytesConfig): [string, Module][] {
  const out: [string, Module][] = [];
  for (const [path, m] of model.namedModules()) {
    if (!/^model\.layers\.\d+\./.test(path) || cfg.skips(path)) continue;
    if (m instanceof Linear || m instanceof PendingLinear || isQuantizedLinear(m)) out.push([path, m]);
    else if ("inFeatures" in m && "outFeatures" in m) out.push([path, m]); // a Linear-like wrapper
  }
  return out;
}

/** Quantizes one Linear as the config says. */
export function quantizeLinear(
  linear: Module,
  config: BitsAndBytesConfig | BitsAndBytesConfigFields,
  dtype: QuantSourceDType = "float32",
): QuantizedLinear {
  const cfg = asConfig(config);
  if (!cfg.quantized)
    throw new Error("quantizeLinear: the config asks for neither load_in_4bit nor load_in_8bit");
  if (cfg.load_in_8bit) return Linear8bitLt.fromLinear(linear, cfg.llm_int8_threshold);
  return Linear4bit.fromLinear(linear, {
    quantType: cfg.bnb_4bit_quant_type,
    compressStatistics: cfg.bnb_4bit_use_double_quant,
    computeDtype: cfg.bnb_4bit_compute_dtype,
    quantStorage: cfg.bnb_4bit_quant_storage,
    dtype,
  });
}

/**
 * Replaces every Linear of the decoder layers by its quantized form, in place, and records the config as
 * model.config.quantization_config. Anything else there that is not a plain Linear (an adapter layer) is
 * an error: quantize before adding adapters.
 * @example quantizeModel(model, new BitsAndBytesConfig({ load_in_4bit: true, bnb_4bit_quant_type: "nf4" }));
 */
export function quantizeModel<M extends Module>(
  model: M,
  config: BitsAndBytesConfig | BitsAndBytesConfigFields,
): M {
  const cfg = asConfig(config);
  for (const [path, m] of decoderLeafPaths(model, cfg)) {
    if (isQuantizedLinear(m)) throw new Error(`quantizeModel: "${path}" is already quantized`);
    if (!(m instanceof Linear))
      throw new TypeError(
        `quantizeModel: "${path}" is a ${m.constructor.name}; only Linear layers can be quantized to ${cfg.load_in_8bit ? 8 : 4} bits (quantize before adding adapters)`,
      );
    const q = quantizeLinear(m, cfg);
    model.setSubmodule(path, q);
    m.weight.dispose();
  }
  const c = (model as unknown as { config?: Record<string, unknown> }).config;
  if (c && typeof c === "object") c.quantization_config = cfg.toDict();
  return model;
}

/** Bytes held by the quantized weights of the model (packed codes and statistics; biases excluded). */
export function quantizedWeightBytes(model: Module): { bytes: number; params: number } {
  let bytes = 0;
  let params = 0;
  for (const [, m] of model.namedModules()) {
    if (isQuantizedLinear(m)) {
      bytes += m.weightBytes();
      params += m.inFeatures * m.outFeatures;
    }
  }
  return { bytes, params };
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** A stored float tensor as one float32 array, decoded from the file's bytes with no tensor in between. */
async function readFloat32(reader: SafetensorsReader, key: string): Promise<Float32Array> {
  const { dtype } = reader.info(key);
  const raw = await reader.raw(key);
  const { buffer, byteOffset, byteLength } = raw;
  switch (dtype) {
    case "F32":
      return byteOffset % 4 === 0
        ? new Float32Array(buffer, byteOffset, byteLength / 4)
        : new Float32Array(raw.slice().buffer);
    case "BF16":
      return bfloat16BitsToFloat32(new Uint16Array(raw.slice().buffer));
    case "F16":
      return float16BitsToFloat32(new Uint16Array(raw.slice().buffer));
    case "F64":
      return Float32Array.from(new Float64Array(raw.slice().buffer));
    default:
      throw new Error(
        `fromPretrained: ${reader.path}: "${key}" is ${dtype}; a weight to quantize must be a float tensor`,
      );
  }
}

export interface LoadQuantizedOptions {
  strict?: boolean;
  ignore?: (key: string) => boolean;
}

/**
 * Loads `dir`'s weights into `model`, quantizing the decoder Linears as each weight is read (or taking
 * bitsandbytes' serialized 4-bit/8-bit tensors as they are, with no re-quantization). Every key and
 * shape is checked before the first tensor is read, as loadWeights does.
 */
export async function loadQuantizedWeights(
  model: Module,
  dir: string,
  config: BitsAndBytesConfig | BitsAndBytesConfigFields,
  options: LoadQuantizedOptions = {},
): Promise<void> {
  const cfg = asConfig(config);
  const { strict = true, ignore = () => false } = options;
  const targets = new Map<string, Linear | PendingLinear>();
  for (const [path, m] of decoderLeafPaths(model, cfg)) {
    if (!(m instanceof Linear || m instanceof PendingLinear))
      throw new TypeError(
        `fromPretrained: "${path}" is a ${m.constructor.name}; only Linear layers can be quantized`,
      );
    targets.set(path, m);
  }
  const hasBias = (m: Linear | PendingLinear) => (m instanceof Linear ? m.bias !== null : m.hasBias);
  const targetParams = new Set<string>();
  for (const [path, lin] of targets) {
    targetParams.add(`${path}.weight`);
    if (hasBias(lin)) targetParams.add(`${path}.bias`);
  }
  const reader = await openSafetensors(dir);
  try {
    const params = new Map([...model.namedParameters()].filter(([k]) => !targetParams.has(k)));
    const consumed = new Set<string>();
    const problems: string[] = [];
    const check = (key: string, shape: readonly number[]) => {
      if (!reader.has(key)) {
        problems.push(`tensor "${key}" is missing (expected shape ${fmt(shape)})`);
        return;
      }
      consumed.add(key);
      const got = reader.info(key).shape;
      if (got.length !== shape.length || got.some((d, i) => d !== shape[i]))
        problems.push(`tensor "${key}" has shape ${fmt(got)}, expected ${fmt(shape)}`);
    };
    for (const [key, p] of params) check(key, p.shape);
    const kinds = new Map<string, "float" | "4bit" | "8bit">();
    for (const [path, lin] of targets) {
      const w = `${path}.weight`;
      const prequant4 = reader
        .keys()
        .filter((k) => k.startsWith(`${w}.`) || k.startsWith(`${path}.${QUANT_STATE_PREFIX}`));
      if (prequant4.length > 0) {
        kinds.set(path, "4bit");
        if (!cfg.load_in_4bit)
          problems.push(
            `"${path}" is stored in 4 bits but the quantization_config does not ask for load_in_4bit`,
          );
        for (const k of prequant4) consumed.add(k);
        consumed.add(w);
      } else if (reader.has(`${path}.SCB`)) {
        kinds.set(path, "8bit");
        if (!cfg.load_in_8bit)
          problems.push(
            `"${path}" is stored in 8 bits but the quantization_config does not ask for load_in_8bit`,
          );
        check(w, [lin.outFeatures, lin.inFeatures]);
        check(`${path}.SCB`, [lin.outFeatures]);
        if (reader.has(`${path}.weight_format`)) consumed.add(`${path}.weight_format`);
      } else {
        kinds.set(path, "float");
        check(w, [lin.outFeatures, lin.inFeatures]);
      }
      if (hasBias(lin)) check(`${path}.bias`, [lin.outFeatures]);
    }
    if (strict) {
      const unexpected = reader.keys().filter((k) => !consumed.has(k) && !ignore(k));
      if (unexpected.length > 0) problems.push(`unexpected tensors: ${unexpected.join(", ")}`);
    }
    if (problems.length > 0) throw new Error(`fromPretrained: ${reader.path}: ${problems.join("; ")}`);

    // Free the zero-filled weights of the layers to quantize before any tensor is read.
    for (const lin of targets.values()) {
      if (!(lin instanceof Linear)) continue;
      lin.weight.dispose();
      lin.bias?.dispose();
    }
    for (const [path, lin] of targets) {
      let bias: Tensor | null = null;
      if (hasBias(lin)) bias = await reader.tensor(`${path}.bias`, { dtype: "float32" });
      let q: QuantizedLinear;
      const kind = kinds.get(path)!;
      if (kind === "4bit") {
        q = await readLinear4bit(reader, path, bias, { computeDtype: cfg.bnb_4bit_compute_dtype });
        if (q.inFeatures !== lin.inFeatures || q.outFeatures !== lin.outFeatures)
          throw new Error(
            `fromPretrained: ${reader.path}: "${path}" is stored as [${q.outFeatures}, ${q.inFeatures}], expected [${lin.outFeatures}, ${lin.inFeatures}]`,
          );
      } else if (kind === "8bit") {
        q = await readLinear8bit(reader, path, bias, cfg.llm_int8_threshold);
      } else {
        const values = await readFloat32(reader, `${path}.weight`);
        const shape: [number, number] = [lin.outFeatures, lin.inFeatures];
        q = cfg.load_in_8bit
          ? Linear8bitLt.fromWeight(values, shape, bias, cfg.llm_int8_threshold)
          : Linear4bit.fromWeight(values, shape, bias, {
              quantType: cfg.bnb_4bit_quant_type,
              compressStatistics: cfg.bnb_4bit_use_double_quant,
              computeDtype: cfg.bnb_4bit_compute_dtype,
              quantStorage: cfg.bnb_4bit_quant_storage,
              dtype: "float32",
            });
      }
      bias?.dispose();
      model.setSubmodule(path, q);
    }
    for (const [key, p] of params) {
      const t = await reader.tensor(key, { dtype: p.dtype });
      p.assign(t);
      t.dispose();
    }
  } finally {
    await reader.close();
  }
  const c = (model as unknown as { config?: Record<string, unknown> }).config;
  if (c && typeof c === "object") c.quantization_config = cfg.toDict();
}
