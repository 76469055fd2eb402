// Block-wise quantization as bitsandbytes does it (trl-peft-spec 3.3, 3.4): 4-bit NF4/FP4 codes packed two
// per byte with one float32 absmax per block, double quantization of those absmax values (8-bit dynamic
// map, blocks of 256, mean offset), 8-bit block-wise quantization, and LLM.int8's row-wise int8 (3.8).
// The array functions are the algorithm; the tensor functions wrap them.

import {
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  type Tensor,
  tensor,
} from "@tsgrad/tensor";
import { DYNAMIC_MAP, FP4_CODE, NF4_CODE, quantizeDynamic, quantizeFP4, quantizeNF4 } from "./codebooks.js";

const f = Math.fround;
const TINY = f(1e-38);

export type QuantType4 = "nf4" | "fp4";
/** The dtype a 4-bit weight dequantizes to (its dtype before quantization, as torch names it). */
export type QuantSourceDType = "float32" | "bfloat16" | "float16";

export const BLOCKSIZES = [32, 64, 128, 256, 512, 1024, 2048, 4096] as const;

export function checkBlocksize(blocksize: number, where: string): void {
  if (!(BLOCKSIZES as readonly number[]).includes(blocksize))
    throw new RangeError(
      `${where}: blocksize ${blocksize} is not supported; use one of ${BLOCKSIZES.join(", ")}`,
    );
}

export function code4bit(quantType: QuantType4): Float32Array {
  if (quantType === "nf4") return NF4_CODE;
  if (quantType === "fp4") return FP4_CODE;
  throw new RangeError(`quant_type must be "nf4" or "fp4", got ${JSON.stringify(quantType)}`);
}

/** 8-bit block-wise state: one float32 absmax per block and the 256-entry code. */
export interface BlockwiseState {
  absmax: Float32Array;
  code: Float32Array;
  blocksize: number;
}

/** Double quantization's statistics of the absmax values (QuantState.state2 plus offset). */
export interface NestedState extends BlockwiseState {
  offset: number;
}

/** bitsandbytes' QuantState for one 4-bit tensor. */
export interface QuantState4bit {
  quantType: QuantType4;
  blocksize: number;
  shape: number[];
  dtype: QuantSourceDType;
  /** The 16-entry code book. */
  code: Float32Array;
  /** float32 [nblocks], or uint8 [nblocks] codes when double-quantized. */
  absmax: Float32Array | Uint8Array;
  nested: NestedState | null;
}

export interface Quantize4bitOptions {
  /** Default 64, as Params4bit. */
  blocksize?: number;
  /** Default "nf4" here (transformers' BitsAndBytesConfig defaults to "fp4"). */
  quantType?: QuantType4;
  /** Double quantization of the absmax values (bnb_4bit_use_double_quant). */
  compressStatistics?: boolean;
  /** The dtype the values had before quantization; dequantization rounds back to it. Default float32. */
  dtype?: QuantSourceDType;
}

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

// ---- 8-bit block-wise (quantize_blockwise) ----

/** quantize_blockwise: per block absmax, scale by its float32 reciprocal, clamp, nearest code (ties even). */
export function quantizeBlockwiseArray(
  data: ArrayLike<number>,
  blocksize = 4096,
  code: Float32Array = DYNAMIC_MAP,
): { q: Uint8Array; state: BlockwiseState } {
  checkBlocksize(blocksize, "quantize8bit");
  if (code.length !== 256)
    throw new RangeError(`quantize8bit: the code must have 256 entries, got ${code.length}`);
  const n = data.length;
  const blocks = Math.ceil(n / blocksize);
  const absmax = new Float32Array(blocks);
  const q = new Uint8Array(n);
  for (let b = 0; b < blocks; b++) {
    const start = b * blocksize;
    const end = Math.min(n, start + blocksize);
    let m = 0;
    for (let i = start; i < end; i++) m = Math.max(m, Math.abs(data[i]!));
    absmax[b] = m;
    const inv = f(1 / Math.max(f(m), TINY));
    for (let i = start; i < end; i++) {
      const s = Math.min(1, Math.max(-1, f(f(data[i]!) * inv)));
      q[i] = quantizeDynamic(code, s);
    }
  }
  return { q, state: { absmax, code, blocksize } };
}

/** dequantize_blockwise: code[q] * absmax[block] in float32. */
export function dequantizeBlockwiseArray(q: Uint8Array, state: BlockwiseState): Float32Array {
  const out = new Float32Array(q.length);
  const { absmax, code, blocksize } = state;
  for (let i = 0; i < q.length; i++) out[i] = f(code[q[i]!]! * absmax[Math.floor(i / blocksize)]!);
  return out;
}

// ---- 4-bit ----

/**
 * The float32 absmax per block and the packed codes: byte k = code[2k] << 4 | code[2k+1], a zero code value
 * padding an odd count. A last partial block is its own block.
 */
export function quantize4bitArray(
  data: ArrayLike<number>,
  blocksize: number,
  quantType: QuantType4,
): { packed: Uint8Array; absmax: Float32Array } {
  checkBlocksize(blocksize, "quantize4bit");
  const quant = quantType === "nf4" ? quantizeNF4 : quantType === "fp4" ? quantizeFP4 : null;
  if (!quant)
    throw new RangeError(`quantize4bit: quant_type must be "nf4" or "fp4", got ${JSON.stringify(quantType)}`);
  const n = data.length;
  const blocks = Math.ceil(n / blocksize);
  const absmax = new Float32Array(blocks);
  const packed = new Uint8Array(Math.ceil(n / 2));
  for (let b = 0; b < blocks; b++) {
    const start = b * blocksize;
    const end = Math.min(n, start + blocksize);
    let m = 0;
    for (let i = start; i < end; i++) m = Math.max(m, Math.abs(data[i]!));
    absmax[b] = m;
    const inv = f(1 / Math.max(f(m), TINY));
    for (let i = start; i < end; i++) {
      const s = Math.min(1, Math.max(-1, f(f(data[i]!) * inv)));
      const c = quant(s);
      if ((i & 1) === 0) packed[i >> 1] = c << 4;
      else packed[i >> 1]! |= c;
    }
  }
  // An odd count pads one zero value, whose code is the code of 0 (7 for NF4, 0 for FP4).
  if (n % 2 === 1) packed[n >> 1]! |= quant(0);
  return { packed, absmax };
}

/** The float32 absmax per block, undoing double quantization when present. */
export function absmaxOf(state: QuantState4bit): Float32Array {
  if (!state.nested) return state.absmax as Float32Array;
  const deq = dequantizeBlockwiseArray(state.absmax as Uint8Array, state.nested);
  const off = f(state.nested.offset);
  for (let i = 0; i < deq.length; i++) deq[i] = f(deq[i]! + off);
  return deq;
}

/** Rounds float32 values in place to the source dtype (bfloat16 or float16 round to nearest even). */
export function roundToDType(values: Float32Array, dtype: QuantSourceDType): Float32Array {
  if (dtype === "bfloat16") values.set(bfloat16BitsToFloat32(float32ToBfloat16Bits(values)));
  else if (dtype === "float16") values.set(float16BitsToFloat32(float32ToFloat16Bits(values)));
  return values;
}

/**
 * Dequantizes elements [start, end) of a 4-bit tensor into `out` (code[q] * absmax in float32, then
 * rounded to the source dtype). `absmax` is absmaxOf(state), computed once by the caller.
 */
export function dequantize4bitRange(
  packed: Uint8Array,
  state: QuantState4bit,
  absmax: Float32Array,
  start: number,
  end: number,
  out: Float32Array,
  outOffset = 0,
): void {
  const code = state.code;
  const bs = state.blocksize;
  for (let i = start; i < end; i++) {
    const byte = packed[i >> 1]!;
    const q = (i & 1) === 0 ? byte >> 4 : byte & 15;
    out[outOffset + i - start] = f(code[q]! * absmax[Math.floor(i / bs)]!);
  }
  if (state.dtype !== "float32") roundToDType(out.subarray(outOffset, outOffset + end - start), state.dtype);
}

export function dequantize4bitArray(packed: Uint8Array, state: QuantState4bit): Float32Array {
  const n = numelOf(state.shape);
  checkPacked(packed, state, "dequantize4bit");
  const out = new Float32Array(n);
  dequantize4bitRange(packed, state, absmaxOf(state), 0, n, out);
  return out;
}

/** Checks that the packed bytes and the statistics fit the state's shape (a corrupted state fails here). */
export function checkPacked(packed: Uint8Array, state: QuantState4bit, where: string): void {
  const n = numelOf(state.shape);
  const blocks = Math.ceil(n / state.blocksize);
  const problems: string[] = [];
  if (packed.length !== Math.ceil(n / 2))
    problems.push(
      `${packed.length} packed bytes, expected ${Math.ceil(n / 2)} for shape [${state.shape.join(", ")}]`,
    );
  if (state.absmax.length !== blocks)
    problems.push(`${state.absmax.length} absmax values, expected ${blocks} (blocksize ${state.blocksize})`);
  if (state.code.length !== 16) problems.push(`a code book of ${state.code.length} values, expected 16`);
  if (state.nested) {
    const nb = Math.ceil(blocks / state.nested.blocksize);
    if (state.nested.absmax.length !== nb)
      problems.push(`${state.nested.absmax.length} nested absmax values, expected ${nb}`);
    if (state.nested.code.length !== 256)
      problems.push(`a nested code of ${state.nested.code.length} values, expected 256`);
    if (!Number.isFinite(state.nested.offset))
      problems.push(`nested offset ${state.nested.offset} is not finite`);
  }
  if (problems.length > 0)
    throw new Error(`${where}: inconsistent 4-bit quant state: ${problems.join("; ")}`);
}

/** Array form of quantize4bit: the packed codes and the full QuantState. */
export function quantize4bitState(
  data: ArrayLike<number>,
  shape: readonly number[],
  options: Quantize4bitOptions = {},
): { packed: Uint8Array; state: QuantState4bit } {
  const { blocksize = 64, quantType = "nf4", compressStatistics = false, dtype = "float32" } = options;
  if (numelOf(shape) !== data.length)
    throw new RangeError(`quantize4bit: ${data.length} values do not fill shape [${shape.join(", ")}]`);
  const { packed, absmax } = quantize4bitArray(data, blocksize, quantType);
  const state: QuantState4bit = {
    quantType,
    blocksize,
    shape: [...shape],
    dtype,
    code: code4bit(quantType),
    absmax,
    nested: null,
  };
  if (compressStatistics) {
    // offset = absmax.mean() in float32 (accumulated in float64 here, then rounded).
    let sum = 0;
    for (let i = 0; i < absmax.length; i++) sum += absmax[i]!;
    const offset = f(absmax.length > 0 ? sum / absmax.length : 0);
    const centered = new Float32Array(absmax.length);
    for (let i = 0; i < absmax.length; i++) centered[i] = f(absmax[i]! - offset);
    const { q, state: s2 } = quantizeBlockwiseArray(centered, 256, DYNAMIC_MAP);
    state.absmax = q;
    state.nested = { ...s2, offset };
  }
  return { packed, state };
}

// ---- tensor API ----

function floatData(t: Tensor, where: string): Float32Array {
  if (t.dtype !== "float32" && t.dtype !== "float64")
    throw new TypeError(`${where}: expected a floating-point tensor, got ${t.dtype}`);
  const d = t.dataSync();
  return d instanceof Float32Array ? d : Float32Array.from(d);
}

/**
 * bitsandbytes' quantize_4bit: packed codes as uint8 [ceil(n/2), 1] and the QuantState.
 * @example const { packed, state } = quantize4bit(w, { quantType: "nf4", compressStatistics: true });
 */
export function quantize4bit(
  w: Tensor,
  options: Quantize4bitOptions = {},
): { packed: Tensor; state: QuantState4bit } {
  const { packed, state } = quantize4bitState(floatData(w, "quantize4bit"), w.shape, options);
  return { packed: tensor(packed, { shape: [packed.length, 1], dtype: "uint8" }), state };
}

/** bitsandbytes' dequantize_4bit: a float32 tensor of the state's shape (values rounded to state.dtype). */
export function dequantize4bit(packed: Tensor | Uint8Array, state: QuantState4bit): Tensor {
  let bytes: Uint8Array;
  if (packed instanceof Uint8Array) bytes = packed;
  else {
    if (packed.dtype !== "uint8")
      throw new TypeError(`dequantize4bit: packed codes must be uint8, got ${packed.dtype}`);
    bytes = packed.dataSync() as Uint8Array;
  }
  return tensor(dequantize4bitArray(bytes, state), { shape: state.shape, dtype: "float32" });
}

/**
 * bitsandbytes' quantize_blockwise (8-bit, dynamic map): uint8 codes of the input's shape and the state.
 * @example const { q, state } = quantize8bit(x, { blocksize: 256 });
 */
export function quantize8bit(
  x: Tensor,
  options: { blocksize?: number; code?: Float32Array } = {},
): { q: Tensor; state: BlockwiseState } {
  const { q, state } = quantizeBlockwiseArray(
    floatData(x, "quantize8bit"),
    options.blocksize ?? 4096,
    options.code,
  );
  return { q: tensor(q, { shape: x.shape, dtype: "uint8" }), state };
}

/** bitsandbytes' dequantize_blockwise: float32 of q's shape. */
export function dequantize8bit(q: Tensor, state: BlockwiseState): Tensor {
  if (q.dtype !== "uint8") throw new TypeError(`dequantize8bit: codes must be uint8, got ${q.dtype}`);
  return tensor(dequantizeBlockwiseArray(q.dataSync() as Uint8Array, state), {
    shape: q.shape,
    dtype: "float32",
  });
}

// ---- LLM.int8 ----

/** Round half to even, as torch.round. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * int8_vectorwise_quant: per row SCB = max|W|, CB = round(W * (127 / SCB)) (half to even); zero rows stay 0.
 */
export function int8VectorwiseQuant(
  data: ArrayLike<number>,
  rows: number,
  cols: number,
): { CB: Int8Array; SCB: Float32Array } {
  const CB = new Int8Array(rows * cols);
  const SCB = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let c = 0; c < cols; c++) m = Math.max(m, Math.abs(data[r * cols + c]!));
    SCB[r] = m;
    if (m === 0) continue;
    const s = f(127 / f(m));
    for (let c = 0; c < cols; c++) CB[r * cols + c] = roundHalfEven(f(f(data[r * cols + c]!) * s));
  }
  return { CB, SCB };
}

/** int8_vectorwise_dequant: CB * SCB / 127 per row (float32). */
export function int8VectorwiseDequant(CB: Int8Array, SCB: Float32Array, cols: number): Float32Array {
  const out = new Float32Array(CB.length);
  const k = f(1 / 127);
  for (let i = 0; i < CB.length; i++) out[i] = f(f(CB[i]! * SCB[Math.floor(i / cols)]!) * k);
  return out;
}
