// Writing safetensors checkpoints, byte-compatible with the reference writer, one tensor's bytes in
// memory at a time, always through a temporary file renamed into place. Sharding follows transformers'
// save_pretrained: tensors in the given order fill a shard until the next one would pass maxShardSize.

import { mkdir, readdir, rm } from "node:fs/promises";
import { endianness } from "node:os";
import { join } from "node:path";
import { float32ToBfloat16Bits, float32ToFloat16Bits, type Tensor, type TypedArray } from "@tsgrad/tensor";
import { commitTemp, writeAll, writeFileAtomic, writeTemp } from "./atomic.js";
import {
  compareNames,
  DTYPE_SIZE,
  INDEX_FILE,
  METADATA_KEY,
  type PlannedTensor,
  planHeader,
  type SafetensorsDType,
  SINGLE_FILE,
} from "./safetensors-format.js";

export interface SaveSafetensorsOptions {
  /** Stored as "__metadata__"; transformers and peft write {"format": "pt"}. */
  metadata?: Record<string, string>;
  /** Storage dtype for floating-point tensors; default F32 for float32 and F64 for float64. */
  dtype?: "F32" | "F16" | "BF16";
}

export interface SaveShardedOptions extends SaveSafetensorsOptions {
  /** Largest shard in bytes, or a size string like "5GB" / "500MB" / "2GiB" (default "5GB" = 5e9 bytes). */
  maxShardSize?: number | string;
}

/**
 * Stored bytes for a dtype no Tensor has (LLM.int8's I8 weights): little-endian elements, row-major.
 * @example { dtype: "I8", shape: [out, inp], bytes: new Uint8Array(int8.buffer) }
 */
export interface RawTensor {
  dtype: SafetensorsDType;
  shape: readonly number[];
  bytes: Uint8Array;
}

type TensorMap = Record<string, Tensor | RawTensor> | Map<string, Tensor | RawTensor>;

interface Entry extends PlannedTensor {
  tensor: Tensor | RawTensor;
}

const isRaw = (t: Tensor | RawTensor): t is RawTensor => "bytes" in t;

function entriesOf(tensors: TensorMap, opts: SaveSafetensorsOptions | undefined, where: string): Entry[] {
  const list = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  return list.map(([name, t]) => {
    if (name === METADATA_KEY)
      throw new Error(`${where}: "${METADATA_KEY}" is reserved and cannot name a tensor`);
    if (isRaw(t)) {
      const want = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[t.dtype];
      if (t.bytes.byteLength !== want)
        throw new Error(
          `${where}: "${name}" holds ${t.bytes.byteLength} bytes; ${t.dtype} [${t.shape.join(", ")}] needs ${want}`,
        );
      return { name, tensor: t, dtype: t.dtype, shape: [...t.shape] };
    }
    if (t.isDisposed) throw new Error(`${where}: tensor "${name}" was disposed`);
    return { name, tensor: t, dtype: storedDType(t, opts?.dtype), shape: [...t.shape] };
  });
}

function storedDType(t: Tensor, float: SaveSafetensorsOptions["dtype"]): SafetensorsDType {
  switch (t.dtype) {
    case "float32":
      return float ?? "F32";
    case "float64":
      return float ?? "F64";
    case "int32":
      return "I32";
    case "uint8":
      return "U8";
    case "bool":
      return "BOOL";
  }
}

function bytesOf(a: TypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

async function encode(e: Entry): Promise<Uint8Array> {
  if (isRaw(e.tensor)) return e.tensor.bytes;
  const data = await e.tensor.data();
  switch (e.dtype) {
    case "F32":
      return bytesOf(data instanceof Float32Array ? data : Float32Array.from(data));
    case "F64":
      return bytesOf(data instanceof Float64Array ? data : Float64Array.from(data));
    case "F16": {
      const h = float32ToFloat16Bits(data);
      return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
    }
    case "BF16": {
      const h = float32ToBfloat16Bits(data);
      return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
    }
    case "BOOL": {
      const b = new Uint8Array(data.length);
      for (let i = 0; i < b.length; i++) b[i] = data[i] ? 1 : 0;
      return b;
    }
    default:
      return bytesOf(data);
  }
}

/** Writes one safetensors file to a temporary path next to `path` and returns that path. */
async function writeSafetensorsTemp(
  path: string,
  entries: Entry[],
  metadata: Record<string, string> | undefined,
): Promise<string> {
  if (endianness() !== "LE") throw new Error("saveSafetensors: big-endian hosts are not supported");
  const { header, order } = planHeader(entries, metadata);
  return writeTemp(path, async (fh) => {
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(header.length), true);
    await writeAll(fh, prefix);
    await writeAll(fh, header);
    for (const e of order) await writeAll(fh, await encode(e));
  });
}

/**
 * Writes `tensors` to `path` in the safetensors format, atomically. Floating-point tensors are stored as
 * F32 (float64 as F64) unless `opts.dtype` says F16 or BF16; int32 as I32, uint8 as U8, bool as BOOL; a
 * RawTensor as its own dtype and bytes.
 */
export async function saveSafetensors(
  path: string,
  tensors: TensorMap,
  opts?: SaveSafetensorsOptions,
): Promise<void> {
  const entries = entriesOf(tensors, opts, `saveSafetensors: ${path}`);
  await commitTemp(await writeSafetensorsTemp(path, entries, opts?.metadata), path);
}

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

/** "5GB" -> 5e9, "2GiB" -> 2^31, as transformers' convert_file_size_to_int; numbers pass through. */
export function parseShardSize(size: number | string): number {
  if (typeof size === "number") {
    if (!(size > 0)) throw new RangeError(`maxShardSize must be positive, got ${size}`);
    return size;
  }
  const m = /^\s*([\d.]+)\s*([KMGT]?I?B)\s*$/i.exec(size);
  if (!m || !(Number(m[1]) > 0)) throw new RangeError(`maxShardSize: cannot parse ${JSON.stringify(size)}`);
  return Math.floor(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
}

const byteSize = (e: Entry) => e.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[e.dtype];

/** transformers' shard split: a tensor bigger than the limit gets a shard of its own. */
function splitShards(entries: Entry[], max: number): Entry[][] {
  const shards: Entry[][] = [];
  let current: Entry[] = [];
  let size = 0;
  for (const e of entries) {
    const n = byteSize(e);
    if (n > max) {
      shards.push([e]);
      continue;
    }
    if (size + n > max && current.length > 0) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(e);
    size += n;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/;

/**
 * Saves a checkpoint into `dir` as transformers does: `model.safetensors` when everything fits in one
 * shard, else `model-0000i-of-0000N.safetensors` plus `model.safetensors.index.json` with
 * {"metadata": {"total_size": bytes}, "weight_map": {name: file}}. Each file carries {"format": "pt"}
 * merged with `opts.metadata`. Files from an earlier save that the new one does not use are removed.
 * Returns the names of the files written.
 */
export async function saveShardedSafetensors(
  dir: string,
  tensors: TensorMap,
  opts?: SaveShardedOptions,
): Promise<string[]> {
  const entries = entriesOf(tensors, opts, `saveShardedSafetensors: ${dir}`);
  const shards = splitShards(entries, parseShardSize(opts?.maxShardSize ?? "5GB"));
  const metadata = { format: "pt", ...opts?.metadata };
  await mkdir(dir, { recursive: true });
  const n = shards.length;
  const names =
    n === 1
      ? [SINGLE_FILE]
      : shards.map(
          (_, i) => `model-${String(i + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.safetensors`,
        );
  const temps: string[] = [];
  try {
    for (let i = 0; i < n; i++)
      temps.push(await writeSafetensorsTemp(join(dir, names[i]!), shards[i]!, metadata));
  } catch (e) {
    await Promise.all(temps.map((t) => rm(t, { force: true })));
    throw e;
  }
  for (let i = 0; i < n; i++) await commitTemp(temps[i]!, join(dir, names[i]!));
  if (n > 1) {
    const map = shards.flatMap((s, i) => s.map((e) => [e.name, names[i]!] as const));
    map.sort(([a], [b]) => compareNames(a, b));
    const total = entries.reduce((a, e) => a + byteSize(e), 0);
    const lines = map.map(([k, f]) => `    ${JSON.stringify(k)}: ${JSON.stringify(f)}`);
    const json = `{\n  "metadata": {\n    "total_size": ${total}\n  },\n  "weight_map": {\n${lines.join(",\n")}\n  }\n}\n`;
    await writeFileAtomic(join(dir, INDEX_FILE), json);
  }
  const keep = new Set(n > 1 ? [...names, INDEX_FILE] : names);
  for (const f of await readdir(dir)) {
    const stale = f === SINGLE_FILE || f === INDEX_FILE || SHARD_NAME.test(f);
    if (stale && !keep.has(f)) await rm(join(dir, f), { force: true });
  }
  return n > 1 ? [...names, INDEX_FILE] : names;
}
