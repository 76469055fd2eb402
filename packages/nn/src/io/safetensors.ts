// Reading safetensors checkpoints: the header is read and validated once on open, and each tensor is read
// on demand with a positioned read, so loading a model never holds the whole file in memory. Sharded
// checkpoints (model.safetensors.index.json) are read through the same interface.

import { existsSync, statSync } from "node:fs";
import { type FileHandle, open, readdir, readFile } from "node:fs/promises";
import { dirname, isAbsolute, join, normalize } from "node:path";
import {
  bfloat16BitsToFloat32,
  type DType,
  float16BitsToFloat32,
  type Tensor,
  type TypedArray,
  tensor,
} from "@tsgrad/tensor";
import {
  compareNames,
  DTYPE_SIZE,
  headerLength,
  INDEX_FILE,
  parseHeader,
  type SafetensorsDType,
  SINGLE_FILE,
  type TensorInfo,
} from "./safetensors-format.js";

export { INDEX_FILE, type SafetensorsDType, SINGLE_FILE, type TensorInfo } from "./safetensors-format.js";
export {
  type RawTensor,
  type SaveSafetensorsOptions,
  type SaveShardedOptions,
  saveSafetensors,
  saveShardedSafetensors,
} from "./safetensors-write.js";

export interface TensorReadOptions {
  /** Cast to this dtype after decoding the stored one. */
  dtype?: DType;
}

/** The surface shared by a single file and a sharded set. */
export interface SafetensorsReader {
  readonly path: string;
  /** The file's "__metadata__" (for a sharded set, the first shard's). */
  readonly metadata: Record<string, string> | null;
  /** Tensor names in byte order, as Python's safe_open().keys() gives them. */
  keys(): string[];
  has(key: string): boolean;
  info(key: string): TensorInfo;
  tensor(key: string, opts?: TensorReadOptions): Promise<Tensor>;
  raw(key: string): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** The tsgrad dtype each stored dtype decodes to. */
export const NATURAL_DTYPE: Record<SafetensorsDType, DType> = {
  F64: "float64",
  F32: "float32",
  F16: "float32",
  BF16: "float32",
  I64: "int32",
  I32: "int32",
  I16: "int32",
  I8: "int32",
  U8: "uint8",
  BOOL: "bool",
};

function missingKey(key: string, keys: string[], where: string): Error {
  const some = keys.slice(0, 5).map((k) => JSON.stringify(k));
  const more = keys.length > 5 ? `, ... (${keys.length} in all)` : "";
  return new Error(
    `safetensors: ${where}: no tensor named ${JSON.stringify(key)}; available: ${some.join(", ") || "(none)"}${more}`,
  );
}

/** Reads exactly `length` bytes at `position` into a fresh ArrayBuffer. */
async function readExactly(
  fh: FileHandle,
  position: number,
  length: number,
  path: string,
): Promise<ArrayBuffer> {
  const buf = new ArrayBuffer(length);
  const view = new Uint8Array(buf);
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(view, done, Math.min(CHUNK, length - done), position + done);
    if (bytesRead === 0) {
      throw new Error(`safetensors: ${path}: unexpected end of file at byte ${position + done}`);
    }
    done += bytesRead;
  }
  return buf;
}

/** Decodes stored bytes into a typed array of the stored dtype's natural tsgrad dtype (or a float for I64). */
function decode(buf: ArrayBuffer, info: TensorInfo, target: DType, where: string): TypedArray {
  switch (info.dtype) {
    case "F32":
      return new Float32Array(buf);
    case "F64":
      return new Float64Array(buf);
    case "F16":
      return float16BitsToFloat32(new Uint16Array(buf));
    case "BF16":
      return bfloat16BitsToFloat32(new Uint16Array(buf));
    case "I32":
      return new Int32Array(buf);
    case "I16":
      return Int32Array.from(new Int16Array(buf));
    case "I8":
      return Int32Array.from(new Int8Array(buf));
    case "U8":
      return new Uint8Array(buf);
    case "BOOL": {
      const b = new Uint8Array(buf);
      for (let i = 0; i < b.length; i++) if (b[i]! > 1) b[i] = 1;
      return b;
    }
    case "I64": {
      if (target === "float32" || target === "float64") {
        const wide = new BigInt64Array(buf);
        const out = target === "float32" ? new Float32Array(wide.length) : new Float64Array(wide.length);
        for (let i = 0; i < wide.length; i++) out[i] = Number(wide[i]!);
        return out;
      }
      const words = new Int32Array(buf);
      const out = new Int32Array(words.length / 2);
      for (let i = 0; i < out.length; i++) {
        const lo = words[2 * i]!;
        if (words[2 * i + 1] !== lo >> 31) {
          const v = new BigInt64Array(buf, 8 * i, 1)[0]!;
          throw new RangeError(
            `safetensors: ${where}: I64 value ${v} at flat index ${i} does not fit in int32; read it with { dtype: "float64" }`,
          );
        }
        out[i] = lo;
      }
      return out;
    }
  }
}

export class SafetensorsFile implements SafetensorsReader {
  readonly path: string;
  readonly metadata: Record<string, string> | null;
  private readonly tensors: Map<string, TensorInfo>;
  private readonly dataStart: number;
  private fh: FileHandle | null;
  private sortedKeys: string[] | null = null;

  private constructor(
    path: string,
    fh: FileHandle,
    metadata: Record<string, string> | null,
    tensors: Map<string, TensorInfo>,
    dataStart: number,
  ) {
    this.path = path;
    this.fh = fh;
    this.metadata = metadata;
    this.tensors = tensors;
    this.dataStart = dataStart;
  }

  /** Opens `path` and validates its header; tensor data is read later, on demand. */
  static async open(path: string): Promise<SafetensorsFile> {
    const fh = await open(path, "r");
    try {
      const { size } = await fh.stat();
      const prefix = new Uint8Array(await readExactly(fh, 0, Math.min(8, size), path));
      const n = headerLength(prefix, size, path);
      const headerBytes = new Uint8Array(await readExactly(fh, 8, n, path));
      const { metadata, tensors } = parseHeader(headerBytes, size - 8 - n, path);
      return new SafetensorsFile(path, fh, metadata, tensors, 8 + n);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  keys(): string[] {
    this.sortedKeys ??= [...this.tensors.keys()].sort(compareNames);
    return [...this.sortedKeys];
  }

  has(key: string): boolean {
    return this.tensors.has(key);
  }

  info(key: string): TensorInfo {
    const info = this.tensors.get(key);
    if (!info) throw missingKey(key, this.keys(), this.path);
    return { dtype: info.dtype, shape: [...info.shape], data_offsets: [...info.data_offsets] };
  }

  /** The stored bytes of one tensor, little-endian, as they sit in the file. */
  async raw(key: string): Promise<Uint8Array> {
    return new Uint8Array(await this.readSpan(key));
  }

  /** One tensor, decoded to its natural dtype (F16/BF16 -> float32, integers -> int32) or `opts.dtype`. */
  async tensor(key: string, opts?: TensorReadOptions): Promise<Tensor> {
    const info = this.info(key);
    const natural = NATURAL_DTYPE[info.dtype];
    const dtype = opts?.dtype ?? natural;
    let data = decode(await this.readSpan(key), info, dtype, `${this.path}: tensor "${key}"`);
    if (dtype === "bool" && info.dtype !== "BOOL") data = Uint8Array.from(data, (v) => (v !== 0 ? 1 : 0));
    // The decoded array is freshly read, so the tensor may keep it as its storage (one copy less at load).
    return tensor(data, { shape: info.shape, dtype, copy: false });
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }

  private async readSpan(key: string): Promise<ArrayBuffer> {
    const info = this.info(key);
    if (!this.fh) throw new Error(`safetensors: ${this.path}: read of "${key}" after close()`);
    const [begin, end] = info.data_offsets;
    return readExactly(this.fh, this.dataStart + begin, end - begin, this.path);
  }
}

/** A checkpoint split over several files, found through `weight_map` in its index JSON. */
export class ShardedSafetensors implements SafetensorsReader {
  readonly path: string;
  /** The index's own "metadata" (transformers writes {"total_size": N}). */
  readonly indexMetadata: Record<string, unknown>;
  readonly shards: readonly SafetensorsFile[];
  private readonly owner: Map<string, SafetensorsFile>;

  private constructor(
    path: string,
    indexMetadata: Record<string, unknown>,
    shards: SafetensorsFile[],
    owner: Map<string, SafetensorsFile>,
  ) {
    this.path = path;
    this.indexMetadata = indexMetadata;
    this.shards = shards;
    this.owner = owner;
  }

  /** Opens every shard named in the index at `indexPath` and checks each mapped key is in its shard. */
  static async open(indexPath: string): Promise<ShardedSafetensors> {
    const where = `safetensors: ${indexPath}`;
    let index: unknown;
    try {
      index = JSON.parse(await readFile(indexPath, "utf8"));
    } catch (e) {
      throw new Error(`${where}: cannot read the index: ${(e as Error).message}`);
    }
    const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
    if (weightMap === null || typeof weightMap !== "object" || Array.isArray(weightMap)) {
      throw new Error(`${where}: index has no "weight_map" object`);
    }
    const byFile = new Map<string, string[]>();
    for (const [key, file] of Object.entries(weightMap as Record<string, unknown>)) {
      if (typeof file !== "string" || isAbsolute(file) || normalize(file).startsWith("..")) {
        throw new Error(`${where}: weight_map entry for "${key}" must be a file name in the same directory`);
      }
      byFile.set(file, [...(byFile.get(file) ?? []), key]);
    }
    const shards: SafetensorsFile[] = [];
    const owner = new Map<string, SafetensorsFile>();
    try {
      for (const [file, keys] of byFile) {
        const shardPath = join(dirname(indexPath), file);
        if (!existsSync(shardPath))
          throw new Error(`${where}: weight_map names ${file}, which does not exist`);
        const shard = await SafetensorsFile.open(shardPath);
        shards.push(shard);
        for (const key of keys) {
          if (!shard.has(key)) {
            throw new Error(`${where}: weight_map puts "${key}" in ${file}, which has no such tensor`);
          }
          owner.set(key, shard);
        }
      }
    } catch (e) {
      await Promise.all(shards.map((s) => s.close()));
      throw e;
    }
    const meta = (index as { metadata?: unknown }).metadata;
    const indexMetadata =
      meta !== null && typeof meta === "object" && !Array.isArray(meta)
        ? (meta as Record<string, unknown>)
        : {};
    return new ShardedSafetensors(indexPath, indexMetadata, shards, owner);
  }

  get metadata(): Record<string, string> | null {
    return this.shards[0]?.metadata ?? null;
  }

  keys(): string[] {
    return [...this.owner.keys()].sort(compareNames);
  }

  has(key: string): boolean {
    return this.owner.has(key);
  }

  /** The shard holding `key`. */
  shardOf(key: string): SafetensorsFile {
    const shard = this.owner.get(key);
    if (!shard) throw missingKey(key, this.keys(), this.path);
    return shard;
  }

  info(key: string): TensorInfo {
    return this.shardOf(key).info(key);
  }

  async tensor(key: string, opts?: TensorReadOptions): Promise<Tensor> {
    return this.shardOf(key).tensor(key, opts);
  }

  async raw(key: string): Promise<Uint8Array> {
    return this.shardOf(key).raw(key);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.close()));
  }
}

/**
 * Opens a checkpoint: a .safetensors file, an index JSON, or a directory holding model.safetensors or
 * model.safetensors.index.json (model.safetensors wins when both exist, as in transformers).
 */
export async function openSafetensors(pathOrDir: string): Promise<SafetensorsReader> {
  if (!existsSync(pathOrDir)) throw new Error(`safetensors: ${pathOrDir}: no such file or directory`);
  if (!statSync(pathOrDir).isDirectory()) {
    return pathOrDir.endsWith(".json") ? ShardedSafetensors.open(pathOrDir) : SafetensorsFile.open(pathOrDir);
  }
  const single = join(pathOrDir, SINGLE_FILE);
  if (existsSync(single)) return SafetensorsFile.open(single);
  const index = join(pathOrDir, INDEX_FILE);
  if (existsSync(index)) return ShardedSafetensors.open(index);
  const found = (await readdir(pathOrDir)).filter((f) => f.endsWith(".safetensors"));
  throw new Error(
    `safetensors: ${pathOrDir}: neither ${SINGLE_FILE} nor ${INDEX_FILE} found${
      found.length ? `; .safetensors files here: ${found.slice(0, 5).join(", ")}` : ""
    }`,
  );
}

/** Bytes per element of a stored dtype. */
export function safetensorsDTypeSize(dtype: SafetensorsDType): number {
  return DTYPE_SIZE[dtype];
}
