// Autoregressive decoding with a KV cache, as transformers' generate: one forward over the (left-padded)
// prompts, then one token per step. Positions come from the attention mask (cumsum - 1), so a padded row
// decodes as it would alone. Sampling applies temperature, top-k and top-p in that order (the order of
// transformers' logits warpers) and draws from the global seeded generator (manualSeed).

import { noGrad, rand, type Tensor, tensor, tidy } from "@tsgrad/tensor";
import type { CausalLM, IntInput } from "../models/causal-lm.js";
import { toFlatInts, toIdTensor } from "../models/causal-lm.js";

export interface GenerateOptions {
  max_new_tokens: number;
  do_sample?: boolean;
  temperature?: number;
  /** Keep the k most likely tokens when sampling (0 = off). */
  top_k?: number;
  /** Keep the smallest set of tokens whose probability reaches top_p when sampling (1 = off). */
  top_p?: number;
  /** Defaults to generation_config.json's, else config.eos_token_id. A row stops after emitting one of these. */
  eos_token_id?: number | number[] | null;
  /** Written after a row has finished; defaults to the generation or model config's, else the first eos id. */
  pad_token_id?: number | null;
  /** [B, T]; 0 marks left padding. Defaults to all ones. */
  attention_mask?: IntInput | null;
}

/** transformers' position_ids for generation: cumsum(mask) - 1, with 1 at padded positions. */
export function positionsFromMask(mask: ArrayLike<number>, B: number, T: number): Int32Array {
  const out = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let seen = 0;
    for (let t = 0; t < T; t++) {
      const m = mask[b * T + t]!;
      seen += m !== 0 ? 1 : 0;
      out[b * T + t] = m !== 0 ? seen - 1 : 1;
    }
  }
  return out;
}

function argmax(row: Float32Array | Float64Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** Temperature, top-k and top-p on one row of logits, then a draw with uniform u in [0, 1). */
export function sampleToken(
  logits: ArrayLike<number>,
  u: number,
  opts: { temperature: number; top_k: number; top_p: number },
): number {
  const V = logits.length;
  const scores = Float64Array.from(logits, (x) => x / opts.temperature);
  if (opts.top_k > 0 && opts.top_k < V) {
    // Keep scores >= the k-th largest (ties at the threshold survive, as torch.topk-based filtering).
    const threshold = Float64Array.from(scores).sort()[V - opts.top_k]!;
    for (let i = 0; i < V; i++) if (scores[i]! < threshold) scores[i] = Number.NEGATIVE_INFINITY;
  }
  const max = scores.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY);
  const probs = scores.map((s) => Math.exp(s - max));
  let total = probs.reduce((a, b) => a + b, 0);
  if (opts.top_p < 1) {
    // Drop the least likely tokens whose cumulative probability (ascending) is <= 1 - top_p; keep at least one.
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => probs[a]! - probs[b]!);
    let cum = 0;
    for (let j = 0; j < V - 1; j++) {
      cum += probs[order[j]!]! / total;
      if (cum > 1 - opts.top_p) break;
      probs[order[j]!] = 0;
    }
    total = probs.reduce((a, b) => a + b, 0);
  }
  let acc = 0;
  const target = u * total;
  let last = 0;
  for (let i = 0; i < V; i++) {
    if (probs[i]! === 0) continue;
    last = i;
    acc += probs[i]!;
    if (acc > target) return i;
  }
  return last;
}

/**
 * Greedy (default) or sampled continuation of each prompt; returns [B, T + n] int32 tokens, where n <=
 * max_new_tokens (fewer when every row has emitted eos). Finished rows are filled with pad_token_id.
 * @example
 * manualSeed(0);
 * const out = generate(model, [[0, 0, 5, 6], [1, 2, 3, 4]], { max_new_tokens: 4, attention_mask: [[0, 0, 1, 1], [1, 1, 1, 1]] });
 */
export function generate(model: CausalLM, inputIds: IntInput, options: GenerateOptions): Tensor {
  const { max_new_tokens, do_sample = false, temperature = 1, top_k = 50, top_p = 1 } = options;
  if (!(Number.isInteger(max_new_tokens) && max_new_tokens >= 0))
    throw new RangeError(`generate: max_new_tokens must be a non-negative integer, got ${max_new_tokens}`);
  if (do_sample && !(temperature > 0))
    throw new RangeError(`generate: temperature must be > 0 when sampling, got ${temperature}`);
  const ids = toIdTensor(inputIds, "input_ids");
  const [B, T] = ids.shape as [number, number];
  const rows = ids.tolistSync() as number[][];
  const mask: number[][] =
    options.attention_mask != null
      ? chunkRows(toFlatInts(options.attention_mask, B, T, "attention_mask"), B, T)
      : rows.map((r) => r.map(() => 1));
  const gen = model.generationConfig;
  const eosRaw =
    options.eos_token_id !== undefined
      ? options.eos_token_id
      : gen.eos_token_id !== undefined
        ? gen.eos_token_id
        : model.config.eos_token_id;
  const eos = eosRaw == null ? [] : Array.isArray(eosRaw) ? eosRaw : [eosRaw];
  const pad = options.pad_token_id ?? gen.pad_token_id ?? model.config.pad_token_id ?? eos[0] ?? 0;
  const cache = model.createCache();
  const finished = new Array<boolean>(B).fill(false);
  let stepIds: Tensor = ids;
  let stepPositions: Int32Array = positionsFromMask(mask.flat(), B, T);
  try {
    for (let step = 0; step < max_new_tokens; step++) {
      const S = mask[0]!.length;
      const last = noGrad(() =>
        tidy(() => {
          const { logits } = model.forward({
            input_ids: stepIds,
            attention_mask: tensor(Int32Array.from(mask.flat()), { shape: [B, S] }),
            position_ids: tensor(stepPositions, { shape: [B, stepPositions.length / B] }),
            past_key_values: cache,
            logits_to_keep: 1,
          });
          return logits.reshape([B, logits.shape[2]!]); // [B, 1, V] -> [B, V]
        }),
      );
      const data = last.dataSync();
      last.dispose();
      const V = data.length / B;
      const u = do_sample ? drawUniforms(B) : null;
      const next = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        const row = data.subarray(b * V, (b + 1) * V) as Float32Array | Float64Array;
        const tok = finished[b]
          ? pad
          : u
            ? sampleToken(row, u[b]!, { temperature, top_k, top_p })
            : argmax(row);
        next[b] = tok;
        rows[b]!.push(tok);
        mask[b]!.push(1);
        if (!finished[b] && eos.includes(tok)) finished[b] = true;
      }
      if (finished.every(Boolean)) break;
      if (stepIds !== ids) stepIds.dispose();
      stepIds = tensor(next, { shape: [B, 1] });
      stepPositions = Int32Array.from(mask, (m) => m.reduce((a, v) => a + (v !== 0 ? 1 : 0), 0) - 1);
    }
  } finally {
    if (stepIds !== ids) stepIds.dispose();
    if (ids !== inputIds) ids.dispose();
    for (const c of cache) {
      c.k?.dispose();
      c.v?.dispose();
    }
  }
  return tensor(rows, { dtype: "int32" });
}

/** B uniforms in [0, 1) from the global seeded generator. */
function drawUniforms(B: number): Float64Array {
  const t = noGrad(() => rand([B], { dtype: "float64" }));
  const u = Float64Array.from(t.dataSync());
  t.dispose();
  return u;
}

function chunkRows(flat: ArrayLike<number>, B: number, T: number): number[][] {
  return Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => flat[b * T + t]!));
}
