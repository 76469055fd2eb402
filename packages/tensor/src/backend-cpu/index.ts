// The plain TypeScript CPU backend: typed-array storage and a total kernel table. It is the reference
// every other backend is tested against and falls back to.

import type { Backend, Storage, View } from "../backend/backend.js";
import { bytesPerElement, type DType, type TypedArray, typedArrayFor } from "../dtype.js";
import type { FusedKernelTable } from "../fused/signatures.js";
import type { KernelTable } from "../ops/signatures.js";
import { elementwiseKernels } from "./kernels-elementwise.js";
import { cpuFusedKernels } from "./kernels-fused.js";
import { indexingKernels } from "./kernels-indexing.js";
import { matmul } from "./kernels-matmul.js";
import { reduceKernels } from "./kernels-reduce.js";
import { BufferPool, defaultPoolBytes, poisonUninitialized } from "./pool.js";
import { CpuStorage, rowMajor } from "./storage.js";

export { cpuFusedKernels };

export const cpuKernels: KernelTable = {
  ...elementwiseKernels,
  ...reduceKernels,
  ...indexingKernels,
  matmul,
};

export function createCpuBackend(
  name = "cpu",
  kernels: KernelTable = cpuKernels,
  fused: Partial<FusedKernelTable> = cpuFusedKernels,
): Backend {
  let live = 0;
  const pool = new BufferPool(defaultPoolBytes());
  const poison = poisonUninitialized();
  const copyOf = (data: TypedArray, dtype: DType): TypedArray => {
    const out = typedArrayFor(dtype, data.length);
    out.set(data);
    return out;
  };
  return {
    name,
    kernels,
    fused,
    alloc(dtype: DType, size: number, zero = true): Storage {
      live += size * bytesPerElement(dtype);
      return new CpuStorage(dtype, pool.take(dtype, size, zero, poison));
    },
    fromArray(data: TypedArray, dtype: DType): Storage {
      live += data.length * bytesPerElement(dtype);
      return new CpuStorage(dtype, copyOf(data, dtype));
    },
    adopt(data: TypedArray, dtype: DType): Storage {
      if (typedArrayFor(dtype, 0).constructor !== data.constructor) return this.fromArray(data, dtype);
      live += data.length * bytesPerElement(dtype);
      return new CpuStorage(dtype, data);
    },
    readSync(view: View): TypedArray {
      return copyOf(rowMajor(view), view.dtype);
    },
    read(view: View): Promise<TypedArray> {
      return Promise.resolve(this.readSync!(view));
    },
    free(storage: Storage): void {
      const s = storage as CpuStorage;
      live -= s.data.length * bytesPerElement(s.dtype);
      pool.give(s.dtype, s.data);
      s.data = typedArrayFor(s.dtype, 0);
    },
    liveBytes: () => live,
  };
}
