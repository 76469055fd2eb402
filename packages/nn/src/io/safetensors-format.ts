// The safetensors container format (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length N, N bytes of UTF-8 JSON mapping names to {dtype, shape, data_offsets} plus an optional
// "__metadata__" string map, then the tensor bytes, packed with no gaps. This file parses and validates a
// header and builds one exactly as the reference Rust writer does.

export type SafetensorsDType = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte span [begin, end) relative to the start of the data section (just after the header). */
  data_offsets: [number, number];
}

export interface ParsedHeader {
  metadata: Record<string, string> | null;
  tensors: Map<string, TensorInfo>;
  /** Total bytes of the data section the header describes. */
  dataSize: number;
}

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/**
 * Position of each dtype in the reference `Dtype` enum, which is ordered by alignment. The writer lays
 * tensors out by descending rank, then by name, so wide types stay aligned.
 */
const DTYPE_RANK: Record<SafetensorsDType, number> = {
  BOOL: 0,
  U8: 4,
  I8: 5,
  I16: 11,
  F16: 13,
  BF16: 14,
  I32: 15,
  F32: 17,
  F64: 19,
  I64: 20,
};

/** The reference reader refuses headers above this size. */
export const MAX_HEADER_SIZE = 100_000_000;

export const METADATA_KEY = "__metadata__";

/** File names transformers uses for a single-file and a sharded checkpoint. */
export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

export function isSafetensorsDType(s: unknown): s is SafetensorsDType {
  return typeof s === "string" && Object.hasOwn(DTYPE_SIZE, s);
}

/** Byte-wise (UTF-8) string order, as Rust sorts `String`s. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Reads the 8-byte prefix; returns the header length N. `fileSize` bounds it. Throws naming `path`.
 */
export function headerLength(prefix: Uint8Array, fileSize: number, path: string): number {
  if (fileSize < 8) {
    throw new Error(`safetensors: ${path}: file is ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    throw new Error(
      `safetensors: ${path}: header length ${n} exceeds the ${MAX_HEADER_SIZE}-byte limit (not a safetensors file?)`,
    );
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new Error(
      `safetensors: ${path}: header length ${len} runs past the end of the file (${fileSize} bytes); the file is truncated or not safetensors`,
    );
  }
  return len;
}

/** Parses and validates the JSON header against the data section size `dataSize` (file size - 8 - N). */
export function parseHeader(bytes: Uint8Array, dataSize: number, path: string): ParsedHeader {
  const where = `safetensors: ${path}`;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${where}: header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${where}: header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new Error(`${where}: header must be a JSON object, got ${Array.isArray(json) ? "array" : json}`);
  }
  let metadata: Record<string, string> | null = null;
  const tensors = new Map<string, TensorInfo>();
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(value, where);
      continue;
    }
    tensors.set(name, parseInfo(name, value, where));
  }
  checkLayout(tensors, dataSize, where);
  return { metadata, tensors, dataSize };
}

function parseMetadata(value: unknown, where: string): Record<string, string> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${where}: "${METADATA_KEY}" must be an object of strings`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== "string") {
      throw new Error(
        `${where}: "${METADATA_KEY}" value for "${k}" must be a string, got ${JSON.stringify(v)}`,
      );
    }
    out[k] = v;
  }
  return out;
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function parseInfo(name: string, value: unknown, where: string): TensorInfo {
  const at = `${where}: tensor "${name}"`;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${at}: entry must be an object with dtype, shape and data_offsets`);
  }
  const { dtype, shape, data_offsets } = value as Record<string, unknown>;
  if (!isSafetensorsDType(dtype)) {
    throw new Error(
      `${at}: unknown dtype ${JSON.stringify(dtype)}; supported: ${Object.keys(DTYPE_SIZE).join(", ")}`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw new Error(`${at}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every(isCount)) {
    throw new Error(
      `${at}: data_offsets must be two non-negative integers, got ${JSON.stringify(data_offsets)}`,
    );
  }
  const [begin, end] = data_offsets as [number, number];
  if (end < begin) throw new Error(`${at}: data_offsets [${begin}, ${end}] end before they begin`);
  const expected = numel(shape) * DTYPE_SIZE[dtype];
  if (end - begin !== expected) {
    throw new Error(
      `${at}: shape [${shape.join(", ")}] of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
    );
  }
  return { dtype, shape: [...shape], data_offsets: [begin, end] };
}

/** The format requires the spans to tile [0, dataSize) exactly: no overlap, no gap, nothing after. */
function checkLayout(tensors: Map<string, TensorInfo>, dataSize: number, where: string): void {
  const spans = [...tensors].sort(
    ([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0] || a.data_offsets[1] - b.data_offsets[1],
  );
  for (const [name, info] of spans) {
    const [begin, end] = info.data_offsets;
    if (end > dataSize) {
      throw new Error(
        `${where}: tensor "${name}" data_offsets [${begin}, ${end}] run past the data section (${dataSize} bytes); the file is truncated or the offsets are wrong`,
      );
    }
  }
  let pos = 0;
  let prev = "";
  for (const [name, info] of spans) {
    const [begin, end] = info.data_offsets;
    if (begin < pos) {
      throw new Error(`${where}: tensor "${name}" data_offsets [${begin}, ${end}] overlap tensor "${prev}"`);
    }
    if (begin > pos) {
      throw new Error(
        `${where}: tensor "${name}" starts at byte ${begin} but the previous data ends at ${pos}; tensor data must be packed with no gaps`,
      );
    }
    pos = end;
    prev = name;
  }
  if (pos !== dataSize) {
    throw new Error(
      `${where}: the tensors cover ${pos} bytes of data but the file holds ${dataSize}; trailing bytes are not allowed`,
    );
  }
}

/** One tensor to be written: its name, stored dtype, shape and byte length. */
export interface PlannedTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
}

export interface HeaderPlan<T extends PlannedTensor> {
  /** The padded header bytes (without the 8-byte length prefix). */
  header: Uint8Array;
  /** The tensors in the order their data follows the header. */
  order: T[];
  dataSize: number;
}

/**
 * Lays tensors out and builds the header as the reference writer does: order by descending dtype
 * alignment, then by name; compact JSON with "__metadata__" first; padded with spaces to a multiple of 8.
 */
export function planHeader<T extends PlannedTensor>(
  tensors: readonly T[],
  metadata: Record<string, string> | undefined,
): HeaderPlan<T> {
  const order = [...tensors].sort(
    (a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || compareNames(a.name, b.name),
  );
  const entries: string[] = [];
  if (metadata !== undefined) {
    const meta = Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    entries.push(`${JSON.stringify(METADATA_KEY)}:{${meta.join(",")}}`);
  }
  let offset = 0;
  for (const t of order) {
    const size = numel(t.shape) * DTYPE_SIZE[t.dtype];
    const info = `{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${offset + size}]}`;
    entries.push(`${JSON.stringify(t.name)}:${info}`);
    offset += size;
  }
  const json = Buffer.from(`{${entries.join(",")}}`, "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  const header = new Uint8Array(padded).fill(0x20);
  header.set(json);
  return { header, order, dataSize: offset };
}
