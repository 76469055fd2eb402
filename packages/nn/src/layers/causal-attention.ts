// The two products of causal attention as ops whose forward and backward skip what the causal mask cancels
// (causalMatmul in @tsgrad/tensor): the scores Q K^T above the diagonal, which the mask hides, and in P V
// and the gradients the zero probabilities there. About 40% of attention's multiply-adds on a full causal
// square. The plain matmul composition is the reference (attention.ts takes it elsewhere) and the path of
// second-order gradients; tests check that both agree in values and gradients.

import { type CausalSpec, causalMatmul, defineOp, isGradEnabled, type Tensor } from "@tsgrad/tensor";

const spec = (T: number, kind: CausalSpec["kind"]): CausalSpec => ({ period: T, offset: 0, kind });

/**
 * Scores q k^T for q [..., g T, d] (g query heads of one KV head, T positions each) and k [..., T, d];
 * entries above each head's diagonal are left 0 or computed (they must be masked). Gradients assume the
 * incoming one is zero there, as a masked softmax's is.
 */
export function causalScores(q: Tensor, k: Tensor, T: number): Tensor {
  return defineOp<[Tensor, Tensor]>({
    name: "causalScores",
    forward: (a, b) => causalMatmul(a, b.mT, spec(T, "cols")),
    backward: (d, { needs }) =>
      isGradEnabled()
        ? [needs[0] ? d.matmul(k) : null, needs[1] ? d.mT.matmul(q) : null]
        : [
            needs[0] ? causalMatmul(d, k, spec(T, "k")) : null,
            needs[1] ? causalMatmul(d.mT, q, spec(T, "kT")) : null,
          ],
  })(q, k);
}

/**
 * p v for probabilities p [..., g T, T] that are zero above each head's diagonal and v [..., T, d]. The
 * gradient of p is left 0 or computed above the diagonal (a softmax's backward multiplies it by p = 0).
 */
export function causalValues(p: Tensor, v: Tensor, T: number): Tensor {
  return defineOp<[Tensor, Tensor]>({
    name: "causalValues",
    forward: (a, b) => causalMatmul(a, b, spec(T, "k")),
    backward: (d, { needs }) =>
      isGradEnabled()
        ? [needs[0] ? d.matmul(v.mT) : null, needs[1] ? p.mT.matmul(d) : null]
        : [
            needs[0] ? causalMatmul(d, v.mT, spec(T, "cols")) : null,
            needs[1] ? causalMatmul(p.mT, d, spec(T, "kT")) : null,
          ],
  })(p, v);
}
