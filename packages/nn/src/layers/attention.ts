// Grouped-query self-attention as transformers' eager path (Qwen2Attention / LlamaAttention): project,
// RoPE on q and k, append to the KV cache, scores + additive mask, softmax in float32 (scale, mask and softmax
// as tensor's fused maskedSoftmax), o_proj. GQA groups the query heads of each KV head into one matmul batch
// instead of repeating k and v (repeat_kv).

import { cat, type DType, dropout, keep, maskedSoftmax, type Tensor, tensor } from "@tsgrad/tensor";
import { Module } from "../module.js";
import { causalScores, causalValues } from "./causal-attention.js";
import { type LayerOptions, Linear, type LinearModule } from "./linear.js";
import { applyRotary } from "./rope.js";

/** The most negative finite value of a float dtype: transformers fills masked scores with torch.finfo(dtype).min. */
export function dtypeMin(dtype: DType): number {
  return dtype === "float64" ? -Number.MAX_VALUE : -3.4028234663852886e38;
}

/**
 * The additive mask [B, 1, T, S] for T new queries after `past` cached positions: 0 where query i may
 * see key j (j <= past + i, and attention_mask[b][j] is 1, and, given `segments` (packedSequenceIds, with
 * no past), j lies in i's sequence), the dtype's min elsewhere. Returns null when nothing is masked (one new
 * token and no padding).
 * NOTE: a query whose keys are all masked (a left-padding position) gets equal scores everywhere, so a
 * uniform attention row, exactly as transformers' eager attention does.
 */
export function buildAttentionMask(
  attentionMask: ArrayLike<number> | null,
  B: number,
  T: number,
  past: number,
  dtype: DType,
  segments: ArrayLike<number> | null = null,
): Tensor | null {
  const S = past + T;
  if (attentionMask !== null && attentionMask.length !== B * S) {
    throw new RangeError(
      `attention_mask: expected ${B} x ${S} entries (past ${past} + new ${T} positions), got ${attentionMask.length}`,
    );
  }
  if (segments !== null && (past !== 0 || segments.length !== B * T))
    throw new RangeError(
      `packed sequences: expected ${B} x ${T} segment ids and no past, got ${segments.length}`,
    );
  if (T === 1 && !hasPadding(attentionMask)) return null;
  const min = dtypeMin(dtype);
  const arr = dtype === "float64" ? new Float64Array(B * T * S) : new Float32Array(B * T * S);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < T; i++)
      for (let j = 0; j < S; j++) {
        const visible =
          j <= past + i &&
          (attentionMask === null || attentionMask[b * S + j] !== 0) &&
          (segments === null || segments[b * T + j] === segments[b * T + i]);
        if (!visible) arr[(b * T + i) * S + j] = min;
      }
  return tensor(arr, { shape: [B, 1, T, S], dtype });
}

/** Whether an attention_mask hides any position (has a 0). */
export function hasPadding(attentionMask: ArrayLike<number> | null | undefined): boolean {
  return attentionMask != null && Array.prototype.some.call(attentionMask, (v: number) => v === 0);
}

/**
 * Which packed sequence each token belongs to, as transformers' find_packed_sequence_indices: a sequence
 * starts wherever position_ids does not go up by exactly 1 (a packed row restarts them at 0), so row
 * [0, 1, 2, 0, 1] holds sequences 0 0 0 1 1. Null when every row is one sequence. transformers then masks
 * attention between sequences (block-diagonal causal), as padding-free FlashAttention does in TRL; it does
 * so only when there is no attention_mask and no cache (trl-peft-spec 6.3).
 * @example packedSequenceIds([0, 1, 2, 0, 1], 1, 5); // Int32Array [0, 0, 0, 1, 1]
 */
export function packedSequenceIds(positions: ArrayLike<number>, B: number, T: number): Int32Array | null {
  const seg = new Int32Array(B * T);
  let packed = false;
  for (let b = 0; b < B; b++)
    for (let t = 1; t < T; t++) {
      const i = b * T + t;
      const next = positions[i] !== positions[i - 1]! + 1;
      seg[i] = seg[i - 1]! + (next ? 1 : 0);
      packed ||= next;
    }
  return packed ? seg : null;
}

/**
 * repeat_kv: [B, nKV, S, d] -> [B, nKV * g, S, d], KV head j serving query heads j*g .. j*g+g-1.
 * NOTE: Attention no longer calls it (it groups the query heads instead); kept for callers of the export.
 */
export function repeatKv(x: Tensor, g: number): Tensor {
  if (g === 1) return x;
  const [B, KV, S, D] = x.shape as [number, number, number, number];
  return x
    .unsqueeze(2)
    .expand([B, KV, g, S, D]) // [B, nKV, g, S, d]
    .reshape([B, KV * g, S, D]); // [B, nH, S, d]
}

/** Keys and values of the positions seen so far, post-RoPE, one per KV head: [B, nKV, S, d]. */
export interface KVCache {
  k: Tensor | null;
  v: Tensor | null;
}

export interface AttentionContext {
  cos: Tensor; // [B, 1, T, d]
  sin: Tensor; // [B, 1, T, d]
  mask: Tensor | null; // [B, 1, T, S] additive
  cache?: KVCache;
  /** The mask hides every key after the query's position (a decoder's always does); it may hide more. */
  causal?: boolean;
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
    const g = nH / nKV;
    // The heads-major [B, heads, T, d] are views of the projections' own layout [B, T, heads, d]. RoPE reads
    // that view in place and writes q and k heads-major and contiguous (its gradient goes back in the
    // projection's layout), so q regroups for GQA below without a copy either way; v stays a view.
    const [cos, sin] = [ctx.cos.expand([B, 1, T, D]), ctx.sin.expand([B, 1, T, D])];
    const heads = (t: Tensor, n: number, rope: boolean) => {
      const v = t.reshape([B, T, n, D]).transpose(1, 2);
      return rope ? applyRotary(v, cos, sin) : v;
    };
    const q = heads(this.q_proj.forward(x), nH, true); // [B, nH, T, d]
    let k = heads(this.k_proj.forward(x), nKV, true); // [B, nKV, T, d]
    let v = heads(this.v_proj.forward(x), nKV, false); // [B, nKV, T, d]
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
    const S = k.shape[2]!;
    // GQA without repeat_kv: query heads j*g .. j*g+g-1 share KV head j, so q [B, nH, T, d] read as
    // [B, nKV, g*T, d] meets k and v [B, nKV, S, d] in one batched matmul each, and k and v get their
    // gradients without the sum over g that expand's backward would need. (g = 1: no reshape, no copy.)
    const qg = q.reshape([B, nKV, g * T, D]);
    // Causal and without a cache (S = T): the products skip what the mask cancels (causal-attention.ts),
    // on backends with that kernel; the plain products are the reference.
    const causal =
      ctx.causal === true && S === T && q.dtype === "float32" && q.backend.matmulCausal !== undefined;
    const raw = causal ? causalScores(qg, k, T) : qg.matmul(k.mT); // [B, nKV, g*T, S]
    const mask = ctx.mask;
    let probs: Tensor;
    if (
      (raw.dtype === "float32" || raw.dtype === "float64") &&
      (!mask || (mask.dtype === raw.dtype && mask.ndim <= 4))
    ) {
      // softmax(scores * d^-1/2 + mask) as one fused op: the scores read per head [B, nH, T, S] (the same
      // memory) against the mask [B, 1, T, S] (or [B, nH, T, S]); no scaled or masked copy of the scores
      probs = maskedSoftmax(raw.reshape([B, nH, T, S]), mask, D ** -0.5).reshape([B, nKV, g * T, S]);
    } else {
      let scores = raw.mul(D ** -0.5);
      if (mask)
        scores = scores
          .reshape([B, nKV, g, T, S])
          .add(groupedMask(mask, nH, nKV))
          .reshape([B, nKV, g * T, S]);
      // NOTE: softmax in (at least) float32, then back to the activation dtype, as transformers does.
      const wide = scores.dtype === "float64" ? scores : scores.to("float32");
      probs = wide.softmax(-1).to(x.dtype);
    }
    probs = dropout(probs, this._o.dropout ?? 0, this.training);
    const pv = causal ? causalValues(probs, v, T) : probs.matmul(v); // [B, nKV, g*T, d]
    const o = pv.reshape([B, nH, T, D]); // -> [B, nH, T, d]
    return this.o_proj.forward(o.transpose(1, 2).reshape([B, T, nH * D])); // [B, T, H]
  }
}

/**
 * An additive mask for scores [B, nH, T, S] made to broadcast against the grouped scores [B, nKV, g, T, S]:
 * [B, 1, T, S] gains the group dim, [B, nH, T, S] splits its heads into (nKV, g), other ranks broadcast as is.
 */
function groupedMask(mask: Tensor, nH: number, nKV: number): Tensor {
  if (mask.ndim !== 4) return mask;
  const [b, h, t, s] = mask.shape as [number, number, number, number];
  return h === nH && nH !== 1 ? mask.reshape([b, nKV, nH / nKV, t, s]) : mask.unsqueeze(1);
}
