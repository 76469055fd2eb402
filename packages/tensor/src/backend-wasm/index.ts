// The wasm backend: the CPU backend's storage model (typed arrays read with dataOf), its blocks placed in one
// shared WebAssembly.Memory ("wasm" storage), kept as ordinary typed arrays ("js"), or the first up to a
// budget and the second past it ("auto", the default cpu device's), so every plain TypeScript kernel runs
// on it unchanged; the ops where WebAssembly SIMD wins are overridden: float32 matmul (gemm.ts, run by
// gemm-run.ts, split over worker threads above a size threshold), and above size thresholds float32
// add/sub/mul/div/neg (elementwise.ts), contiguous (copy.ts), exp/sigmoid (transcendental.ts) and
// last-dim sum/max (reduce.ts), which give exactly what the TypeScript kernels give, and the fused kernels
// (fused.ts). Operands outside the memory are copied in and results out. The modules are emitted from TypeScript at startup (emit.ts).

import type { Backend, CausalSpec, Storage, View } from "../backend/backend.js";
import { registerBackend } from "../backend/registry.js";
import { cpuKernels } from "../backend-cpu/index.js";
import { BufferPool, defaultPoolBytes, fillPoison, poisonUninitialized } from "../backend-cpu/pool.js";
import { CpuStorage, rowMajor } from "../backend-cpu/storage.js";
import { bytesPerElement, type DType, type TypedArray, typedArrayFor } from "../dtype.js";
import { envMiB, envVar, nodeBuiltin } from "../env.js";
import type { Kernel, KernelTable } from "../ops/signatures.js";
import { copyKernel, copyModuleBytes } from "./copy.js";
import { elementwiseKernels, elementwiseModuleBytes } from "./elementwise.js";
import { fusedModule, wasmFusedKernels } from "./fused.js";
import { SPLIT_FUNCS } from "./fused-threads.js";
import {
  FMA_TILE,
  type GemmTile,
  gemmModuleBytes,
  MEMORY_LIMITS,
  MUL_ADD_TILE,
  WORKSPACE_BYTES,
} from "./gemm.js";
import { createGemm, type GemmContext, gemmFuncs, productDims } from "./gemm-run.js";
import { Heap, type WasmApi, type WasmMemory, wasmApi } from "./heap.js";
import { PoolHolder } from "./kernel-pool.js";
import { wasmPair, wasmProduct } from "./matmul-entry.js";
import { reduceKernels, reduceModuleBytes } from "./reduce.js";
import { relaxedSimdAvailable } from "./relaxed.js";
import { transcendentalKernels, transcendentalModuleBytes } from "./transcendental.js";
import { workerCtor } from "./worker-group.js";

export class WasmStorage implements Storage {
  readonly backend: string;
  constructor(
    backend: string,
    readonly dtype: DType,
    /** A typed-array view of the block in the shared memory (what dataOf returns). */
    public data: TypedArray,
    /** Byte address of the block; -1 once freed. */
    public addr: number,
    readonly bytes: number,
    readonly heap: Heap,
  ) {
    this.backend = backend;
  }
  get size(): number {
    return this.data.length;
  }
}

export interface WasmBackendOptions {
  /** Registered name; default "wasm". */
  name?: string;
  /** Threads for big kernels, the calling thread included; default TSGRAD_NUM_THREADS or all cores. */
  threads?: number;
  /**
   * Smallest batch M N K sent to the wasm matmul; smaller ones run the TS kernel. Default 64, or 2048 with
   * "js" storage (measured crossovers on the dev machine).
   */
  minMatmulWork?: number;
  /** Smallest output (elements) of a float32 add/sub/mul/div/neg sent to WebAssembly SIMD. */
  minElementwise?: number;
  /** Smallest float32 sum/max over the last dim (input elements) sent to WebAssembly. */
  minReduce?: number;
  /** Smallest float32 exp/sigmoid (elements) sent to WebAssembly. */
  minTranscendental?: number;
  /** Smallest float32 fused softmax/logSoftmax/cross-entropy/SwiGLU (elements) sent to WebAssembly. */
  minFused?: number;
  /** Smallest total M N K split over threads. */
  minThreadedWork?: number;
  /**
   * The matmul's 5 x 8 fused multiply-add tile where relaxed SIMD is available (default; relaxed.ts), else
   * false for the 4 x 8 mul + add tile. TSGRAD_WASM_FMA=0 turns FMA off for every backend.
   */
  fma?: boolean;
  /**
   * Where tensors live. "wasm" (default): in the shared WebAssembly memory, so kernels read them in place;
   * that memory is limited to 4 GiB and is reclaimed from tensors that are not disposed only when the
   * garbage collector runs. "js": ordinary typed arrays, like the plain CPU backend; the wasm kernels copy
   * the operands' spans in and the results out. "auto": float32 tensors in the WebAssembly memory while the
   * tensors there take at most `heapBytes`, then ordinary typed arrays, so a program that never disposes
   * runs out of nothing but speed; other dtypes and adopted arrays (loaded weights) are typed arrays.
   */
  storage?: "wasm" | "js" | "auto";
  /** With "auto" storage: the bytes of tensors kept in the WebAssembly memory; default TSGRAD_WASM_HEAP_MB or 1024 MiB. */
  heapBytes?: number;
}

/** TSGRAD_WASM_HEAP_MB (MiB, at most the 4 GiB a memory can hold), else 1 GiB. */
function defaultHeapBytes(): number {
  return envMiB("TSGRAD_WASM_HEAP_MB", 1024, 4096);
}

/** Defaults measured on the 2-core Zen 5 dev machine (see benchmarks/). */
export const DEFAULT_MIN_MATMUL_WORK = 64;
/** With "js" storage the operands are copied in and out, which costs more than tiny products. */
export const DEFAULT_MIN_MATMUL_WORK_STAGED = 2048;
// NOTE: was 192^3 while waking the workers cost 40-55 us a job; with spinning workers (worker-group.ts) the
// LoRA products (1024 x 256 x 8 and up) run 1.6-1.8x faster on 2 threads than on one
export const DEFAULT_MIN_THREADED_WORK = 1 << 19;

interface Compiled {
  api: WasmApi;
  /** The gemm module of each tile, compiled when first asked for. */
  gemm: Map<GemmTile, object>;
  elementwise: object;
  transcendental: object;
  reduce: object;
  copy: object;
}
let compiled: Compiled | null = null;

/** WebAssembly with 128-bit SIMD and shared memory (threads) is available. */
export function wasmSimdSupported(): boolean {
  const api = wasmApi();
  if (!api || typeof SharedArrayBuffer === "undefined") return false;
  try {
    if (!api.validate(gemmModuleBytes())) return false;
    new api.Memory({ initial: 1, maximum: 1, shared: true }); // throws where shared memory is not allowed
    return true;
  } catch {
    return false;
  }
}

function compile(): Compiled {
  if (!compiled) {
    const api = wasmApi();
    if (!api) throw new Error("wasm backend: WebAssembly is not available in this runtime");
    compiled = {
      api,
      gemm: new Map(),
      elementwise: new api.Module(elementwiseModuleBytes(MEMORY_LIMITS)),
      transcendental: new api.Module(transcendentalModuleBytes(MEMORY_LIMITS)),
      reduce: new api.Module(reduceModuleBytes(MEMORY_LIMITS)),
      copy: new api.Module(copyModuleBytes(MEMORY_LIMITS)),
    };
  }
  return compiled;
}

interface NodeThreads {
  Worker: unknown;
  cores: number;
}

function nodeThreads(): NodeThreads | null {
  const Worker = workerCtor();
  const os = nodeBuiltin<{ availableParallelism?: () => number; cpus(): unknown[] }>("node:os");
  if (!Worker || !os) return null;
  return { Worker, cores: os.availableParallelism?.() ?? os.cpus().length };
}

/** Thread count: the option, else TSGRAD_NUM_THREADS, else every core. */
function threadCount(requested: number | undefined, cores: number): number {
  const env = envVar("TSGRAD_NUM_THREADS");
  const n = requested ?? (env !== undefined && env !== "" ? Number(env) : cores);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`wasm backend: bad thread count ${String(n)}`);
  return n;
}

export interface WasmBackend extends Backend {
  /** Threads big kernels are split over (1: the calling thread only). */
  readonly threads: number;
  /**
   * Starts the worker threads now and resolves when they are ready (true) or could not start (false).
   * Without it they start at the first large matmul, which runs on the calling thread meanwhile.
   */
  startThreads(): Promise<boolean>;
  /** Stops the worker threads; the backend keeps working on the calling thread. */
  stopThreads(): void;
  /** The matmul's register tile (gemm.ts). */
  readonly tile: GemmTile;
  /** How many matmul calls ran where: the TypeScript kernel, the wasm kernel here, or split over threads. */
  readonly counters: { matmulTs: number; matmulWasm: number; matmulThreaded: number };
}

export function createWasmBackend(options: WasmBackendOptions = {}): WasmBackend {
  const name = options.name ?? "wasm";
  const { api, gemm: gemmModules, elementwise, transcendental, reduce, copy } = compile();
  const tile = options.fma !== false && relaxedSimdAvailable(api) ? FMA_TILE : MUL_ADD_TILE;
  if (!gemmModules.has(tile)) gemmModules.set(tile, new api.Module(gemmModuleBytes(tile)));
  const module = gemmModules.get(tile)!;
  const gemmNames = gemmFuncs(tile);
  const memory: WasmMemory = new api.Memory({ ...MEMORY_LIMITS, shared: true });
  const exports = new api.Instance(module, { env: { memory } }).exports;
  const ewExports = new api.Instance(elementwise, { env: { memory } }).exports;
  const copyExports = new api.Instance(copy, { env: { memory } }).exports;
  const trExports = new api.Instance(transcendental, { env: { memory } }).exports;
  const rdExports = new api.Instance(reduce, { env: { memory } }).exports;
  const heap = new Heap(memory, 1024);
  const node = nodeThreads();
  let threads = node ? threadCount(options.threads, node.cores) : 1;
  // NOTE: one threshold whether or not the operands happen to be in the WebAssembly memory ("auto"), so a
  // product's rounding never depends on where its tensors were allocated
  const minWork =
    options.minMatmulWork ??
    (options.storage === "js" || options.storage === "auto"
      ? DEFAULT_MIN_MATMUL_WORK_STAGED
      : DEFAULT_MIN_MATMUL_WORK);
  const minThreaded = options.minThreadedWork ?? DEFAULT_MIN_THREADED_WORK;
  let live = 0;
  const counters = { matmulTs: 0, matmulWasm: 0, matmulThreaded: 0 };
  const finalizer = new FinalizationRegistry<{ addr: number; bytes: number }>((b) => {
    heap.release(b.addr, b.bytes);
    inHeapBytes -= b.bytes;
  });
  // one set of worker threads for the matmul and the fused kernels (kernel-pool.ts)
  const pools = new PoolHolder(
    heap,
    [
      { module, names: gemmNames },
      { module: fusedModule(api), names: SPLIT_FUNCS },
    ],
    () => (node ? threads : 1),
    WORKSPACE_BYTES,
  );
  const gemm = createGemm({
    heap,
    exports: exports as unknown as GemmContext["exports"],
    pool: () => pools.get(),
    work: heap.alloc(WORKSPACE_BYTES),
    tile,
    minThreaded,
    counters,
  });

  const jsStorage = options.storage === "js";
  const autoStorage = options.storage === "auto";
  const heapBudget = autoStorage ? (options.heapBytes ?? defaultHeapBytes()) : Number.POSITIVE_INFINITY;
  let inHeapBytes = 0;
  const inHeap = (st: Storage): st is WasmStorage => st instanceof WasmStorage && st.heap === heap;
  const buffers = new BufferPool(jsStorage || autoStorage ? defaultPoolBytes() : 0);
  const poison = poisonUninitialized();
  const allocStorage = (dtype: DType, size: number, zero: boolean): Storage => {
    const bytes = size * bytesPerElement(dtype);
    // "auto" keeps only float32, the dtype the WebAssembly kernels read, in their memory (which never shrinks)
    if (jsStorage || (autoStorage && (dtype !== "float32" || inHeapBytes + bytes > heapBudget))) {
      live += bytes;
      return new CpuStorage(dtype, buffers.take(dtype, size, zero, poison));
    }
    const addr = heap.alloc(bytes, zero);
    const Ctor = typedArrayFor(dtype, 0).constructor as new (
      b: ArrayBufferLike,
      o: number,
      n: number,
    ) => TypedArray;
    const s = new WasmStorage(name, dtype, new Ctor(heap.buffer, addr, size), addr, bytes, heap);
    if (!zero && poison) fillPoison(s.data);
    finalizer.register(s, { addr, bytes }, s);
    live += bytes;
    inHeapBytes += bytes;
    return s;
  };

  const product = wasmProduct({ gemm, heap, inHeap, minWork, counters });
  const pair = wasmPair({ gemm, heap, inHeap, minWork, product });

  const matmul: Kernel<"matmul"> = ([a, b], _attrs, out) => product(a, b, out, false);

  const kernels: KernelTable = {
    ...cpuKernels,
    matmul,
    ...elementwiseKernels(ewExports, heap, options.minElementwise),
    contiguous: copyKernel(copyExports, heap, options.minElementwise),
    ...transcendentalKernels(trExports, heap, options.minTranscendental),
    ...reduceKernels(rdExports, heap, options.minReduce),
  };

  const fused = wasmFusedKernels({
    heap,
    inHeap: (v) => inHeap(v.storage),
    minSize: options.minFused,
    pool: () => pools.get(),
    poolOffset: gemmNames.length,
  });

  return {
    name,
    kernels,
    fused,
    matmulAccumulate: (a: View, b: View, c: View) => product(a, b, c, true),
    matmulPair: pair,
    matmulCausal: (a: View, b: View, out: View, spec: CausalSpec) => {
      // in place in this memory only; anything else takes the whole product (which the spec allows)
      const r = a.layout.shape.length;
      if (
        a.dtype !== "float32" ||
        !inHeap(a.storage) ||
        !inHeap(b.storage) ||
        !inHeap(out.storage) ||
        r < 2
      ) {
        product(a, b, out, false);
        return;
      }
      const { M, N, K, T } = productDims(a, b);
      if (T * M * N * K === 0) {
        product(a, b, out, false); // K = 0: zeros
        return;
      }
      const base = out.storage.addr + 4 * out.layout.offset;
      gemm.runCausal(a, b, a.storage.addr, b.storage.addr, base, spec);
    },
    counters,
    tile,
    get threads() {
      return threads;
    },
    startThreads(): Promise<boolean> {
      return pools.start();
    },
    stopThreads(): void {
      threads = 1;
      pools.stop();
    },
    alloc(dtype: DType, size: number, zero = true): Storage {
      return allocStorage(dtype, size, zero);
    },
    fromArray(data: TypedArray, dtype: DType): Storage {
      const s = allocStorage(dtype, data.length, false) as CpuStorage | WasmStorage;
      s.data.set(data);
      return s;
    },
    adopt(data: TypedArray, dtype: DType): Storage {
      // Only typed-array storage can take the caller's array; wasm memory needs the copy.
      if (!(jsStorage || autoStorage) || typedArrayFor(dtype, 0).constructor !== data.constructor)
        return this.fromArray(data, dtype);
      live += data.length * bytesPerElement(dtype);
      return new CpuStorage(dtype, data);
    },
    readSync(view: View): TypedArray {
      const src = rowMajor(view);
      const copy = typedArrayFor(view.dtype, src.length);
      copy.set(src);
      return copy;
    },
    read(view: View): Promise<TypedArray> {
      return Promise.resolve(this.readSync!(view));
    },
    free(storage: Storage): void {
      if (storage instanceof CpuStorage) {
        live -= storage.data.length * bytesPerElement(storage.dtype);
        buffers.give(storage.dtype, storage.data);
        storage.data = typedArrayFor(storage.dtype, 0);
        return;
      }
      const s = storage as WasmStorage;
      if (s.addr < 0) return;
      finalizer.unregister(s);
      heap.release(s.addr, s.bytes);
      live -= s.bytes;
      inHeapBytes -= s.bytes;
      s.addr = -1;
      s.data = typedArrayFor(s.dtype, 0);
    },
    liveBytes: () => live,
  };
}

/**
 * Creates the wasm backend and registers it (select it with setBackend("wasm")). Async so that runtimes
 * that must compile WebAssembly asynchronously can be supported behind the same call.
 */
export async function initWasmBackend(options: WasmBackendOptions = {}): Promise<WasmBackend> {
  const backend = createWasmBackend(options);
  await backend.startThreads();
  registerBackend(backend);
  return backend;
}
