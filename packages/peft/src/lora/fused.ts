// The plain LoRA linear as one differentiable op: y = x W^T (+ bias) + (xd A^T)(s B)^T, where xd is x or
// dropout(x). Next to the composition in layer.ts (which stays the reference, and the path for DoRA,
// quantized bases, merged or several active adapters) it drops the two scale passes over [T, out] (s goes
// on B, [out, r]), the grad-mode bookkeeping of five primitives, and keeps xd A^T for dB.
// NOTE: measured alternatives (benchmarks/train-step.ts --mode lora, 1 thread): K-concatenating
// [x | xa] [W | sB]^T (and [dy | g] [W ; A] in backward) to fold the rank-r product and the add into the
// big matmul loses, since cat's strided copy costs more than both; forming W + s B A is ruled out (it
// costs out x in per layer, and far more than the low-rank path when T is small).

import { defineOp, isGradEnabled, matmulAccumulate, matmulPair, type Tensor } from "@tsgrad/tensor";

/**
 * y = x W^T + bias + s (xd A^T) B^T for 2-D x [T, in] and xd [T, in] (pass x itself when there is no
 * dropout: then dx is one tensor), W [out, in], A [r, in], B [out, r], bias [out] or null.
 * @example const y = loraLinear(x, dropout(x, 0.1), W, A, B, null, alpha / r);
 */
export function loraLinear(
  x: Tensor,
  xd: Tensor,
  W: Tensor,
  A: Tensor,
  B: Tensor,
  bias: Tensor | null,
  s: number,
): Tensor {
  const same = x === xd;
  // Saved by the forward for the backward: xd A^T [T, r] and s B [out, r], both small.
  let xa: Tensor | null = null;
  let sB: Tensor | null = null;
  const forward = (): Tensor => {
    // y = x W^T with xa = x A^T in one pass over x (matmulPair), then y += xa (sB)^T in place: no [T, out]
    // temporary for the low-rank term, no add
    let y: Tensor;
    if (same) [y, xa] = matmulPair(x, W.mT, A.mT);
    else [y, xa] = [x.matmul(W.mT), xd.matmul(A.mT)];
    sB = B.mul(s);
    matmulAccumulate(y, xa, sB.mT);
    if (bias) {
      const yb = y.add(bias);
      y.dispose();
      y = yb;
    }
    return y;
  };
  const backward = (dy: Tensor, needs: readonly boolean[]): (Tensor | null)[] => {
    const at = (i: number): boolean => needs[same && i > 0 ? i - 1 : i] ?? false;
    const [nx, nxd, nW, nA, nB, nbias] = [at(0), same ? at(0) : at(1), at(2), at(3), at(4), at(5)];
    // Under createGraph the saved tensors (made without recording) are recomputed, so the gradients are
    // differentiable again; the temporaries are then part of that graph and are not freed.
    const graph = isGradEnabled();
    const xaG = graph ? xd.matmul(A.mT) : xa!;
    const sBG = graph ? B.mul(s) : sB!;
    let g: Tensor | null = null; // s dy B [T, r]
    let dx: Tensor | null = null;
    let dxd: Tensor | null = null;
    let dB: Tensor | null = null;
    if (same && nx && !graph) {
      // dy W, dy (s B) and dB = s dy^T xa in one pass over dy
      if (nB) [dx, g, dB] = matmulPair(dy, W, sBG, { d: xaG, scale: s });
      else [dx, g] = matmulPair(dy, W, sBG);
      matmulAccumulate(dx, g, A); // dx += g A in place
    } else {
      if (nxd || nA) g = dy.matmul(sBG);
      if (same && nx) dx = dy.matmul(W).add(g!.matmul(A));
      else {
        if (nx) dx = dy.matmul(W);
        if (nxd) dxd = g!.matmul(A);
      }
    }
    const dW = nW ? dy.mT.matmul(x) : null;
    const dA = nA ? g!.mT.matmul(xd) : null;
    if (nB && !dB) dB = dy.mT.matmul(xaG).mul(s);
    const dbias = nbias ? dy.sum(0) : null;
    const grads = same ? [dx, dW, dA, dB] : [dx, dxd, dW, dA, dB];
    return bias ? [...grads, dbias] : grads;
  };
  const inputs = [x, ...(same ? [] : [xd]), W, A, B, ...(bias ? [bias] : [])];
  const y = defineOp<Tensor[]>({
    name: "loraLinear",
    forward,
    backward: (dy, { needs }) => backward(dy, needs),
  })(...inputs);
  if (!y.requiresGrad) {
    // no graph (inference, or nothing trainable): nothing will read the saved tensors
    xa!.dispose();
    sB!.dispose();
  }
  return y;
}
