// One pre-norm decoder block of Qwen2 and Llama: h = x + attn(norm(x)); out = h + mlp(norm(h)).

import type { Tensor } from "@tsgrad/tensor";
import { Module } from "../module.js";
import { Attention, type AttentionContext, type AttentionOptions } from "./attention.js";
import { RMSNorm } from "./rms-norm.js";
import { SwiGLU } from "./swiglu.js";

export interface DecoderLayerOptions extends AttentionOptions {
  intermediateSize: number;
  rmsNormEps: number;
  mlpBias?: boolean;
}

export class DecoderLayer extends Module {
  self_attn: Attention;
  mlp: SwiGLU;
  input_layernorm: RMSNorm;
  post_attention_layernorm: RMSNorm;

  constructor(options: DecoderLayerOptions) {
    super();
    const lo = { dtype: options.dtype, init: options.init };
    this.self_attn = new Attention(options);
    this.mlp = new SwiGLU(options.hiddenSize, options.intermediateSize, {
      ...lo,
      bias: options.mlpBias ?? false,
    });
    this.input_layernorm = new RMSNorm(options.hiddenSize, options.rmsNormEps, lo);
    this.post_attention_layernorm = new RMSNorm(options.hiddenSize, options.rmsNormEps, lo);
  }

  /** x [B, T, H] -> [B, T, H] */
  forward(x: Tensor, ctx: AttentionContext): Tensor {
    const h = x.add(this.self_attn.forward(this.input_layernorm.forward(x), ctx));
    return h.add(this.mlp.forward(this.post_attention_layernorm.forward(h)));
  }
}
