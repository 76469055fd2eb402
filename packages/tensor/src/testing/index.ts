// @tsgrad/tensor/testing: gradcheck, closeness checks and fast-check arbitraries, public so users can
// property-test their own ops, adapters and losses the way this repo tests its own.
export { gradcheck, assertGradients, type GradcheckOptions, type GradcheckResult } from "./gradcheck.js";
export { expectAllClose, firstMismatch, type CloseOptions } from "./all-close.js";
export { arbShape, arbBroadcastShapes, arbTensor, arbBroadcastPair, type ShapeOptions, type TensorOptions } from "./arbitraries.js";
export { TOLERANCES } from "./tolerances.js";
