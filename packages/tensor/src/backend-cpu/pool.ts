// Reuses the typed arrays of disposed tensors. A fresh large typed array costs page faults and the
// kernel's zeroing of every page, and a dropped one costs the garbage collector; a training step
// allocates the same shapes step after step, so a freed buffer of the same dtype and length is handed
// out again (zero-filled) instead. Small arrays are cheap in V8 and are not pooled.

import { bytesPerElement, type DType, type TypedArray, typedArrayFor } from "../dtype.js";
import { envMiB, envVar } from "../env.js";

/** Arrays below this many bytes are not pooled. */
const MIN_BYTES = 64 * 1024;

export class BufferPool {
  private readonly lists = new Map<string, TypedArray[]>();
  /** Bytes held by arrays waiting in the pool. */
  held = 0;

  constructor(readonly maxBytes: number) {}

  /**
   * An array of `size` elements: zero-filled, or when `zero` is false one whose contents are unspecified
   * (a reused array keeps what it held, or NaN where `poison`; see poisonUninitialized).
   */
  take(dtype: DType, size: number, zero = true, poison = false): TypedArray {
    const list = size * bytesPerElement(dtype) >= MIN_BYTES ? this.lists.get(`${dtype}:${size}`) : undefined;
    const reused = list?.pop();
    const out = reused ?? typedArrayFor(dtype, size);
    if (reused !== undefined) {
      this.held -= reused.byteLength;
      if (zero) reused.fill(0);
    }
    if (!zero && poison) fillPoison(out);
    return out;
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

/** The pool's cap: TSGRAD_POOL_MB (0 turns pooling off), default 1024 MiB. */
export function defaultPoolBytes(): number {
  return envMiB("TSGRAD_POOL_MB", 1024);
}

/**
 * TSGRAD_POISON_UNINIT=1: storages allocated without zero-filling (kernel outputs) start as NaN (float) or
 * a bit pattern (integers, bool 1) instead, so a kernel that leaves an element unwritten shows up in its
 * results. Read when a backend is created; for tests and debugging.
 */
export function poisonUninitialized(): boolean {
  return envVar("TSGRAD_POISON_UNINIT") === "1";
}

/** Fills an array the way poisonUninitialized describes. */
export function fillPoison(a: TypedArray): void {
  if (a instanceof Float32Array || a instanceof Float64Array) a.fill(Number.NaN);
  else if (a instanceof Uint8Array) a.fill(1);
  else (a as Int32Array).fill(0x5a5a5a5a);
}
