// Activation checkpointing (torch.utils.checkpoint, non-reentrant in spirit): the forward runs without
// recording a graph; backward re-runs fn with recording on, from a detached copy of the input, and
// back-propagates dy through it. Parameter gradients accumulate into .grad during that inner pass.

import { defineOp, getRngState, setRngState, type Tensor, withGradMode } from "@tsgrad/tensor";

/**
 * fn(x) with its activations recomputed in backward instead of kept. `params` are the trainable
 * tensors fn reads (so a node is recorded even when x needs no gradient). The random generator is
 * replayed, so dropout draws the same masks in the recomputation.
 * @example h = checkpoint((x) => layer.forward(x, ctx), h, layer.parameters());
 */
export function checkpoint(fn: (x: Tensor) => Tensor, x: Tensor, params: readonly Tensor[]): Tensor {
  const trainable = params.filter((p) => p.requiresGrad);
  const rng = getRngState();
  const op = defineOp<Tensor[]>({
    name: "checkpoint",
    forward: (...inputs) => fn(inputs[0]!),
    backward: (dy, { inputs, needs }) => {
      const input = inputs[0]!;
      const leaf = input.detach();
      leaf.requiresGrad = needs[0] === true;
      const after = getRngState();
      setRngState(rng);
      try {
        withGradMode(true, () => {
          const y = fn(leaf);
          if (y.requiresGrad) y.backward(dy);
        });
      } finally {
        setRngState(after);
      }
      const g = leaf.grad;
      // backward() keeps leaf gradients alive past tidy scopes; this one is an intermediate, so let the
      // enclosing scope free it like any other gradient.
      if (g) g._kept = false;
      leaf.grad = null;
      return [needs[0] ? (g ?? input.mul(0)) : null, ...trainable.map(() => null)];
    },
  });
  return op(x, ...trainable);
}
