// Rotary position embeddings in Hugging Face's non-interleaved "rotate half" layout: dimension i turns
// with dimension i + d/2 (transformers apply_rotary_pos_emb; candle calls this variant `rope`). The
// frequencies follow modeling_rope_utils.py: "default" and "llama3" (_compute_llama3_parameters).

import { type DType, type Tensor, tensor } from "@tsgrad/tensor";

export interface RopeScaling {
  rope_type?: string;
  /** Older configs spell rope_type as type. */
  type?: string;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

/** inv_freq[i] = 1 / theta^(2i/d) for i < d/2, rescaled by llama3 scaling when configured. */
export function ropeInvFreq(headDim: number, theta: number, scaling?: RopeScaling | null): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / theta ** ((2 * i) / headDim);
  const type = scaling?.rope_type ?? scaling?.type ?? "default";
  if (type === "default") return inv;
  if (type !== "llama3") {
    throw new Error(
      `rope_scaling: rope_type "${type}" is not supported; expected "default" or "llama3" (or null)`,
    );
  }
  const {
    factor,
    low_freq_factor: low,
    high_freq_factor: high,
    original_max_position_embeddings: old,
  } = scaling!;
  if (factor === undefined || low === undefined || high === undefined || old === undefined) {
    throw new Error(
      `rope_scaling: llama3 needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings, got ${JSON.stringify(scaling)}`,
    );
  }
  const lowWavelen = old / low;
  const highWavelen = old / high;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / inv[i]!;
    if (wavelen > lowWavelen)
      inv[i] = inv[i]! / factor; // low frequencies: scaled down
    else if (wavelen >= highWavelen) {
      // medium frequencies: blend of scaled and unscaled
      const smooth = (old / wavelen - low) / (high - low);
      inv[i] = ((1 - smooth) * inv[i]!) / factor + smooth * inv[i]!;
    } // high frequencies: unchanged
  }
  return inv;
}

/** cos and sin tables [B, 1, T, d] for integer positions [B][T], computed in float64, stored in dtype. */
export function ropeCosSin(
  invFreq: Float64Array,
  positions: ArrayLike<number>,
  B: number,
  T: number,
  dtype: DType,
): { cos: Tensor; sin: Tensor } {
  const half = invFreq.length;
  const d = 2 * half;
  const cosArr = dtype === "float64" ? new Float64Array(B * T * d) : new Float32Array(B * T * d);
  const sinArr = dtype === "float64" ? new Float64Array(B * T * d) : new Float32Array(B * T * d);
  // rows of a batch usually repeat the same positions: each distinct one is computed once, then copied
  const first = new Map<number, number>();
  for (let bt = 0; bt < B * T; bt++) {
    const p = positions[bt]!;
    const seen = first.get(p);
    if (seen !== undefined) {
      cosArr.copyWithin(bt * d, seen * d, seen * d + d);
      sinArr.copyWithin(bt * d, seen * d, seen * d + d);
      continue;
    }
    first.set(p, bt);
    for (let i = 0; i < half; i++) {
      const angle = p * invFreq[i]!;
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      // emb = cat(freqs, freqs): both halves share frequency i
      cosArr[bt * d + i] = c;
      cosArr[bt * d + i + half] = c;
      sinArr[bt * d + i] = s;
      sinArr[bt * d + i + half] = s;
    }
  }
  const shape = [B, 1, T, d];
  return { cos: tensor(cosArr, { shape, dtype }), sin: tensor(sinArr, { shape, dtype }) };
}

// rotate_half and apply_rotary_pos_emb are tensor's: a fused kernel for float32/float64 x with tables
// [B or 1, 1, T, d] (the tables get no gradient there), the composition x * cos + rotate_half(x) * sin
// otherwise.
export { applyRotary, rotateHalf } from "@tsgrad/tensor";
