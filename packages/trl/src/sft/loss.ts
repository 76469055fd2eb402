// SFT losses and token metrics as pure functions of logits [B, T, V] and labels [B, T] (trl-peft-spec
// 6.5, 6.6). Position t predicts labels[t + 1]; -100 is ignored.

import { noGrad, type Tensor, tensor, where } from "@tsgrad/tensor";

function shifted(logits: Tensor, labels: Tensor): { logp: Tensor; target: Tensor; valid: Tensor } {
  const [B, T, V] = logits.shape as [number, number, number];
  if (labels.shape[0] !== B || labels.shape[1] !== T)
    throw new RangeError(`labels: expected [${B}, ${T}], got [${labels.shape.join(", ")}]`);
  const wide = logits.dtype === "float64" ? logits : logits.to("float32");
  const logp = wide
    .slice(1, 0, T - 1)
    .reshape([-1, V])
    .logSoftmax(1); // [B*(T-1), V]
  const target = labels.slice(1, 1).reshape([-1]); // [B*(T-1)]
  return { logp, target, valid: target.ne(-100) };
}

/**
 * Dynamic fine-tuning loss (TRL loss_type "dft", Wu et al. 2025, Eq. 8): each target's NLL weighted by its
 * detached probability, -sg(p_t) log p_t, summed and divided by numItems.
 * @example const loss = dftLoss(logits, tensor(labels, { dtype: "int32" }), 12);
 */
export function dftLoss(logits: Tensor, labels: Tensor, numItems: number): Tensor {
  const { logp, target, valid } = shifted(logits, labels);
  const lp = logp.gather(1, where(valid, target, 0).unsqueeze(1)).squeeze(1); // [N] log p_t
  const per = lp.exp().detach().mul(lp).neg();
  return where(valid, per, 0).sum().div(numItems);
}

/** Sums for mean_token_accuracy and entropy over the targets of one batch: correct, targets, entropy. */
export function tokenStats(
  logits: Tensor,
  labels: readonly (readonly number[])[],
): { correct: number; targets: number; entropy: number } {
  return noGrad(() => {
    const [B, T, V] = logits.shape as [number, number, number];
    const lab = tensor(labels as number[][], { dtype: "int32" });
    const { logp, target, valid } = shifted(logits, lab);
    const pred = logp.argmax(1).dataSync(); // [B*(T-1)]
    const ent = logp.exp().mul(logp).sum(1).neg().dataSync(); // [B*(T-1)]
    const tgt = target.dataSync();
    const ok = valid.dataSync();
    let correct = 0;
    let targets = 0;
    let entropy = 0;
    for (let i = 0; i < B * (T - 1); i++) {
      if (!ok[i]) continue;
      targets++;
      if (pred[i] === tgt[i]) correct++;
      entropy += ent[i]!;
    }
    void V;
    return { correct, targets, entropy };
  });
}
