// Batching tokenized examples (TRL's DataCollatorForLanguageModeling; trl-peft-spec 6.4): right padding
// with the pad id, labels -100 and attention 0 on padding. Labels were built before padding, so a real EOS
// whose id equals the pad id is still trained (pain point 8).
//
// Packed rows: position_ids restart at 0 at each packed sequence (RoPE sees each sequence from position 0)
// and the label of each sequence's first token is -100, so no token is trained to predict across a
// boundary. The trainer passes such rows without attention_mask (padding-free), and the model then masks
// attention between the sequences (block-diagonal causal, as padding-free FlashAttention in TRL). Rows stay
// [B, T] padded at the end rather than one [1, sum L] row: the same per-token results, with T^2 attention.

import type { TokenizedExample } from "./packing.js";

export interface SFTBatch {
  input_ids: number[][];
  attention_mask: number[][];
  labels: number[][];
  /** Set when some row is packed (restarts per sequence); null lets the model count 0..T-1. */
  position_ids: number[][] | null;
}

export function collate(
  batchExamples: readonly TokenizedExample[],
  padId: number,
  padToMultipleOf: number | null = null,
  paddingFree = false,
): SFTBatch {
  if (batchExamples.length === 0) throw new Error("collate: empty batch");
  // padding-free (trl-peft-spec 6.4): the whole batch as one row [1, sum L] of packed sequences
  const examples = paddingFree
    ? [
        {
          input_ids: batchExamples.flatMap((e) => e.input_ids),
          labels: batchExamples.flatMap((e) => e.labels),
          seq_lengths: batchExamples.flatMap((e) => e.seq_lengths ?? [e.input_ids.length]),
        },
      ]
    : batchExamples;
  let T = Math.max(...examples.map((e) => e.input_ids.length));
  if (padToMultipleOf && T % padToMultipleOf !== 0) T += padToMultipleOf - (T % padToMultipleOf);
  const packed = examples.some((e) => e.seq_lengths !== undefined && e.seq_lengths.length > 1);
  const batch: SFTBatch = { input_ids: [], attention_mask: [], labels: [], position_ids: packed ? [] : null };
  for (const e of examples) {
    const L = e.input_ids.length;
    const pad = T - L;
    const labels = e.labels.slice();
    const positions: number[] = [];
    for (const len of e.seq_lengths ?? [L]) {
      if (packed) labels[positions.length] = -100;
      for (let p = 0; p < len; p++) positions.push(p);
    }
    batch.input_ids.push([...e.input_ids, ...new Array<number>(pad).fill(padId)]);
    batch.attention_mask.push([...new Array<number>(L).fill(1), ...new Array<number>(pad).fill(0)]);
    batch.labels.push([...labels, ...new Array<number>(pad).fill(-100)]);
    if (batch.position_ids)
      batch.position_ids.push([...positions, ...Array.from({ length: pad }, (_, i) => L + i)]);
  }
  return batch;
}

/** Targets the loss counts in a batch: labels[:, 1:] != -100 (the one-token shift applied). */
export function countTargets(batch: SFTBatch): number {
  let n = 0;
  for (const row of batch.labels) for (let t = 1; t < row.length; t++) if (row[t] !== -100) n++;
  return n;
}

/** Non-padding input tokens (TRL's num_tokens counts these). */
export function countTokens(batch: SFTBatch): number {
  let n = 0;
  for (const row of batch.attention_mask) for (const v of row) n += v;
  return n;
}
