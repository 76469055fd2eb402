// Runs a primitive: validate shapes with its shape rule, broadcast elementwise inputs as strided views,
// pick the backend, run its kernel (or the CPU kernel when the backend lacks one), and record the autograd
// node when some input requires grad and recording is on.

import type { GradNode } from "../autograd/engine.js";
import { isGradEnabled } from "../autograd/grad-mode.js";
import { NON_DIFFERENTIABLE, viewVjpRules, vjpRules } from "../autograd/vjp-rules.js";
import type { Backend, View } from "../backend/backend.js";
import { getCpuBackend } from "../backend/registry.js";
import { type DType, isFloat } from "../dtype.js";
import { StorageRef } from "../memory.js";
import { broadcastShapes, contiguousStrides, numel, shapesEqual } from "../shape.js";
import { Tensor } from "../tensor.js";
import { BROADCAST_OPS, shapeRules } from "./shape-rules.js";
import {
  ACCUMULATING_OPS,
  type Attrs,
  type InputViews,
  type Kernel,
  type OpName,
  type ViewAttrs,
  type ViewOpName,
} from "./signatures.js";

const warnedFallback = new Set<string>();

/** A broadcast view of `t` with the given shape: size-1 and missing leading dims get stride 0. */
export function broadcastLayout(t: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - t.ndim;
  const strides = shape.map((n, i) => {
    const j = i - lead;
    if (j < 0) return 0;
    return t.shape[j] === 1 && n !== 1 ? 0 : t.strides[j]!;
  });
  return new Tensor(t._store, shape, t.dtype, strides, t.offset);
}

function sameBackend(op: string, inputs: readonly Tensor[]): Backend {
  const b = inputs[0]!.backend;
  for (const t of inputs) {
    if (t.backend !== b) {
      throw new Error(
        `${op}: inputs live on different backends (${inputs.map((x) => x.device).join(", ")}); move them with toDevice()`,
      );
    }
  }
  return b;
}

/** @internal A fresh tensor on `backend`: zero-filled, or with `zero` false for a caller that writes it all. */
export function allocTensor(backend: Backend, shape: readonly number[], dtype: DType, zero = true): Tensor {
  return new Tensor(new StorageRef(backend, backend.alloc(dtype, numel(shape), zero)), shape, dtype);
}

/** Runs `op` on backend into a new tensor; without a kernel there, copies through the CPU backend. */
function runKernel<K extends OpName>(
  backend: Backend,
  op: K,
  inputs: readonly Tensor[],
  attrs: Attrs<K>,
  meta: { shape: number[]; dtype: DType },
): Tensor {
  const kernel = backend.kernels[op] as Kernel<K> | undefined;
  if (kernel) {
    const out = allocTensor(backend, meta.shape, meta.dtype, ACCUMULATING_OPS.has(op));
    try {
      kernel(inputs.map((t) => t._view) as InputViews<K>, attrs, out._view);
    } catch (e) {
      out.dispose(); // a kernel that throws (an index out of range) must not leak its output
      throw e;
    }
    return out;
  }
  if (process.env.STRICT_BACKEND === "1")
    throw new Error(`${op}: backend "${backend.name}" has no kernel (STRICT_BACKEND=1)`);
  const read = backend.readSync;
  if (!read) {
    throw new Error(
      `${op}: backend "${backend.name}" has no kernel for it and cannot read synchronously to fall back to CPU`,
    );
  }
  if (!warnedFallback.has(`${backend.name}:${op}`)) {
    warnedFallback.add(`${backend.name}:${op}`);
    console.warn(`tsgrad: backend "${backend.name}" has no "${op}" kernel; running it on the CPU`);
  }
  const cpu = getCpuBackend();
  const cpuInputs = inputs.map(
    (t): View => ({
      storage: cpu.fromArray(read.call(backend, t._view), t.dtype),
      layout: { shape: t.shape, strides: contiguousStrides(t.shape), offset: 0 },
      dtype: t.dtype,
    }),
  );
  const cpuOut = allocTensor(cpu, meta.shape, meta.dtype, ACCUMULATING_OPS.has(op));
  try {
    (cpu.kernels[op] as Kernel<K>)(cpuInputs as InputViews<K>, attrs, cpuOut._view);
  } catch (e) {
    cpuOut.dispose();
    throw e;
  } finally {
    for (const v of cpuInputs) cpu.free(v.storage); // the copies are not tensors, so nothing else frees them
  }
  const storage = backend.fromArray(cpuOut.dataSync(), meta.dtype);
  cpuOut.dispose();
  return new Tensor(new StorageRef(backend, storage), meta.shape, meta.dtype);
}

function needsNode(inputs: readonly Tensor[]): boolean {
  return isGradEnabled() && inputs.some((t) => t.requiresGrad);
}

/** Applies primitive `op` to `inputs`. The one entry point every public op goes through. */
export function apply<K extends OpName>(op: K, inputs: readonly Tensor[], attrs: Attrs<K>): Tensor {
  let views = inputs;
  if (BROADCAST_OPS.has(op)) {
    const shape = broadcastShapes(op, ...inputs.map((t) => t.shape));
    views = inputs.map((t) => (shapesEqual(t.shape, shape) ? t : broadcastLayout(t, shape)));
  }
  const meta = (shapeRules[op] as (m: readonly Tensor[], a: Attrs<K>) => { shape: number[]; dtype: DType })(
    views,
    attrs,
  );
  const backend = sameBackend(op, inputs);
  const out = runKernel(backend, op, views, attrs, meta);
  const rule = vjpRules[op];
  // NOTE: integer and bool results never require grad (x.int() cuts the graph, as in PyTorch)
  if (rule !== NON_DIFFERENTIABLE && isFloat(meta.dtype) && needsNode(inputs)) {
    const ctxInputs = inputs;
    out._node = {
      op,
      inputs: ctxInputs,
      vjp: (dy, needs) =>
        (rule as (dy: Tensor, ctx: unknown) => (Tensor | null)[])(dy, {
          inputs: ctxInputs,
          out,
          attrs,
          needs,
        }),
    } satisfies GradNode;
    out.requiresGrad = true;
  }
  return out;
}

/** Applies a view op: the result shares storage with x under a new layout. */
export function applyView<K extends ViewOpName>(
  op: K,
  x: Tensor,
  attrs: ViewAttrs<K>,
  layout: { shape: readonly number[]; strides: readonly number[]; offset: number },
): Tensor {
  void x._view; // throws if x was disposed: a view must not revive (and free again) its storage
  const out = new Tensor(x._store, layout.shape, x.dtype, layout.strides, layout.offset);
  if (needsNode([x])) {
    const rule = viewVjpRules[op] as (dy: Tensor, ctx: unknown) => (Tensor | null)[];
    out._node = { op, inputs: [x], vjp: (dy, needs) => rule(dy, { inputs: [x], out, attrs, needs }) };
    out.requiresGrad = true;
  }
  return out;
}

/**
 * Records a node for an op computed some other way (composite ops with their own backward, custom ops).
 * `out` must have been computed with recording off.
 */
export function attachNode(out: Tensor, op: string, inputs: readonly Tensor[], vjp: GradNode["vjp"]): Tensor {
  if (isFloat(out.dtype) && needsNode(inputs)) {
    out._node = { op, inputs, vjp };
    out.requiresGrad = true;
  }
  return out;
}
