// @tsgrad/tensor: tensors, primitive ops with shape and gradient rules, reverse-mode autograd,
// the Backend interface and the plain TypeScript CPU backend.

import { createCpuBackend } from "./backend-cpu/index.js";
import { setDefaultBackendFactory } from "./backend/registry.js";

setDefaultBackendFactory(() => createCpuBackend());

export { Tensor, type NestedArray, type Scalar, type TensorLike } from "./tensor.js";
export * from "./ops/index.js";
export type { CreateOptions } from "./ops/creation.js";
export type { CrossEntropyOptions } from "./functional/losses.js";
export { dropout } from "./functional/activations.js";
export { noGrad, isGradEnabled, withGradMode } from "./autograd/grad-mode.js";
export { backward, type GradNode } from "./autograd/engine.js";
export { defineOp, type CustomOpSpec } from "./autograd/custom-op.js";
export { NON_DIFFERENTIABLE, vjpRules, viewVjpRules } from "./autograd/vjp-rules.js";
export { tidy, keep } from "./memory.js";
export { manualSeed, getRngState, setRngState, type RngState } from "./rng.js";
export {
  type DType,
  type FloatDType,
  type TypedArray,
  DTYPES,
  isFloat,
  promoteTypes,
  float32ToBfloat16Bits,
  bfloat16BitsToFloat32,
  float32ToFloat16Bits,
  float16BitsToFloat32,
} from "./dtype.js";
export { broadcastShapes, contiguousStrides, numel, type Shape } from "./shape.js";
export type { Backend, Layout, Storage, View } from "./backend/backend.js";
export type { Attrs, InputViews, Kernel, KernelTable, OpName, OpSignatures, ViewOpName } from "./ops/signatures.js";
export { shapeRules, BROADCAST_OPS } from "./ops/shape-rules.js";
export { getBackend, setBackend, registerBackend, listBackends, getCpuBackend } from "./backend/registry.js";
export { createCpuBackend, cpuKernels } from "./backend-cpu/index.js";
