// Per-token log-probabilities of given sequences, what TRL's DPO and GRPO trainers compute from one
// forward pass (trl-peft spec 7.2): logp_t = log_softmax(logits[:, t - 1])[input_ids[:, t]] for t >= 1.

import { type Tensor, tensor, where } from "@tsgrad/tensor";
import { type CausalLM, type IntInput, toFlatInts, toIdTensor } from "../models/causal-lm.js";
import { positionsFromMask } from "./generate.js";

/**
 * log p(input_ids[:, t] | input_ids[:, < t]) for t = 1 .. T-1 as a [B, T-1] tensor (differentiable),
 * 0 where attention_mask[:, t] or completion_mask[:, t] is 0. Sum over dim 1 for sequence log-probs.
 * Positions come from the attention mask, so left-padded rows score as they would alone.
 * @example const logps = sequenceLogProbs(model, ids, mask, { completion_mask }).sum(1); // [B]
 */
export function sequenceLogProbs(
  model: CausalLM,
  input_ids: IntInput,
  attention_mask?: IntInput | null,
  options: { completion_mask?: IntInput | null } = {},
): Tensor {
  const ids = toIdTensor(input_ids, "input_ids");
  const [B, T] = ids.shape as [number, number];
  const mask =
    attention_mask != null
      ? toFlatInts(attention_mask, B, T, "attention_mask")
      : new Int32Array(B * T).fill(1);
  const completion =
    options.completion_mask != null ? toFlatInts(options.completion_mask, B, T, "completion_mask") : null;
  const { logits } = model.forward({
    input_ids: ids,
    attention_mask: tensor(Int32Array.from(mask), { shape: [B, T] }),
    position_ids: tensor(positionsFromMask(mask, B, T), { shape: [B, T] }),
  });
  const wide = logits.dtype === "float64" ? logits : logits.to("float32");
  const logp = wide.slice(1, 0, T - 1).logSoftmax(-1); // [B, T-1, V]
  const targets = ids.slice(1, 1); // [B, T-1]
  const tok = logp.gather(2, targets.unsqueeze(-1)).squeeze(-1); // [B, T-1]
  const keep = new Uint8Array(B * (T - 1));
  for (let b = 0; b < B; b++)
    for (let t = 1; t < T; t++) {
      const i = b * T + t;
      keep[b * (T - 1) + t - 1] = mask[i] !== 0 && (completion === null || completion[i] !== 0) ? 1 : 0;
    }
  return where(tensor(keep, { dtype: "bool", shape: [B, T - 1] }), tok, 0);
}
