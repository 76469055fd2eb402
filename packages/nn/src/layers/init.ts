// Weight initializers drawn from the global seeded generator (manualSeed).

import { type DType, noGrad, rand, randn, type Tensor } from "@tsgrad/tensor";

/** U(-bound, bound). */
export function initUniform(shape: readonly number[], bound: number, dtype: DType): Tensor {
  return noGrad(() =>
    rand(shape, { dtype })
      .mul(2 * bound)
      .sub(bound),
  );
}

/** N(0, std^2), as Hugging Face's _init_weights draws Linear and Embedding weights. */
export function initNormal(shape: readonly number[], std: number, dtype: DType): Tensor {
  return noGrad(() => randn(shape, { dtype }).mul(std));
}
