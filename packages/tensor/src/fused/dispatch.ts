// Runs a fused kernel when the tensors' backend has one, else tells the caller to run the composition.

import { noGrad } from "../autograd/grad-mode.js";
import type { DType } from "../dtype.js";
import { envVar } from "../env.js";
import { allocTensor } from "../ops/apply.js";
import type { TupleOf } from "../ops/signatures.js";
import type { Tensor } from "../tensor.js";
import type { FusedAttrs, FusedKernel, FusedName, FusedSignatures } from "./signatures.js";

let enabled = envVar("TSGRAD_FUSED") !== "0";

/** Switches fused kernels on or off (TSGRAD_FUSED=0 starts with them off); returns the previous setting. */
export function setFusedKernels(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

export function fusedKernelsEnabled(): boolean {
  return enabled;
}

/** Runs fn with fused kernels on or off (the tests compare both ways), restoring the setting after. */
export function withFusedKernels<T>(on: boolean, fn: () => T): T {
  const was = setFusedKernels(on);
  try {
    return fn();
  } finally {
    setFusedKernels(was);
  }
}

/** Whether `name` runs fused for tensors like x: switched on, a float32/float64 x, and a backend kernel. */
export function hasFused(name: FusedName, x: Tensor): boolean {
  return enabled && (x.dtype === "float32" || x.dtype === "float64") && x.backend.fused?.[name] !== undefined;
}

type Outs<K extends FusedName> = TupleOf<FusedSignatures[K]["out"], Tensor>;

/**
 * Runs the fused kernel `name` of the inputs' backend (the caller checked hasFused). Inputs are made
 * contiguous; outputs are allocated with the given shapes and dtypes. Records no graph.
 */
export function runFused<K extends FusedName>(
  name: K,
  inputs: readonly Tensor[],
  attrs: FusedAttrs<K>,
  outs: readonly (readonly [readonly number[], DType])[],
): Outs<K> {
  const backend = inputs[0]!.backend;
  const kernel = backend.fused?.[name] as FusedKernel<K> | undefined;
  if (!kernel) throw new Error(`${name}: backend "${backend.name}" has no fused kernel`);
  for (const t of inputs) {
    if (t.backend !== backend)
      throw new Error(`${name}: inputs live on different backends (${t.device}, ${backend.name})`);
  }
  const dense = noGrad(() => inputs.map((t) => t.contiguous()));
  // every fused kernel writes each element of its outputs, so they skip the zero fill
  const results = outs.map(([shape, dtype]) => allocTensor(backend, shape, dtype, false));
  try {
    kernel(
      dense.map((t) => t._view) as Parameters<FusedKernel<K>>[0],
      attrs,
      results.map((t) => t._view) as Parameters<FusedKernel<K>>[2],
    );
  } catch (e) {
    for (const r of results) r.dispose();
    throw e;
  } finally {
    dense.forEach((t, i) => {
      if (t !== inputs[i]) t.dispose();
    });
  }
  return results as unknown as Outs<K>;
}
