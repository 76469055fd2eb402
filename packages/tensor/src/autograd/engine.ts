// Reverse-mode autograd (style guide 3.5): the graph lives on the tensors (`_node`), backward walks it in
// reverse topological order found by an iterative sort (no recursion, so a deep graph cannot overflow the
// stack), reduces each gradient to its input's shape centrally (rules never handle broadcasting), and
// accumulates into `.grad` of leaves that require grad.

import { keep, tidy } from "../memory.js";
import { cast, onesLike } from "../ops/index.js";
import { fmt, shapesEqual } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { withGradMode } from "./grad-mode.js";
import { sumToShape } from "./sum-to-shape.js";

/** How a tensor was made: its inputs, and the vector-Jacobian product giving their gradients. */
export interface GradNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /** Gradients for the inputs, in order; null where an input needs none (`needs[i]` false). */
  vjp(dy: Tensor, needs: readonly boolean[]): readonly (Tensor | null)[];
}

/** Tensors reachable from root through `_node.inputs`, each after all of its inputs (post-order). */
function topoSort(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    const inputs = t._node?.inputs ?? [];
    if (i < inputs.length) {
      top[1] = i + 1;
      const child = inputs[i]!;
      if (child.requiresGrad && !visited.has(child)) {
        visited.add(child);
        stack.push([child, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order;
}

export function backward(root: Tensor, gradient?: Tensor, options: { createGraph?: boolean } = {}): void {
  if (!root.requiresGrad) {
    throw new Error(
      `backward: the tensor ${fmt(root.shape)} does not require grad and has no graph; set requiresGrad on a leaf it depends on`,
    );
  }
  if (gradient === undefined) {
    if (root.numel !== 1) {
      throw new Error(
        `backward: a gradient can be created implicitly only for scalar outputs, got shape ${fmt(root.shape)}; pass a gradient of that shape`,
      );
    }
  } else if (!shapesEqual(gradient.shape, root.shape)) {
    throw new RangeError(
      `backward: gradient shape ${fmt(gradient.shape)} does not match the tensor's shape ${fmt(root.shape)}`,
    );
  }
  // NOTE: the gradients made on the way are freed at the end (their buffers go back to the backend's pool
  // for the next step) except the leaves' .grad, which are kept; under createGraph they are the graph of
  // the leaf gradients, so they stay.
  const scoped = options.createGraph === true ? (f: () => void) => f() : (f: () => void) => tidy(f);
  scoped(() =>
    withGradMode(options.createGraph === true, () => {
      const grads = new Map<Tensor, Tensor>();
      const given = new Set<Tensor>(); // tensors already handed to a leaf as its gradient
      // a given gradient takes the root's dtype, so a leaf root's .grad has the leaf's dtype
      grads.set(root, gradient ? cast(gradient, root.dtype) : onesLike(root));
      const order = topoSort(root);
      for (let k = order.length - 1; k >= 0; k--) {
        const t = order[k]!;
        const g = grads.get(t);
        if (g === undefined) continue;
        grads.delete(t);
        const node = t._node;
        if (node === null) {
          accumulateLeaf(t, g, options.createGraph === true, given);
          continue;
        }
        const needs = node.inputs.map((x) => x.requiresGrad);
        const inputGrads = node.vjp(g, needs);
        node.inputs.forEach((x, i) => {
          let gi = inputGrads[i];
          if (!needs[i] || gi == null) return;
          gi = sumToShape(gi, x.shape);
          if (gi.dtype !== x.dtype) gi = cast(gi, x.dtype);
          const prev = grads.get(x);
          grads.set(x, prev ? prev.add(gi) : gi);
        });
      }
    }),
  );
}

function accumulateLeaf(t: Tensor, g: Tensor, createGraph: boolean, given: Set<Tensor>): void {
  if (!t.requiresGrad) return;
  // A gradient may be a broadcast view of another tensor; leaves get their own dense copy.
  let dense = g.isContiguous && g.offset === 0 ? g : g.contiguous();
  if (given.has(dense)) {
    // add gives both inputs the same dy: each leaf gets its own Tensor (sharing the storage), so that
    // disposing one leaf's .grad never frees another's
    const own = dense.detach();
    own._node = dense._node;
    own.requiresGrad = dense.requiresGrad;
    dense = own;
  }
  given.add(dense);
  const prev = t.grad;
  t.grad = keep(prev ? prev.add(dense) : dense);
  // NOTE: a replaced gradient is freed, except under createGraph, where the new one's graph holds it
  if (prev && !createGraph) prev.dispose();
}
