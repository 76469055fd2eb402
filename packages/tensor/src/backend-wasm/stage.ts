// Operands of a wasm kernel in the WebAssembly memory: read in place when their storage lies there, else
// copied into blocks of the heap (outputs copied back when the kernel has run), which done() releases.
// Every wasm kernel stages its operands this way.

import type { View } from "../backend/backend.js";
import { dataOf } from "../backend-cpu/storage.js";
import type { Heap } from "./heap.js";

export class Stage {
  private readonly blocks: [number, number][] = [];
  private readonly outs: [View, number, number][] = [];
  private readonly later: (() => void)[] = [];
  /** `inHeap(v)`: whether v's storage lies in `heap`'s memory (default: its typed array's buffer does). */
  constructor(
    private readonly heap: Heap,
    private readonly inHeap: (v: View) => boolean = (v) => dataOf(v).buffer === heap.buffer,
  ) {}
  /** The byte address of v's storage elements [lo, lo + len) (4 bytes each), copied in when outside. */
  span(v: View, lo: number, len: number): number {
    const d = dataOf(v);
    const start = d.byteOffset + 4 * lo;
    if (this.inHeap(v)) return start;
    const addr = this.alloc(4 * len);
    new Uint8Array(this.heap.buffer, addr, 4 * len).set(new Uint8Array(d.buffer, start, 4 * len));
    return addr;
  }
  /**
   * The address of v's storage element 0 (element e at base + 4 e), the span of elements the view
   * covers copied in, keeping its strides, when it lies outside.
   */
  base(v: View): number {
    let hi = v.layout.offset;
    let lo = v.layout.offset;
    v.layout.shape.forEach((n, i) => {
      const d = (n - 1) * v.layout.strides[i]!;
      if (d > 0) hi += d;
      else lo += d;
    });
    return this.span(v, lo, hi + 1 - lo) - 4 * lo;
  }
  /** The address of v's first element (n elements of 4 bytes). */
  in(v: View, n: number): number {
    return this.span(v, v.layout.offset, n);
  }
  /**
   * Where to write v (row-major, n float32 from its offset); done() copies it out when staged. With
   * `read`, a staged copy first takes v's values (the kernel adds into them).
   */
  out(v: View, n: number, read = false): number {
    if (this.inHeap(v)) return dataOf(v).byteOffset + 4 * v.layout.offset;
    const addr = read ? this.span(v, v.layout.offset, n) : this.alloc(4 * n);
    this.outs.push([v, addr, n]);
    return addr;
  }
  alloc(bytes: number, zero = false): number {
    const addr = this.heap.alloc(bytes, zero);
    this.blocks.push([addr, bytes]);
    return addr;
  }
  /** Runs fn after the staged outputs are copied out. */
  after(fn: () => void): void {
    this.later.push(fn);
  }
  /** Copies staged outputs out and runs the `after` steps (when `ok`), then releases every block. */
  done(ok: boolean): void {
    try {
      if (!ok) return;
      for (const [v, addr, n] of this.outs)
        (dataOf(v) as Float32Array).set(new Float32Array(this.heap.buffer, addr, n), v.layout.offset);
      for (const fn of this.later) fn();
    } finally {
      for (const [a, b] of this.blocks) this.heap.release(a, b);
    }
  }
}

/** Runs `body` with a Stage, then copies its outputs out (unless body threw) and releases its blocks. */
export function staged(heap: Heap, body: (st: Stage) => void, inHeap?: (v: View) => boolean): void {
  const st = new Stage(heap, inHeap);
  let ok = false;
  try {
    body(st);
    ok = true;
  } finally {
    st.done(ok);
  }
}
