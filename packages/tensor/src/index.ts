// @tsgrad/tensor: tensors, primitive ops with shape and gradient rules, reverse-mode autograd,
// the Backend interface and the plain TypeScript CPU backend.

import { setDefaultBackendFactory } from "./backend/registry.js";
import { createCpuBackend } from "./backend-cpu/index.js";
import { createWasmBackend, wasmSimdSupported } from "./backend-wasm/index.js";
import { envVar } from "./env.js";

// The "cpu" device: the wasm backend wherever WebAssembly SIMD exists, its tensors in the WebAssembly memory
// up to TSGRAD_WASM_HEAP_MB and in ordinary typed arrays past it ("auto" storage), the TypeScript kernels
// where WebAssembly does not win. TSGRAD_CPU_BACKEND=ts selects the plain TypeScript backend, the reference
// every backend is tested against.
setDefaultBackendFactory(() =>
  wasmSimdSupported() && envVar("TSGRAD_CPU_BACKEND") !== "ts"
    ? createWasmBackend({ name: "cpu", storage: "auto" })
    : createCpuBackend(),
);

export { type CustomOpSpec, defineOp } from "./autograd/custom-op.js";
export { backward, type GradNode } from "./autograd/engine.js";
export { isGradEnabled, noGrad, withGradMode } from "./autograd/grad-mode.js";
export { NON_DIFFERENTIABLE, viewVjpRules, vjpRules } from "./autograd/vjp-rules.js";
export type { Backend, CausalSpec, Layout, Storage, View } from "./backend/backend.js";
export { getBackend, getCpuBackend, listBackends, registerBackend, setBackend } from "./backend/registry.js";
export { cpuFusedKernels, cpuKernels, createCpuBackend } from "./backend-cpu/index.js";
export { FMA_TILE, type GemmTile, MUL_ADD_TILE } from "./backend-wasm/gemm.js";
export { causalWork } from "./backend-wasm/gemm-causal.js";
export {
  createWasmBackend,
  initWasmBackend,
  type WasmBackend,
  type WasmBackendOptions,
  wasmSimdSupported,
} from "./backend-wasm/index.js";
export {
  bfloat16BitsToFloat32,
  DTYPES,
  type DType,
  type FloatDType,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  isFloat,
  promoteTypes,
  type TypedArray,
} from "./dtype.js";
export { dropout } from "./functional/activations.js";
export type { CrossEntropyOptions } from "./functional/losses.js";
export { maskedSoftmax, maskedSoftmaxComposition } from "./fused/attention.js";
export {
  fusedKernelsEnabled,
  hasFused,
  runFused,
  setFusedKernels,
  withFusedKernels,
} from "./fused/dispatch.js";
export {
  applyRotary,
  rmsNorm,
  rmsNormComposition,
  ropeComposition,
  rotateHalf,
  swiglu,
  swigluComposition,
} from "./fused/norm-act.js";
export { adamwComposition, adamwUpdate } from "./fused/optim.js";
export type {
  AdamWAttrs,
  FusedKernel,
  FusedKernelTable,
  FusedName,
  FusedSignatures,
} from "./fused/signatures.js";
export { keep, tidy } from "./memory.js";
export type { CreateOptions } from "./ops/creation.js";
export * from "./ops/index.js";
export { BROADCAST_OPS, shapeRules } from "./ops/shape-rules.js";
export type {
  Attrs,
  InputViews,
  Kernel,
  KernelTable,
  OpName,
  OpSignatures,
  TupleOf,
  ViewAttrs,
  ViewOpName,
  ViewOpSignatures,
} from "./ops/signatures.js";
export { getRngState, manualSeed, type RngState, setRngState } from "./rng.js";
export { broadcastShapes, contiguousStrides, numel, type Shape } from "./shape.js";
export { type NestedArray, type Scalar, Tensor, type TensorLike } from "./tensor.js";
