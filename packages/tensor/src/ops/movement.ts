// Movement ops. reshape/view/permute/transpose/expand/squeeze/unsqueeze/narrow are views (no copy);
// cat and the backward of narrow assemble their output with the `contiguous` kernel writing into a slice.

import { noGrad } from "../autograd/grad-mode.js";
import type { View } from "../backend/backend.js";
import { getCpuBackend } from "../backend/registry.js";
import { promoteTypes } from "../dtype.js";
import { StorageRef } from "../memory.js";
import {
  checkShape,
  contiguousStrides,
  fmt,
  inferReshape,
  normalizeDim,
  normalizeDims,
  shapesEqual,
} from "../shape.js";
import type { Tensor } from "../tensor.js";
import { allocTensor, apply, applyView, attachNode } from "./apply.js";
import { fromTypedArray } from "./creation.js";
import { cast, where } from "./elementwise.js";
import type { InputViews } from "./signatures.js";

/** A copy in row-major order, or x itself when it already is. */
export function contiguous(x: Tensor): Tensor {
  return x.isContiguous ? x : apply("contiguous", [x], {});
}

/** Always a fresh copy (torch.clone), differentiable. */
export function clone(x: Tensor): Tensor {
  return apply("contiguous", [x], {});
}

/** View with a new shape (one dim may be -1); copies first when x is not contiguous. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const target = inferReshape("reshape", x.shape, shape);
  if (shapesEqual(target, x.shape)) return x;
  const base = contiguous(x);
  return applyView(
    "reshape",
    base,
    { shape: target },
    { shape: target, strides: contiguousStrides(target), offset: base.offset },
  );
}

/** Like reshape but never copies: x must be contiguous. */
export function view(x: Tensor, shape: readonly number[]): Tensor {
  if (!x.isContiguous)
    throw new Error(`view: tensor of shape ${fmt(x.shape)} is not contiguous; use reshape() or contiguous()`);
  return reshape(x, shape);
}

export function flatten(x: Tensor, startDim = 0, endDim = -1): Tensor {
  if (x.ndim === 0) return reshape(x, [1]);
  const s = normalizeDim("flatten", startDim, x.ndim);
  const e = normalizeDim("flatten", endDim, x.ndim);
  if (e < s) throw new RangeError(`flatten: startDim ${startDim} comes after endDim ${endDim}`);
  return reshape(x, [...x.shape.slice(0, s), -1, ...x.shape.slice(e + 1)]);
}

export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const d = dims.map((k) => normalizeDim("permute", k, x.ndim));
  if (d.length !== x.ndim || new Set(d).size !== d.length) {
    throw new RangeError(
      `permute: dims ${fmt(dims)} are not a permutation of the ${x.ndim} dims of ${fmt(x.shape)}`,
    );
  }
  return applyView(
    "permute",
    x,
    { dims: d },
    {
      shape: d.map((k) => x.shape[k]!),
      strides: d.map((k) => x.strides[k]!),
      offset: x.offset,
    },
  );
}

export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  const a = normalizeDim("transpose", dim0, x.ndim);
  const b = normalizeDim("transpose", dim1, x.ndim);
  if (x.ndim < 2 || a === b) return x;
  const dims = Array.from({ length: x.ndim }, (_, i) => i);
  [dims[a], dims[b]] = [dims[b]!, dims[a]!];
  return permute(x, dims);
}

/** Broadcasts size-1 dims (and new leading dims) to `shape` without copying; -1 keeps a dim. */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - x.ndim;
  if (lead < 0)
    throw new RangeError(`expand: target ${fmt(shape)} has fewer dims than the input ${fmt(x.shape)}`);
  const target = shape.map((n, i) => (n === -1 && i >= lead ? x.shape[i - lead]! : n));
  checkShape("expand", target); // -1 is allowed only for existing dims
  const strides = target.map((n, i) => {
    if (i < lead) return 0;
    const have = x.shape[i - lead]!;
    if (have === n) return x.strides[i - lead]!;
    if (have === 1) return 0;
    throw new RangeError(
      `expand: cannot expand ${fmt(x.shape)} to ${fmt(shape)}: dim ${i} is ${have}, expected 1 or ${n}`,
    );
  });
  if (shapesEqual(target, x.shape)) return x;
  return applyView("expand", x, { shape: target }, { shape: target, strides, offset: x.offset });
}

function reshapeView(x: Tensor, shape: number[], strides: number[]): Tensor {
  return applyView("reshape", x, { shape }, { shape, strides, offset: x.offset });
}

/** Removes size-1 dims (all of them, or those named). */
export function squeeze(x: Tensor, dim?: number | number[]): Tensor {
  const dims =
    dim === undefined
      ? x.shape.flatMap((n, i) => (n === 1 ? [i] : []))
      : normalizeDims("squeeze", dim, x.ndim);
  const keep = x.shape.map((n, i) => !(dims.includes(i) && n === 1));
  if (keep.every(Boolean)) return x;
  return reshapeView(
    x,
    x.shape.filter((_, i) => keep[i]),
    x.strides.filter((_, i) => keep[i]),
  );
}

export function unsqueeze(x: Tensor, dim: number): Tensor {
  const d = normalizeDim("unsqueeze", dim, x.ndim + 1);
  const shape = [...x.shape];
  const strides = [...x.strides];
  shape.splice(d, 0, 1);
  strides.splice(d, 0, d < x.ndim ? x.strides[d]! * x.shape[d]! : 1);
  return reshapeView(x, shape, strides);
}

/** x restricted to [start, start + length) along dim, as a view. */
export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  const d = normalizeDim("narrow", dim, x.ndim);
  const size = x.shape[d]!;
  if (start < 0) start += size;
  if (
    !Number.isInteger(start) ||
    !Number.isInteger(length) ||
    start < 0 ||
    length < 0 ||
    start + length > size
  ) {
    throw new RangeError(
      `narrow: [${start}, ${start + length}) is out of range for dim ${dim} of size ${size} in ${fmt(x.shape)}`,
    );
  }
  if (start === 0 && length === size) return x;
  const shape = x.shape.map((n, i) => (i === d ? length : n));
  return applyView(
    "narrow",
    x,
    { dim: d, start, length },
    { shape, strides: x.strides, offset: x.offset + start * x.strides[d]! },
  );
}

/** Python slicing x[start:end] along dim: negatives count from the end, bounds are clipped. */
export function slice(x: Tensor, dim: number, start = 0, end?: number): Tensor {
  const d = normalizeDim("slice", dim, x.ndim);
  const n = x.shape[d]!;
  const norm = (v: number) => Math.min(n, Math.max(0, v < 0 ? v + n : v));
  const s = norm(start);
  const e = norm(end ?? n);
  return narrow(x, d, s, Math.max(0, e - s));
}

/** Writes src into a strided window of dst (same shape) with the backend's copy kernel. */
function copyInto(src: Tensor, dst: Tensor, window: { shape: readonly number[]; offset: number }): void {
  const kernel = dst.backend.kernels.contiguous;
  if (!kernel) {
    copyIntoOnCpu(src, dst, window);
    return;
  }
  const out: View = {
    storage: dst._view.storage,
    layout: { shape: window.shape, strides: dst.strides, offset: window.offset },
    dtype: dst.dtype,
  };
  kernel([src._view] as InputViews<"contiguous">, {}, out);
}

/**
 * copyInto for a backend without a contiguous kernel: the copy runs on the CPU and dst takes a new storage
 * holding the result. dst is always a fresh output of cat or padNarrow, so nothing else shares its storage.
 */
function copyIntoOnCpu(src: Tensor, dst: Tensor, window: { shape: readonly number[]; offset: number }): void {
  const backend = dst.backend;
  const read = backend.readSync;
  if (!read) {
    throw new Error(
      `cat: backend "${dst.device}" has no contiguous kernel and cannot read synchronously to fall back to the CPU`,
    );
  }
  const cpu = getCpuBackend();
  const whole = fromTypedArray(read.call(backend, dst._view), dst.shape, dst.dtype, cpu);
  const piece = fromTypedArray(read.call(backend, src._view), src.shape, src.dtype, cpu);
  copyInto(piece, whole, window);
  const ref = new StorageRef(backend, backend.fromArray(whole.dataSync(), dst.dtype));
  whole.dispose();
  piece.dispose();
  const old = dst._store;
  ref.retain();
  dst._store = ref;
  old.release();
}

/** The gradient of narrow: dy placed at [start, start + length) of a zero tensor of size `size` along dim. */
export function padNarrow(dy: Tensor, dim: number, start: number, size: number): Tensor {
  const shape = dy.shape.map((n, i) => (i === dim ? size : n));
  const out = allocTensor(dy.backend, shape, dy.dtype);
  copyInto(dy, out, { shape: dy.shape, offset: start * out.strides[dim]! });
  return attachNode(out, "padNarrow", [dy], (g) => [narrow(g, dim, start, dy.shape[dim]!)]);
}

/** Concatenates along an existing dim; shapes must agree elsewhere. Dtypes promote. */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new RangeError("cat: expected a non-empty list of tensors");
  const first = tensors[0]!;
  if (first.ndim === 0)
    throw new RangeError("cat: zero-dimensional tensors cannot be concatenated; use stack");
  const d = normalizeDim("cat", dim, first.ndim);
  for (const t of tensors) {
    if (t.ndim !== first.ndim || t.shape.some((n, i) => i !== d && n !== first.shape[i])) {
      throw new RangeError(
        `cat: shapes ${tensors.map((x) => fmt(x.shape)).join(", ")} differ outside dim ${dim}`,
      );
    }
  }
  const dtype = tensors.map((t) => t.dtype).reduce(promoteTypes);
  const parts = tensors.map((t) => cast(t, dtype));
  const shape = first.shape.map((n, i) => (i === d ? parts.reduce((k, t) => k + t.shape[d]!, 0) : n));
  const out = allocTensor(first.backend, shape, dtype);
  const starts: number[] = [];
  let at = 0;
  for (const t of parts) {
    starts.push(at);
    if (t.shape[d]! > 0) copyInto(t, out, { shape: t.shape, offset: at * out.strides[d]! });
    at += t.shape[d]!;
  }
  return attachNode(out, "cat", parts, (g, needs) =>
    parts.map((t, i) => (needs[i] ? narrow(g, d, starts[i]!, t.shape[d]!) : null)),
  );
}

/** Joins tensors of equal shape along a new dim. */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new RangeError("stack: expected a non-empty list of tensors");
  for (const t of tensors) {
    if (!shapesEqual(t.shape, tensors[0]!.shape))
      throw new RangeError(`stack: shapes differ: ${tensors.map((x) => fmt(x.shape)).join(", ")}`);
  }
  const d = normalizeDim("stack", dim, tensors[0]!.ndim + 1);
  return cat(
    tensors.map((t) => unsqueeze(t, d)),
    d,
  );
}

/** Splits into pieces of `size` (last may be smaller) or into the given section sizes, as views. */
export function split(x: Tensor, sizeOrSections: number | number[], dim = 0): Tensor[] {
  const d = normalizeDim("split", dim, x.ndim);
  const n = x.shape[d]!;
  let sizes: number[];
  if (typeof sizeOrSections === "number") {
    if (!(sizeOrSections > 0)) throw new RangeError(`split: size must be positive, got ${sizeOrSections}`);
    sizes = [];
    for (let s = 0; s < n; s += sizeOrSections) sizes.push(Math.min(sizeOrSections, n - s));
  } else {
    sizes = sizeOrSections;
    if (sizes.reduce((a, b) => a + b, 0) !== n)
      throw new RangeError(
        `split: sections ${fmt(sizes)} do not add up to ${n} (dim ${dim} of ${fmt(x.shape)})`,
      );
  }
  let at = 0;
  return sizes.map((s) => {
    const piece = narrow(x, d, at, s);
    at += s;
    return piece;
  });
}

/** torch.chunk: pieces of ceil(n / chunks). */
export function chunk(x: Tensor, chunks: number, dim = 0): Tensor[] {
  const d = normalizeDim("chunk", dim, x.ndim);
  if (!(chunks >= 1)) throw new RangeError(`chunk: chunks must be >= 1, got ${chunks}`);
  return split(x, Math.max(1, Math.ceil(x.shape[d]! / chunks)), d);
}

function triangle(op: string, x: Tensor, diagonal: number, keepLower: boolean): Tensor {
  if (x.ndim < 2) throw new RangeError(`${op}: expected a tensor with at least 2 dims, got ${fmt(x.shape)}`);
  const [R, C] = x.shape.slice(-2) as [number, number];
  const keep = new Uint8Array(R * C);
  for (let i = 0; i < R; i++)
    for (let j = 0; j < C; j++) keep[i * C + j] = (keepLower ? j - i <= diagonal : j - i >= diagonal) ? 1 : 0;
  const mask = noGrad(() => fromTypedArray(keep, [R, C], "bool", x.backend));
  return where(mask, x, 0);
}
/** Lower triangle of the last two dims (j - i <= diagonal), zeros elsewhere. */
export const tril = (x: Tensor, diagonal = 0): Tensor => triangle("tril", x, diagonal, true);
/** Upper triangle of the last two dims (j - i >= diagonal), zeros elsewhere. */
export const triu = (x: Tensor, diagonal = 0): Tensor => triangle("triu", x, diagonal, false);
