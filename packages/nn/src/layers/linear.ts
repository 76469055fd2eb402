// Linear keeps Hugging Face's weight layout [out, in] and computes y = x W^T + b, so checkpoints load with
// no transposes (style guide 3.7). LinearLike is the surface adapters and quantized layers share.

import { type DType, type Tensor, zeros } from "@tsgrad/tensor";
import { Module } from "../module.js";
import { Parameter } from "../parameter.js";
import { initUniform } from "./init.js";

/** What adapters and quantized layers rely on (style guide 3.9): a Linear, a QuantizedLinear, a LoraLinear. */
export interface LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  forward(x: Tensor): Tensor;
  /** The effective weight [out, in] as a dense float tensor. */
  denseWeight(): Tensor;
}

/** A module usable wherever a Linear is: model code types its projections this way so adapters can swap in. */
export type LinearModule = Module & LinearLike;

export function isLinearLike(m: unknown): m is LinearModule {
  return (
    m instanceof Module &&
    typeof (m as Partial<LinearLike>).inFeatures === "number" &&
    typeof (m as Partial<LinearLike>).outFeatures === "number" &&
    typeof (m as Partial<LinearLike>).denseWeight === "function"
  );
}

export interface LayerOptions {
  dtype?: DType;
  /** "default": torch's initialization; "zeros": allocate only (the weights will be loaded). */
  init?: "default" | "zeros";
}

export class Linear extends Module implements LinearLike {
  weight: Parameter; // [out, in]
  bias: Parameter | null; // [out]

  /**
   * @example const proj = new Linear(32, 64, { bias: false }); const y = proj.forward(x); // [..., 32] -> [..., 64]
   */
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: LayerOptions & { bias?: boolean } = {},
  ) {
    super();
    const { bias = true, dtype = "float32", init = "default" } = options;
    // NOTE: torch's default, kaiming_uniform(a=sqrt(5)), is U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    const bound = 1 / Math.sqrt(inFeatures);
    const make = (shape: number[]) =>
      new Parameter(init === "zeros" ? zeros(shape, { dtype }) : initUniform(shape, bound, dtype));
    this.weight = make([outFeatures, inFeatures]);
    this.bias = bias ? make([outFeatures]) : null;
  }

  forward(x: Tensor): Tensor {
    const lead = x.shape.slice(0, -1);
    const x2 = x.reshape([-1, this.inFeatures]); // [N, in]
    let y = x2.matmul(this.weight.mT); // [N, in] x [in, out] -> [N, out]
    if (this.bias) y = y.add(this.bias);
    return y.reshape([...lead, this.outFeatures]);
  }

  denseWeight(): Tensor {
    return this.weight;
  }
}
