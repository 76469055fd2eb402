// Reuses the typed arrays of disposed tensors. A fresh large typed array costs page faults and the
// kernel's zeroing of every page, and a dropped one costs the garbage collector; a training step
// allocates the same shapes step after step, so a freed buffer of the same dtype and length is handed
// out again (zero-filled) instead. Small arrays are cheap in V8 and are not pooled.

import { bytesPerElement, type DType, type TypedArray, typedArrayFor } from "../dtype.js";

/** Arrays below this many bytes are not pooled. */
const MIN_BYTES = 64 * 1024;

export class BufferPool {
  private readonly lists = new Map<string, TypedArray[]>();
  /** Bytes held by arrays waiting in the pool. */
  held = 0;

  constructor(readonly maxBytes: number) {}

  /** A zero-filled array of `size` elements. */
  take(dtype: DType, size: number): TypedArray {
    const list = size * bytesPerElement(dtype) >= MIN_BYTES ? this.lists.get(`${dtype}:${size}`) : undefined;
    const reused = list?.pop();
    if (reused === undefined) return typedArrayFor(dtype, size);
    this.held -= reused.byteLength;
    reused.fill(0);
    return reused;
  }

  /** Hands back an array nothing else references any more; it is dropped when the pool is full. */
  give(dtype: DType, data: TypedArray): void {
    if (data.byteLength < MIN_BYTES || this.held + data.byteLength > this.maxBytes) return;
    if (data.byteOffset !== 0 || data.length * bytesPerElement(dtype) !== data.buffer.byteLength) return;
    const key = `${dtype}:${data.length}`;
    let list = this.lists.get(key);
    if (!list) {
      list = [];
      this.lists.set(key, list);
    }
    list.push(data);
    this.held += data.byteLength;
  }

  clear(): void {
    this.lists.clear();
    this.held = 0;
  }
}

/**
 * Bytes from the environment variable `name`, given in MiB (`fallback` when unset or empty); throws when
 * it is not a number in [0, max].
 */
export function envMiB(name: string, fallback: number, max = Number.POSITIVE_INFINITY): number {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
  const mb = env !== undefined && env !== "" ? Number(env) : fallback;
  if (!(mb >= 0 && mb <= max))
    throw new RangeError(
      `${name} must be a number of MiB ${max === Number.POSITIVE_INFINITY ? ">= 0" : `in [0, ${max}]`}, got ${env}`,
    );
  return mb * 1024 * 1024;
}

/** The pool's cap: TSGRAD_POOL_MB (0 turns pooling off), default 1024 MiB. */
export function defaultPoolBytes(): number {
  return envMiB("TSGRAD_POOL_MB", 1024);
}
