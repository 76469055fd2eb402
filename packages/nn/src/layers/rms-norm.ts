// RMSNorm as transformers' Qwen2RMSNorm / LlamaRMSNorm: normalize in float32 (at least), cast back to the
// input dtype, then scale by the weight. float32 and float64 take tensor's rmsNorm (a fused kernel where the
// backend has one); half dtypes keep the composition with its float32 upcast.

import { ones, rmsNorm, type Tensor, zeros } from "@tsgrad/tensor";
import { Module } from "../module.js";
import { Parameter } from "../parameter.js";
import type { LayerOptions } from "./linear.js";

export class RMSNorm extends Module {
  weight: Parameter; // [H], initialized to 1

  constructor(
    readonly hiddenSize: number,
    readonly eps = 1e-6,
    options: LayerOptions = {},
  ) {
    super();
    const { dtype = "float32", init = "default" } = options;
    this.weight = new Parameter(
      init === "zeros" ? zeros([hiddenSize], { dtype }) : ones([hiddenSize], { dtype }),
    );
  }

  /** y = weight * cast(x / sqrt(mean(x^2) + eps)), the mean over the last dim computed in float32. */
  forward(x: Tensor): Tensor {
    const dt = x.dtype;
    if ((dt === "float32" || dt === "float64") && this.weight.dtype === dt)
      return rmsNorm(x, this.weight, this.eps);
    // NOTE: float64 inputs stay float64; transformers' .to(float32) is an upcast for its half dtypes.
    const xf = x.dtype === "float64" ? x : x.to("float32");
    const variance = xf.square().mean(-1, true); // [..., 1]
    const normed = xf.mul(variance.add(this.eps).rsqrt());
    return this.weight.mul(normed.to(x.dtype));
  }
}
