// bitsandbytes' serialized form of quantized linears (trl-peft-spec 3.7): for a 4-bit layer P the keys
// P.weight (U8 packed), P.weight.absmax, P.weight.quant_map, P.weight.nested_absmax,
// P.weight.nested_quant_map and P.weight.quant_state.bitsandbytes__<type> (the JSON-in-uint8 quant state);
// for LLM.int8, P.weight (I8), P.SCB and P.weight_format. Reading validates everything before use.

import { type Tensor, tensor } from "@tsgrad/tensor";
import type { RawTensor, SafetensorsReader } from "../io/safetensors.js";
import type { Module } from "../module.js";
import { Parameter } from "../parameter.js";
import type { QuantSourceDType, QuantState4bit, QuantType4 } from "./functional.js";
import { checkBlocksize } from "./functional.js";
import { Linear4bit } from "./linear4bit.js";
import { Linear8bitLt } from "./linear8bit.js";

/** Python's repr() of a float (what json.dumps writes): shortest round trip, ".0" on integers, e-05 style. */
export function pythonFloatRepr(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v === 0) return Object.is(v, -0) ? "-0.0" : "0.0";
  const sign = v < 0 ? "-" : "";
  const [mant, expStr] = Math.abs(v).toExponential().split("e") as [string, string];
  const digits = mant.replace(".", "");
  const e = Number(expStr);
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`;
  const int = digits.slice(0, e + 1).padEnd(e + 1, "0");
  const frac = digits.slice(e + 1);
  return `${sign}${int}.${frac === "" ? "0" : frac}`;
}

/** QuantState.as_dict(packed=True)'s JSON, as Python's json.dumps writes it. */
export function quantStateJson(state: QuantState4bit): string {
  const parts = [
    `"quant_type": ${JSON.stringify(state.quantType)}`,
    `"blocksize": ${state.blocksize}`,
    `"dtype": ${JSON.stringify(state.dtype)}`,
    `"shape": [${state.shape.join(", ")}]`,
  ];
  if (state.nested) {
    parts.push(
      `"nested_blocksize": ${state.nested.blocksize}`,
      `"nested_dtype": "float32"`,
      `"nested_offset": ${pythonFloatRepr(state.nested.offset)}`,
    );
  }
  return `{${parts.join(", ")}}`;
}

export const QUANT_STATE_PREFIX = "weight.quant_state.bitsandbytes__";

/** The serialized tensors of one 4-bit layer at `path` (without its bias). */
export function linear4bitTensors(path: string, layer: Linear4bit): [string, Tensor][] {
  const s = layer.quantState;
  const p = `${path}.weight`;
  const out: [string, Tensor][] = [
    [p, tensor(layer.packedWeight, { shape: [layer.packedWeight.length, 1], dtype: "uint8" })],
    [
      `${p}.absmax`,
      s.nested ? tensor(s.absmax as Uint8Array, { dtype: "uint8" }) : tensor(s.absmax as Float32Array),
    ],
    [`${p}.quant_map`, tensor(s.code)],
  ];
  if (s.nested) {
    out.push(
      [`${p}.nested_absmax`, tensor(s.nested.absmax)],
      [`${p}.nested_quant_map`, tensor(s.nested.code)],
    );
  }
  const json = new TextEncoder().encode(quantStateJson(s));
  out.push([`${path}.${QUANT_STATE_PREFIX}${s.quantType}`, tensor(json, { dtype: "uint8" })]);
  return out;
}

/**
 * The serialized tensors of one LLM.int8 layer at `path` (without its bias), as bitsandbytes'
 * Int8Params writes them (trl-peft-spec 3.7): the int8 weight, its per-row absmax and the row-major format code.
 */
export function linear8bitTensors(path: string, layer: Linear8bitLt): [string, Tensor | RawTensor][] {
  const cb = layer._CB;
  return [
    [
      `${path}.weight`,
      {
        dtype: "I8",
        shape: [layer.outFeatures, layer.inFeatures],
        bytes: new Uint8Array(cb.buffer, cb.byteOffset, cb.byteLength),
      },
    ],
    [`${path}.SCB`, tensor(layer._SCB)],
    [`${path}.weight_format`, tensor(new Uint8Array([0]), { shape: [], dtype: "uint8" })],
  ];
}

/** True when the model holds 4-bit or 8-bit layers. */
export function hasQuantizedModules(model: Module): boolean {
  for (const [, m] of model.namedModules())
    if (m instanceof Linear4bit || m instanceof Linear8bitLt) return true;
  return false;
}

/**
 * The tensors savePretrained writes: the state dict, with each 4-bit or 8-bit layer's weight in
 * bitsandbytes' serialized keys.
 */
export function stateDictForSave(model: Module): Map<string, Tensor | RawTensor> {
  if (!hasQuantizedModules(model)) return model.stateDict();
  const out = new Map<string, Tensor | RawTensor>();
  const seen = new Set<Parameter>();
  for (const [path, m] of model.namedModules()) {
    if (m instanceof Linear4bit) for (const [k, t] of linear4bitTensors(path, m)) out.set(k, t);
    if (m instanceof Linear8bitLt) for (const [k, t] of linear8bitTensors(path, m)) out.set(k, t);
    for (const { key, value } of m.children()) {
      if (value instanceof Parameter && !seen.has(value)) {
        seen.add(value);
        out.set(path === "" ? key : `${path}.${key}`, value);
      }
    }
  }
  return out;
}

function badState(where: string, msg: string): never {
  throw new Error(`${where}: corrupted 4-bit quant state: ${msg}`);
}

/** Parses and validates the JSON quant state bytes of a 4-bit layer. */
export function parseQuantStateJson(
  bytes: Uint8Array,
  expectedType: string,
  where: string,
): Omit<QuantState4bit, "code" | "absmax" | "nested"> & {
  nested: { blocksize: number; offset: number } | null;
} {
  let obj: unknown;
  try {
    obj = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    badState(where, `the quant_state bytes are not UTF-8 JSON (${(e as Error).message})`);
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj))
    badState(where, "the quant_state is not a JSON object");
  const o = obj as Record<string, unknown>;
  const qt = o.quant_type;
  if (qt !== "nf4" && qt !== "fp4") badState(where, `quant_type ${JSON.stringify(qt)} is not "nf4" or "fp4"`);
  if (qt !== expectedType)
    badState(where, `quant_type "${qt}" does not match the key suffix "${expectedType}"`);
  const bs = o.blocksize;
  if (typeof bs !== "number") badState(where, `blocksize ${JSON.stringify(bs)} is not a number`);
  try {
    checkBlocksize(bs, where);
  } catch (e) {
    badState(where, (e as Error).message);
  }
  const dtype = o.dtype;
  if (dtype !== "float32" && dtype !== "bfloat16" && dtype !== "float16")
    badState(where, `dtype ${JSON.stringify(dtype)} is not float32, bfloat16 or float16`);
  const shape = o.shape;
  if (!Array.isArray(shape) || shape.length !== 2 || shape.some((d) => !Number.isInteger(d) || d <= 0))
    badState(where, `shape ${JSON.stringify(shape)} is not [out, in] of positive integers`);
  let nested: { blocksize: number; offset: number } | null = null;
  if ("nested_offset" in o || "nested_blocksize" in o) {
    const nb = o.nested_blocksize;
    const off = o.nested_offset;
    if (nb !== 256 && !(typeof nb === "number" && [64, 128, 512, 1024, 2048, 4096].includes(nb)))
      badState(where, `nested_blocksize ${JSON.stringify(nb)} is not a supported block size`);
    if (typeof off !== "number" || !Number.isFinite(off))
      badState(where, `nested_offset ${JSON.stringify(off)} is not a finite number`);
    if (o.nested_dtype !== undefined && o.nested_dtype !== "float32")
      badState(where, `nested_dtype ${JSON.stringify(o.nested_dtype)} is not float32`);
    nested = { blocksize: nb as number, offset: Math.fround(off) };
  }
  return { quantType: qt, blocksize: bs, dtype, shape: shape as number[], nested };
}

/** The data of a just-read tensor (which is then freed), checking its dtype. */
function typed<T>(t: Tensor, dtype: string, where: string, key: string): T {
  try {
    if (t.dtype !== dtype) badState(where, `"${key}" has dtype ${t.dtype}, expected ${dtype}`);
    return t.dataSync() as T;
  } finally {
    t.dispose();
  }
}

/** Builds a Linear4bit from the serialized keys at `path` (no re-quantization). */
export async function readLinear4bit(
  reader: SafetensorsReader,
  path: string,
  bias: Tensor | null,
  options: { computeDtype?: "float32" | "bfloat16" } = {},
): Promise<Linear4bit> {
  const p = `${path}.weight`;
  const stateKey = reader.keys().find((k) => k.startsWith(`${path}.${QUANT_STATE_PREFIX}`));
  const where = `${reader.path}: "${path}"`;
  if (!stateKey) badState(where, `no "${path}.${QUANT_STATE_PREFIX}nf4" (or __fp4) tensor`);
  const suffix = stateKey.slice(`${path}.${QUANT_STATE_PREFIX}`.length);
  const meta = parseQuantStateJson(await reader.raw(stateKey), suffix, where);
  const need = [p, `${p}.absmax`, `${p}.quant_map`];
  if (meta.nested) need.push(`${p}.nested_absmax`, `${p}.nested_quant_map`);
  const missing = need.filter((k) => !reader.has(k));
  if (missing.length > 0) badState(where, `missing tensors ${missing.join(", ")}`);
  const read = async (k: string) => reader.tensor(k);
  // The packed bytes, whatever dtype bnb_4bit_quant_storage stored them as (uint8 by default; bf16 or
  // float32 views of the same bytes for FSDP): the raw bytes are the codes.
  const packed = await reader.raw(p);
  const absmaxT = await read(`${p}.absmax`);
  const absmax = meta.nested
    ? typed<Uint8Array>(absmaxT, "uint8", where, `${p}.absmax`)
    : typed<Float32Array>(absmaxT, "float32", where, `${p}.absmax`);
  const code = typed<Float32Array>(await read(`${p}.quant_map`), "float32", where, `${p}.quant_map`);
  const state: QuantState4bit = {
    quantType: meta.quantType as QuantType4,
    blocksize: meta.blocksize,
    shape: meta.shape,
    dtype: meta.dtype as QuantSourceDType,
    code,
    absmax,
    nested: null,
  };
  if (meta.nested) {
    state.nested = {
      absmax: typed<Float32Array>(await read(`${p}.nested_absmax`), "float32", where, `${p}.nested_absmax`),
      code: typed<Float32Array>(
        await read(`${p}.nested_quant_map`),
        "float32",
        where,
        `${p}.nested_quant_map`,
      ),
      blocksize: meta.nested.blocksize,
      offset: meta.nested.offset,
    };
  }
  try {
    return new Linear4bit(packed, state, bias, options);
  } catch (e) {
    badState(where, (e as Error).message);
  }
}

/** Builds a Linear8bitLt from P.weight (I8) and P.SCB. */
export async function readLinear8bit(
  reader: SafetensorsReader,
  path: string,
  bias: Tensor | null,
  threshold: number,
): Promise<Linear8bitLt> {
  const where = `${reader.path}: "${path}"`;
  const info = reader.info(`${path}.weight`);
  if (info.dtype !== "I8" || info.shape.length !== 2)
    throw new Error(
      `${where}: an 8-bit weight must be I8 [out, in], got ${info.dtype} [${info.shape.join(", ")}]`,
    );
  const raw = await reader.raw(`${path}.weight`);
  const CB = new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  const SCB = typed<Float32Array>(
    await reader.tensor(`${path}.SCB`, { dtype: "float32" }),
    "float32",
    where,
    `${path}.SCB`,
  );
  return new Linear8bitLt(CB, SCB, info.shape as [number, number], bias, threshold);
}
