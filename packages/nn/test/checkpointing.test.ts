// Activation checkpointing: recomputing each decoder layer in backward gives the same loss and the same
// gradients as keeping its activations, with dropout (the generator is replayed) and with frozen layers.

import { fileURLToPath } from "node:url";
import {
  AutoModelForCausalLM,
  type CausalLM,
  Qwen2Config,
  Qwen2ForCausalLM,
  readConfigJson,
} from "@tsgrad/nn";
import { manualSeed, type Tensor } from "@tsgrad/tensor";
import { describe, expect, it } from "vitest";

const FIXTURES = fileURLToPath(new URL("../../../fixtures/models/", import.meta.url));
const batch = {
  input_ids: [
    [0, 0, 5, 17, 99, 3],
    [8, 9, 10, 11, 12, 13],
  ],
  attention_mask: [
    [0, 0, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1],
  ],
  labels: [
    [-100, -100, 5, 17, 99, 3],
    [8, 9, 10, 11, 12, -100],
  ],
};

/** The op names in the graph behind t. */
function graphOps(t: Tensor): Set<string> {
  const ops = new Set<string>();
  const stack = [t];
  const seen = new Set<Tensor>();
  while (stack.length > 0) {
    const x = stack.pop()!;
    if (seen.has(x) || !x._node) continue;
    seen.add(x);
    ops.add(x._node.op);
    stack.push(...x._node.inputs);
  }
  return ops;
}

function step(
  model: CausalLM,
  seed: number,
): { loss: number; grads: Map<string, number[]>; ops: Set<string> } {
  model.zeroGrad();
  manualSeed(seed);
  const { loss } = model.forward(batch);
  const ops = graphOps(loss!);
  loss!.backward();
  const grads = new Map<string, number[]>();
  for (const [k, p] of model.namedParameters()) if (p.grad) grads.set(k, Array.from(p.grad.dataSync()));
  return { loss: loss!.itemSync(), grads, ops };
}

describe("gradient checkpointing", () => {
  it("gives the same loss and gradients as the plain backward", async () => {
    const model = (await AutoModelForCausalLM.fromPretrained(`${FIXTURES}qwen2-tiny`)).train();
    const plain = step(model, 0);
    model.gradientCheckpointingEnable();
    expect(model.isGradientCheckpointing).toBe(true);
    const ckpt = step(model, 0);
    expect(plain.ops.has("checkpoint")).toBe(false);
    expect(ckpt.ops.has("checkpoint")).toBe(true);
    expect(ckpt.ops.has("matmul")).toBe(true); // the head, outside the checkpointed layers
    expect(ckpt.loss).toBe(plain.loss);
    expect([...ckpt.grads.keys()]).toEqual([...plain.grads.keys()]);
    expect(ckpt.grads.size).toBe(model.parameters().length);
    for (const [k, g] of plain.grads) expect(ckpt.grads.get(k), k).toEqual(g);
  });

  it("replays dropout masks in the recomputation", async () => {
    const config = await readConfigJson(`${FIXTURES}qwen2-tiny`);
    manualSeed(1);
    const model = new Qwen2ForCausalLM(new Qwen2Config({ ...config, attention_dropout: 0.3 })).train();
    const plain = step(model, 5);
    const again = step(model, 6);
    expect(again.loss).not.toBe(plain.loss); // dropout is active
    model.gradientCheckpointingEnable();
    const ckpt = step(model, 5);
    expect(ckpt.loss).toBe(plain.loss);
    for (const [k, g] of plain.grads) expect(ckpt.grads.get(k), k).toEqual(g);
  });

  it("reaches trainable parameters of a layer whose input needs no gradient", async () => {
    const model = (await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama-tiny`)).train();
    model
      .freeze()
      .unfreeze({ keys: ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"] });
    const plain = step(model, 0);
    model.gradientCheckpointingEnable();
    const ckpt = step(model, 0);
    expect(ckpt.ops.has("checkpoint")).toBe(true);
    expect([...ckpt.grads.keys()]).toEqual([
      "model.layers.0.self_attn.q_proj.weight",
      "model.layers.1.mlp.up_proj.weight",
    ]);
    for (const [k, g] of plain.grads) expect(ckpt.grads.get(k), k).toEqual(g);
    // the config flag turns it on at construction
    const flagged = new Qwen2ForCausalLM(
      new Qwen2Config({ ...(await readConfigJson(`${FIXTURES}qwen2-tiny`)), gradient_checkpointing: true }),
    );
    expect(flagged.isGradientCheckpointing).toBe(true);
  });
});
