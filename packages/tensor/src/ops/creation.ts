// Creation functions, PyTorch's names and argument order: tensor, zeros, ones, full, arange, randn, ...

import type { Backend } from "../backend/backend.js";
import { getBackend } from "../backend/registry.js";
import { assertDType, type DType, dtypeOfArray, isFloat, type TypedArray, typedArrayFor } from "../dtype.js";
import { StorageRef } from "../memory.js";
import { flatten, inferShape, type NestedArray } from "../nested.js";
import { randomNormal, randomUniform } from "../rng.js";
import { checkShape, fmt, numel } from "../shape.js";
import { Tensor } from "../tensor.js";

export interface CreateOptions {
  dtype?: DType;
  requiresGrad?: boolean;
  /** Backend name; defaults to the active backend. */
  device?: string;
}

function finish(t: Tensor, op: string, opts: CreateOptions | undefined): Tensor {
  if (opts?.requiresGrad) {
    if (!isFloat(t.dtype))
      throw new TypeError(`${op}: only floating-point tensors can require grad, got ${t.dtype}`);
    t.requiresGrad = true;
  }
  return t;
}

/** @internal Wraps a typed array already in row-major order as a tensor on `backend`. */
export function fromTypedArray(
  data: TypedArray,
  shape: readonly number[],
  dtype: DType,
  backend: Backend = getBackend(),
  adopt = false,
): Tensor {
  if (data.length !== numel(shape)) {
    throw new RangeError(
      `tensor: ${data.length} values do not fill shape ${fmt(shape)} (${numel(shape)} elements)`,
    );
  }
  const storage = adopt && backend.adopt ? backend.adopt(data, dtype) : backend.fromArray(data, dtype);
  return new Tensor(new StorageRef(backend, storage), shape, dtype);
}

/**
 * A tensor from nested arrays, a number, or a typed array (with `shape`, default 1-D). As in PyTorch,
 * integers infer int32 (torch: int64), any fraction float32, booleans bool; typed arrays keep their type.
 * @example const x = tensor([[1, 2], [3, 4]], { dtype: "float32", requiresGrad: true });
 */
export function tensor(
  data: NestedArray | TypedArray,
  opts?: CreateOptions & {
    shape?: readonly number[];
    /** false: a typed array may become the tensor's storage without a copy (do not modify it afterwards). */
    copy?: boolean;
  },
): Tensor {
  if (opts?.dtype !== undefined) assertDType(opts.dtype, "tensor");
  const backend = getBackend(opts?.device);
  if (ArrayBuffer.isView(data)) {
    const typed = data as TypedArray;
    const dtype = opts?.dtype ?? dtypeOfArray(typed);
    // NOTE: bool always converts, so a Uint8Array holding 2 or 5 becomes 1 (bool storage is 0 or 1)
    const converted = dtypeOfArray(typed) === dtype ? typed : convert(typed, dtype);
    const adopt = opts?.copy === false || converted !== typed; // a converted array is ours already
    return finish(
      fromTypedArray(converted, opts?.shape ?? [typed.length], dtype, backend, adopt),
      "tensor",
      opts,
    );
  }
  const shape = inferShape(data);
  const flat: (number | boolean)[] = [];
  flatten(data, shape, flat);
  const dtype =
    opts?.dtype ??
    (flat.length > 0 && flat.every((v) => typeof v === "boolean")
      ? "bool"
      : flat.length > 0 && flat.every((v) => typeof v === "boolean" || Number.isInteger(v))
        ? "int32"
        : "float32");
  const range = INT_RANGE[dtype];
  const arr = typedArrayFor(dtype, flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = Number(flat[i]);
    // NOTE: an integer store would silently wrap (2**31 -> -2**31); PyTorch raises on overflow too
    if (range && !(v >= range[0] && v <= range[1]))
      throw new RangeError(
        `tensor: ${v} does not fit in ${dtype} [${range[0]}, ${range[1]}]; pass a float dtype`,
      );
    arr[i] = dtype === "bool" ? (v !== 0 ? 1 : 0) : v;
  }
  return finish(fromTypedArray(arr, shape, dtype, backend), "tensor", opts);
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  uint8: [0, 255],
};

function convert(src: TypedArray, dtype: DType): TypedArray {
  const out = typedArrayFor(dtype, src.length);
  for (let i = 0; i < src.length; i++) out[i] = dtype === "bool" ? (src[i] !== 0 ? 1 : 0) : src[i]!;
  return out;
}

/** A 0-d tensor holding v, on the given backend. */
export function scalar(v: number | boolean, dtype: DType, backend: Backend = getBackend()): Tensor {
  const arr = typedArrayFor(dtype, 1);
  arr[0] = typeof v === "boolean" ? (v ? 1 : 0) : dtype === "bool" ? (v !== 0 ? 1 : 0) : v;
  return fromTypedArray(arr, [], dtype, backend);
}

export function full(shape: readonly number[], value: number | boolean, opts?: CreateOptions): Tensor {
  checkShape("full", shape);
  const dtype = opts?.dtype ?? (typeof value === "boolean" ? "bool" : "float32");
  const backend = getBackend(opts?.device);
  const n = numel(shape);
  const v = typeof value === "boolean" ? Number(value) : dtype === "bool" ? (value !== 0 ? 1 : 0) : value;
  if (v === 0)
    return finish(new Tensor(new StorageRef(backend, backend.alloc(dtype, n)), shape, dtype), "full", opts);
  return finish(fromTypedArray(typedArrayFor(dtype, n).fill(v), shape, dtype, backend), "full", opts);
}

export function zeros(shape: readonly number[], opts?: CreateOptions): Tensor {
  return full(shape, 0, opts);
}
export function ones(shape: readonly number[], opts?: CreateOptions): Tensor {
  return full(shape, 1, opts);
}

function likeOpts(t: Tensor, opts?: CreateOptions): CreateOptions {
  return { dtype: t.dtype, device: t.device, ...opts };
}
export function zerosLike(t: Tensor, opts?: CreateOptions): Tensor {
  return full(t.shape, 0, likeOpts(t, opts));
}
export function onesLike(t: Tensor, opts?: CreateOptions): Tensor {
  return full(t.shape, 1, likeOpts(t, opts));
}
export function fullLike(t: Tensor, value: number, opts?: CreateOptions): Tensor {
  return full(t.shape, value, likeOpts(t, opts));
}

/** arange(end), arange(start, end), arange(start, end, step): end exclusive, as in PyTorch. */
export function arange(start: number, end?: number, step = 1, opts?: CreateOptions): Tensor {
  if (end === undefined) [start, end] = [0, start];
  if (step === 0) throw new RangeError("arange: step must be non-zero");
  const n = Math.max(0, Math.ceil((end - start) / step));
  const dtype = opts?.dtype ?? ([start, end, step].every(Number.isInteger) ? "int32" : "float32");
  const arr = typedArrayFor(dtype, n);
  for (let i = 0; i < n; i++) arr[i] = start + i * step;
  return finish(fromTypedArray(arr, [n], dtype, getBackend(opts?.device)), "arange", opts);
}

function random(op: string, shape: readonly number[], draw: () => number, opts?: CreateOptions): Tensor {
  checkShape(op, shape);
  const dtype = opts?.dtype ?? "float32";
  if (!isFloat(dtype)) throw new TypeError(`${op}: dtype must be floating-point, got ${dtype}`);
  const arr = typedArrayFor(dtype, numel(shape));
  for (let i = 0; i < arr.length; i++) arr[i] = draw();
  return finish(fromTypedArray(arr, shape, dtype, getBackend(opts?.device)), op, opts);
}

/** Standard normal samples from the seeded generator (see manualSeed). */
export function randn(shape: readonly number[], opts?: CreateOptions): Tensor {
  return random("randn", shape, randomNormal, opts);
}
/** Uniform samples in [0, 1) from the seeded generator. */
export function rand(shape: readonly number[], opts?: CreateOptions): Tensor {
  // NOTE: in float32 a draw within 2^-25 of 1 would round to 1.0; clamp so the range stays [0, 1)
  const f32 = (opts?.dtype ?? "float32") === "float32";
  return random("rand", shape, f32 ? () => Math.min(randomUniform(), 1 - 2 ** -24) : randomUniform, opts);
}
export function randnLike(t: Tensor, opts?: CreateOptions): Tensor {
  return randn(t.shape, likeOpts(t, opts));
}
export function randLike(t: Tensor, opts?: CreateOptions): Tensor {
  return rand(t.shape, likeOpts(t, opts));
}
/** Integers uniform in [low, high). */
export function randint(low: number, high: number, shape: readonly number[], opts?: CreateOptions): Tensor {
  checkShape("randint", shape);
  if (!(high > low)) throw new RangeError(`randint: expected low < high, got ${low} and ${high}`);
  const dtype = opts?.dtype ?? "int32";
  const arr = typedArrayFor(dtype, numel(shape));
  for (let i = 0; i < arr.length; i++) arr[i] = low + Math.floor(randomUniform() * (high - low));
  return fromTypedArray(arr, shape, dtype, getBackend(opts?.device));
}

/** Identity matrix n x m (m defaults to n). */
export function eye(n: number, m = n, opts?: CreateOptions): Tensor {
  const dtype = opts?.dtype ?? "float32";
  const arr = typedArrayFor(dtype, n * m);
  for (let i = 0; i < Math.min(n, m); i++) arr[i * m + i] = 1;
  return finish(fromTypedArray(arr, [n, m], dtype, getBackend(opts?.device)), "eye", opts);
}

/** Copies t to another backend. */
export async function toDevice(t: Tensor, device: string): Promise<Tensor> {
  if (t.device === device) return t;
  const out = fromTypedArray(await t.data(), t.shape, t.dtype, getBackend(device));
  out.requiresGrad = t.requiresGrad && t.isLeaf;
  return out;
}
