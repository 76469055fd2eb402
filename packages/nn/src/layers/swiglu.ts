// The SwiGLU feed-forward of Qwen2 and Llama: down_proj(silu(gate_proj(x)) * up_proj(x)).

import { swiglu, type Tensor } from "@tsgrad/tensor";
import { Module } from "../module.js";
import { type LayerOptions, Linear, type LinearModule } from "./linear.js";

export class SwiGLU extends Module {
  gate_proj: LinearModule; // [I, H]
  up_proj: LinearModule; // [I, H]
  down_proj: LinearModule; // [H, I]

  constructor(hiddenSize: number, intermediateSize: number, options: LayerOptions & { bias?: boolean } = {}) {
    super();
    const o = { dtype: options.dtype, init: options.init, bias: options.bias ?? false };
    this.gate_proj = new Linear(hiddenSize, intermediateSize, o);
    this.up_proj = new Linear(hiddenSize, intermediateSize, o);
    this.down_proj = new Linear(intermediateSize, hiddenSize, o);
  }

  /** [..., H] -> [..., I] -> [..., H]; the act is silu (config.ts rejects any other hidden_act). */
  forward(x: Tensor): Tensor {
    return this.down_proj.forward(swiglu(this.gate_proj.forward(x), this.up_proj.forward(x)));
  }
}
