// Grouped-query self-attention as transformers' eager path (Qwen2Attention / LlamaAttention): project,
// RoPE on q and k, append to the KV cache, repeat_kv, scores + additive mask, softmax in float32, o_proj.

import { cat, type DType, dropout, keep, type Tensor, tensor } from "@tsgrad/tensor";
import { Module } from "../module.js";
import { type LayerOptions, Linear, type LinearModule } from "./linear.js";
import { applyRotary } from "./rope.js";

/** The most negative finite value of a float dtype: transformers fills masked scores with torch.finfo(dtype).min. */
export function dtypeMin(dtype: DType): number {
  return dtype === "float64" ? -Number.MAX_VALUE : -3.4028234663852886e38;
}

/**
 * The additive mask [B, 1, T, S] for T new queries after `past` cached positions: 0 where query i may
 * see key j (j <= past + i, and attention_mask[b][j] is 1), the dtype's min elsewhere. Returns null when
 * nothing is masked (one new token and no padding).
 * NOTE: a query whose keys are all masked (a left-padding position) gets equal scores everywhere, so a
 * uniform attention row, exactly as transformers' eager attention does.
 */
export function buildAttentionMask(
  attentionMask: ArrayLike<number> | null,
  B: number,
  T: number,
  past: number,
  dtype: DType,
): Tensor | null {
  const S = past + T;
  if (attentionMask !== null && attentionMask.length !== B * S) {
    throw new RangeError(
      `attention_mask: expected ${B} x ${S} entries (past ${past} + new ${T} positions), got ${attentionMask.length}`,
    );
  }
  const hasPadding =
    attentionMask !== null && Array.prototype.some.call(attentionMask, (v: number) => v === 0);
  if (T === 1 && !hasPadding) return null;
  const min = dtypeMin(dtype);
  const arr = dtype === "float64" ? new Float64Array(B * T * S) : new Float32Array(B * T * S);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < T; i++)
      for (let j = 0; j < S; j++) {
        const visible = j <= past + i && (attentionMask === null || attentionMask[b * S + j] !== 0);
        if (!visible) arr[(b * T + i) * S + j] = min;
      }
  return tensor(arr, { shape: [B, 1, T, S], dtype });
}

/** repeat_kv: [B, nKV, S, d] -> [B, nKV * g, S, d], KV head j serving query heads j*g .. j*g+g-1. */
export function repeatKv(x: Tensor, g: number): Tensor {
  if (g === 1) return x;
  const [B, KV, S, D] = x.shape as [number, number, number, number];
  return x
    .unsqueeze(2)
    .expand([B, KV, g, S, D]) // [B, nKV, g, S, d]
    .reshape([B, KV * g, S, D]); // [B, nH, S, d]
}

/** Keys and values of the positions seen so far, post-RoPE and before repeat_kv: [B, nKV, S, d]. */
export interface KVCache {
  k: Tensor | null;
  v: Tensor | null;
}

export interface AttentionContext {
  cos: Tensor; // [B, 1, T, d]
  sin: Tensor; // [B, 1, T, d]
  mask: Tensor | null; // [B, 1, T, S] additive
  cache?: KVCache;
}

export interface AttentionOptions extends LayerOptions {
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Bias on q_proj, k_proj, v_proj (Qwen2: always; Llama: attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (Qwen2: never; Llama: attention_bias). */
  oBias: boolean;
  dropout?: number;
}

export class Attention extends Module {
  q_proj: LinearModule;
  k_proj: LinearModule;
  v_proj: LinearModule;
  o_proj: LinearModule;
  private readonly _o: AttentionOptions;

  constructor(options: AttentionOptions) {
    super();
    const { hiddenSize: H, numHeads, numKvHeads, headDim: D, qkvBias, oBias } = options;
    if (numHeads % numKvHeads !== 0)
      throw new RangeError(
        `Attention: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`,
      );
    const lo = { dtype: options.dtype, init: options.init };
    this.q_proj = new Linear(H, numHeads * D, { ...lo, bias: qkvBias });
    this.k_proj = new Linear(H, numKvHeads * D, { ...lo, bias: qkvBias });
    this.v_proj = new Linear(H, numKvHeads * D, { ...lo, bias: qkvBias });
    this.o_proj = new Linear(numHeads * D, H, { ...lo, bias: oBias });
    this._o = options;
  }

  /** x [B, T, H] -> [B, T, H] */
  forward(x: Tensor, ctx: AttentionContext): Tensor {
    const [B, T] = x.shape as [number, number];
    const { numHeads: nH, numKvHeads: nKV, headDim: D } = this._o;
    const q = this.q_proj.forward(x).reshape([B, T, nH, D]).transpose(1, 2); // [B, nH, T, d]
    let k = this.k_proj.forward(x).reshape([B, T, nKV, D]).transpose(1, 2); // [B, nKV, T, d]
    let v = this.v_proj.forward(x).reshape([B, T, nKV, D]).transpose(1, 2); // [B, nKV, T, d]
    const qr = applyRotary(q, ctx.cos, ctx.sin);
    k = applyRotary(k, ctx.cos, ctx.sin);
    const cache = ctx.cache;
    if (cache) {
      const [oldK, oldV] = [cache.k, cache.v];
      if (oldK && oldV) {
        k = cat([oldK, k], 2); // [B, nKV, S, d]
        v = cat([oldV, v], 2);
      }
      cache.k = keep(k.contiguous());
      cache.v = keep(v.contiguous());
      oldK?.dispose();
      oldV?.dispose();
      k = cache.k;
      v = cache.v;
    }
    const g = nH / nKV;
    const kr = repeatKv(k, g); // [B, nH, S, d]
    const vr = repeatKv(v, g); // [B, nH, S, d]
    let scores = qr.matmul(kr.mT).mul(D ** -0.5); // [B, nH, T, S]
    if (ctx.mask) scores = scores.add(ctx.mask);
    // NOTE: softmax in (at least) float32, then back to the activation dtype, as transformers does.
    const wide = scores.dtype === "float64" ? scores : scores.to("float32");
    let probs = wide.softmax(-1).to(x.dtype);
    probs = dropout(probs, this._o.dropout ?? 0, this.training);
    const o = probs.matmul(vr); // [B, nH, T, d]
    return this.o_proj.forward(o.transpose(1, 2).reshape([B, T, nH * D])); // [B, T, H]
  }
}
