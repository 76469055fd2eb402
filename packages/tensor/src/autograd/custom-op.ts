// User-defined ops with their own backward, for research: the forward runs without recording, and the
// given vjp becomes the node's gradient rule. Use it for a fused kernel too, keeping the composition as
// the reference the tests compare against.

import { attachNode } from "../ops/apply.js";
import type { Tensor } from "../tensor.js";
import { noGrad } from "./grad-mode.js";

export interface CustomOpSpec<In extends Tensor[]> {
  name: string;
  /** Computes the output from the inputs. Runs under noGrad. */
  forward: (...inputs: In) => Tensor;
  /** Gradients for each input given dL/dout; return null for inputs that need none (`needs[i]` false). */
  backward: (dy: Tensor, ctx: { inputs: In; out: Tensor; needs: readonly boolean[] }) => (Tensor | null)[];
}

/**
 * Defines a differentiable op from a forward and its vector-Jacobian product.
 * @example
 * const square = defineOp({
 *   name: "square",
 *   forward: (x) => x.mul(x),
 *   backward: (dy, { inputs: [x] }) => [dy.mul(x).mul(2)], // d x^2 = 2x
 * });
 */
export function defineOp<In extends Tensor[]>(spec: CustomOpSpec<In>): (...inputs: In) => Tensor {
  return (...inputs: In) => {
    const computed = noGrad(() => spec.forward(...inputs));
    // A forward may return an input unchanged (x.float() of a float32 x); the node must go on a new tensor,
    // or the input would lose its leaf status and its gradient.
    const out = inputs.includes(computed) || computed._node !== null ? computed.detach() : computed;
    return attachNode(out, spec.name, inputs, (dy, needs) => {
      const grads = spec.backward(dy, { inputs, out, needs });
      if (grads.length !== inputs.length) {
        throw new Error(
          `${spec.name}: backward returned ${grads.length} gradients for ${inputs.length} inputs`,
        );
      }
      return grads;
    });
  };
}
