// @tsgrad/tensor/testing: gradcheck, closeness checks and fast-check arbitraries, public so users can
// property-test their own ops, adapters and losses the way this repo tests its own.

export { type CloseOptions, expectAllClose, firstMismatch } from "./all-close.js";
export {
  arbBroadcastPair,
  arbBroadcastShapes,
  arbShape,
  arbTensor,
  type ShapeOptions,
  type TensorOptions,
} from "./arbitraries.js";
export {
  CONFORMANCE_OPS,
  type ConformanceOptions,
  type ConformanceReport,
  runConformance,
} from "./conformance.js";
export { type CaseTiming, timeConformance } from "./conformance-timing.js";
export { assertGradients, type GradcheckOptions, type GradcheckResult, gradcheck } from "./gradcheck.js";
export { TOLERANCES } from "./tolerances.js";
