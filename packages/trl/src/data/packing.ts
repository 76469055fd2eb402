// Packing tokenized examples into rows of at most max_length tokens (trl/data_utils.py pack_dataset;
// trl-peft-spec 6.3): best-fit-decreasing bins ("bfd", "bfd_split") or plain wrapping ("wrapped").

export interface TokenizedExample {
  input_ids: number[];
  labels: number[];
  /** Lengths of the sequences a packed row holds, in order (absent: one sequence). */
  seq_lengths?: number[];
}

export type PackingStrategy = "bfd" | "bfd_split" | "wrapped";

/**
 * Packs `examples` into rows of at most `maxLength` tokens.
 * - bfd: empty sequences dropped, each truncated to maxLength, sorted by length (longest first, stable),
 *   each put in the open bin with the least room that still fits it, else a new bin; bins in opening order.
 * - bfd_split: as bfd, but long sequences are cut into maxLength chunks instead of truncated.
 * - wrapped: everything concatenated and cut every maxLength tokens (crosses sequence boundaries).
 * @example packExamples([[1,2,3,4,5],[6,7],[8,9,10],[11]].map(ids => ({ input_ids: ids, labels: ids })), 4, "bfd")
 *          // rows [1,2,3,4], [8,9,10,11] (seq_lengths [3,1]), [6,7]
 */
export function packExamples(
  examples: readonly TokenizedExample[],
  maxLength: number,
  strategy: PackingStrategy,
): TokenizedExample[] {
  if (!(Number.isInteger(maxLength) && maxLength >= 1))
    throw new RangeError(`packing: max_length must be a positive integer, got ${maxLength}`);
  if (strategy === "wrapped") return packWrapped(examples, maxLength);
  const pieces: TokenizedExample[] = [];
  for (const ex of examples) {
    if (ex.input_ids.length === 0) continue;
    if (strategy === "bfd") {
      pieces.push({ input_ids: ex.input_ids.slice(0, maxLength), labels: ex.labels.slice(0, maxLength) });
    } else {
      for (let s = 0; s < ex.input_ids.length; s += maxLength)
        pieces.push({
          input_ids: ex.input_ids.slice(s, s + maxLength),
          labels: ex.labels.slice(s, s + maxLength),
        });
    }
  }
  const order = pieces
    .map((_, i) => i)
    .sort((a, b) => pieces[b]!.input_ids.length - pieces[a]!.input_ids.length);
  const bins: { items: number[]; room: number }[] = [];
  for (const i of order) {
    const len = pieces[i]!.input_ids.length;
    let best = -1;
    for (let b = 0; b < bins.length; b++) {
      const room = bins[b]!.room;
      if (room >= len && (best < 0 || room < bins[best]!.room)) best = b;
    }
    if (best < 0) bins.push({ items: [i], room: maxLength - len });
    else {
      bins[best]!.items.push(i);
      bins[best]!.room -= len;
    }
  }
  return bins.map(({ items }) => ({
    input_ids: items.flatMap((i) => pieces[i]!.input_ids),
    labels: items.flatMap((i) => pieces[i]!.labels),
    seq_lengths: items.map((i) => pieces[i]!.input_ids.length),
  }));
}

function packWrapped(examples: readonly TokenizedExample[], maxLength: number): TokenizedExample[] {
  const ids = examples.flatMap((e) => e.input_ids);
  const labels = examples.flatMap((e) => e.labels);
  const out: TokenizedExample[] = [];
  for (let s = 0; s < ids.length; s += maxLength)
    out.push({ input_ids: ids.slice(s, s + maxLength), labels: labels.slice(s, s + maxLength) });
  return out;
}
