// Tensor: metadata (shape, strides, offset, dtype), a shared storage on one backend, and an optional
// autograd node. Method sugar only: every method calls a function in ops/ or functional/, where the math is.

import { backward, type GradNode } from "./autograd/engine.js";
import type { Backend, View } from "./backend/backend.js";
import { type DType, isFloat, type TypedArray } from "./dtype.js";
import { type Disposable, keep, type StorageRef, trackTensor } from "./memory.js";
import { type NestedArray, nest } from "./nested.js";
import * as F from "./ops/index.js";
import { contiguousStrides, fmt, isContiguous, normalizeDim, numel } from "./shape.js";

export type { NestedArray } from "./nested.js";
export type Scalar = number | boolean;
export type TensorLike = Tensor | number;

export class Tensor implements Disposable {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  readonly dtype: DType;
  /** Set on leaves you want gradients for; ops set it on results that depend on such leaves. */
  requiresGrad = false;
  /** Accumulated by backward() on leaves with requiresGrad. */
  grad: Tensor | null = null;
  /** @internal The op that produced this tensor, when it is part of a graph. */
  _node: GradNode | null = null;
  /** @internal */ _kept = false;
  /** @internal */ _store: StorageRef;
  private disposed = false;

  /** @internal Use the creation functions (tensor, zeros, randn, ...) instead. */
  constructor(
    store: StorageRef,
    shape: readonly number[],
    dtype: DType,
    strides?: readonly number[],
    offset = 0,
  ) {
    this._store = store;
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze(strides ? [...strides] : contiguousStrides(shape));
    this.offset = offset;
    this.dtype = dtype;
    store.retain();
    trackTensor(this);
  }

  get backend(): Backend {
    return this._store.backend;
  }
  /** The name of the backend holding the data, like torch's device. */
  get device(): string {
    return this._store.backend.name;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get numel(): number {
    return numel(this.shape);
  }
  get isContiguous(): boolean {
    return isContiguous(this.shape, this.strides);
  }
  get isLeaf(): boolean {
    return this._node === null;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }
  /** torch.Tensor.size(): the shape, or one dim of it. */
  size(dim?: number): number | readonly number[] {
    return dim === undefined ? this.shape : this.shape[normalizeDim("size", dim, this.ndim)]!;
  }
  dim(): number {
    return this.ndim;
  }

  /** @internal The strided view kernels receive. */
  get _view(): View {
    if (this.disposed) throw new Error(`Tensor ${fmt(this.shape)} ${this.dtype} was used after dispose()`);
    return { storage: this._store.storage, layout: this, dtype: this.dtype };
  }

  toString(): string {
    return `Tensor(shape=${fmt(this.shape)}, dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ", requiresGrad" : ""})`;
  }

  // ---- reading data out ----
  /** The elements in row-major order. Always async so GPU backends fit. */
  data(): Promise<TypedArray> {
    return this.backend.read(this._view);
  }
  /** Synchronous read; CPU backends only. */
  dataSync(): TypedArray {
    const read = this.backend.readSync;
    if (!read)
      throw new Error(`dataSync: backend "${this.device}" cannot read synchronously; use await t.data()`);
    return read.call(this.backend, this._view);
  }
  async item(): Promise<number> {
    return itemOf(this, await this.data());
  }
  itemSync(): number {
    return itemOf(this, this.dataSync());
  }
  async tolist(): Promise<NestedArray> {
    return nest(await this.data(), this.shape, this.dtype);
  }
  tolistSync(): NestedArray {
    return nest(this.dataSync(), this.shape, this.dtype);
  }

  // ---- autograd ----
  /** Fills `.grad` of every leaf with requiresGrad that this tensor depends on. */
  backward(gradient?: Tensor, options?: { createGraph?: boolean }): void {
    backward(this, gradient, options);
  }
  requiresGrad_(flag = true): this {
    if (!this.isLeaf)
      throw new Error("requiresGrad_: only leaf tensors can change requiresGrad; use detach() first");
    if (flag && !isFloat(this.dtype))
      throw new TypeError(`requiresGrad_: only floating-point tensors can require grad, got ${this.dtype}`);
    this.requiresGrad = flag;
    return this;
  }
  /** A tensor sharing the data, cut off from the graph. */
  detach(): Tensor {
    void this._view; // throws after dispose()
    return new Tensor(this._store, this.shape, this.dtype, this.strides, this.offset);
  }
  /** Keeps this tensor alive across tidy() scopes. */
  keep(): this {
    return keep(this);
  }
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this._store.release();
    this._node = null;
  }

  // ---- elementwise ----
  add(other: TensorLike, alpha?: number): Tensor {
    return F.add(this, other, alpha);
  }
  sub(other: TensorLike, alpha?: number): Tensor {
    return F.sub(this, other, alpha);
  }
  mul(other: TensorLike): Tensor {
    return F.mul(this, other);
  }
  div(other: TensorLike): Tensor {
    return F.div(this, other);
  }
  pow(exponent: TensorLike): Tensor {
    return F.pow(this, exponent);
  }
  maximum(other: TensorLike): Tensor {
    return F.maximum(this, other);
  }
  minimum(other: TensorLike): Tensor {
    return F.minimum(this, other);
  }
  clamp(min?: number | null, max?: number | null): Tensor {
    return F.clamp(this, min, max);
  }
  neg(): Tensor {
    return F.neg(this);
  }
  exp(): Tensor {
    return F.exp(this);
  }
  log(): Tensor {
    return F.log(this);
  }
  sqrt(): Tensor {
    return F.sqrt(this);
  }
  rsqrt(): Tensor {
    return F.rsqrt(this);
  }
  reciprocal(): Tensor {
    return F.reciprocal(this);
  }
  square(): Tensor {
    return F.square(this);
  }
  sin(): Tensor {
    return F.sin(this);
  }
  cos(): Tensor {
    return F.cos(this);
  }
  tanh(): Tensor {
    return F.tanh(this);
  }
  sigmoid(): Tensor {
    return F.sigmoid(this);
  }
  erf(): Tensor {
    return F.erf(this);
  }
  abs(): Tensor {
    return F.abs(this);
  }
  sign(): Tensor {
    return F.sign(this);
  }
  relu(): Tensor {
    return F.relu(this);
  }
  silu(): Tensor {
    return F.silu(this);
  }
  gelu(approximate: "none" | "tanh" = "none"): Tensor {
    return F.gelu(this, approximate);
  }
  eq(other: TensorLike): Tensor {
    return F.eq(this, other);
  }
  ne(other: TensorLike): Tensor {
    return F.ne(this, other);
  }
  lt(other: TensorLike): Tensor {
    return F.lt(this, other);
  }
  le(other: TensorLike): Tensor {
    return F.le(this, other);
  }
  gt(other: TensorLike): Tensor {
    return F.gt(this, other);
  }
  ge(other: TensorLike): Tensor {
    return F.ge(this, other);
  }
  logicalNot(): Tensor {
    return F.logicalNot(this);
  }
  logicalAnd(other: Tensor): Tensor {
    return F.logicalAnd(this, other);
  }
  logicalOr(other: Tensor): Tensor {
    return F.logicalOr(this, other);
  }
  /** torch.Tensor.where: `condition ? this : other`. */
  where(condition: Tensor, other: TensorLike): Tensor {
    return F.where(condition, this, other);
  }
  maskedFill(mask: Tensor, value: number): Tensor {
    return F.maskedFill(this, mask, value);
  }

  // ---- dtype ----
  to(dtype: DType): Tensor {
    return F.cast(this, dtype);
  }
  float(): Tensor {
    return F.cast(this, "float32");
  }
  double(): Tensor {
    return F.cast(this, "float64");
  }
  int(): Tensor {
    return F.cast(this, "int32");
  }
  bool(): Tensor {
    return F.cast(this, "bool");
  }
  /** Moves the data to another backend ("cpu", "wasm", "webgpu", ...). */
  toDevice(device: string): Promise<Tensor> {
    return F.toDevice(this, device);
  }

  // ---- reductions ----
  sum(dim?: number | number[], keepdim = false): Tensor {
    return F.sum(this, dim, keepdim);
  }
  mean(dim?: number | number[], keepdim = false): Tensor {
    return F.mean(this, dim, keepdim);
  }
  /** Values only, like torch.amax; use argmax for indices. */
  max(dim?: number | number[], keepdim = false): Tensor {
    return F.max(this, dim, keepdim);
  }
  min(dim?: number | number[], keepdim = false): Tensor {
    return F.min(this, dim, keepdim);
  }
  amax(dim?: number | number[], keepdim = false): Tensor {
    return F.max(this, dim, keepdim);
  }
  amin(dim?: number | number[], keepdim = false): Tensor {
    return F.min(this, dim, keepdim);
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return F.argmax(this, dim, keepdim);
  }
  argmin(dim?: number, keepdim = false): Tensor {
    return F.argmin(this, dim, keepdim);
  }
  logsumexp(dim: number | number[], keepdim = false): Tensor {
    return F.logsumexp(this, dim, keepdim);
  }
  var(dim?: number | number[], options?: { correction?: number; keepdim?: boolean }): Tensor {
    return F.variance(this, dim, options);
  }
  softmax(dim: number): Tensor {
    return F.softmax(this, dim);
  }
  logSoftmax(dim: number): Tensor {
    return F.logSoftmax(this, dim);
  }

  // ---- contraction ----
  matmul(other: Tensor): Tensor {
    return F.matmul(this, other);
  }

  // ---- movement (views where possible) ----
  reshape(...shape: number[] | [readonly number[]]): Tensor {
    return F.reshape(this, flatArgs(shape));
  }
  view(...shape: number[] | [readonly number[]]): Tensor {
    return F.view(this, flatArgs(shape));
  }
  flatten(startDim = 0, endDim = -1): Tensor {
    return F.flatten(this, startDim, endDim);
  }
  transpose(dim0: number, dim1: number): Tensor {
    return F.transpose(this, dim0, dim1);
  }
  /** Transpose of the last two dims (torch's .mT). */
  get mT(): Tensor {
    return F.transpose(this, -2, -1);
  }
  permute(...dims: number[] | [readonly number[]]): Tensor {
    return F.permute(this, flatArgs(dims));
  }
  expand(...shape: number[] | [readonly number[]]): Tensor {
    return F.expand(this, flatArgs(shape));
  }
  expandAs(other: Tensor): Tensor {
    return F.expand(this, other.shape);
  }
  squeeze(dim?: number | number[]): Tensor {
    return F.squeeze(this, dim);
  }
  unsqueeze(dim: number): Tensor {
    return F.unsqueeze(this, dim);
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return F.narrow(this, dim, start, length);
  }
  /** Python's x[..., start:end] along one dim (end exclusive, negatives count from the end). */
  slice(dim: number, start?: number, end?: number): Tensor {
    return F.slice(this, dim, start, end);
  }
  contiguous(): Tensor {
    return F.contiguous(this);
  }
  clone(): Tensor {
    return F.clone(this);
  }
  split(sizeOrSections: number | number[], dim = 0): Tensor[] {
    return F.split(this, sizeOrSections, dim);
  }
  chunk(chunks: number, dim = 0): Tensor[] {
    return F.chunk(this, chunks, dim);
  }
  tril(diagonal = 0): Tensor {
    return F.tril(this, diagonal);
  }
  triu(diagonal = 0): Tensor {
    return F.triu(this, diagonal);
  }

  // ---- indexing ----
  gather(dim: number, index: Tensor): Tensor {
    return F.gather(this, dim, index);
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return F.indexSelect(this, dim, index);
  }
}

function flatArgs(args: number[] | [readonly number[]]): number[] {
  return Array.isArray(args[0]) ? [...(args[0] as readonly number[])] : (args as number[]);
}

function itemOf(t: Tensor, data: TypedArray): number {
  if (data.length !== 1)
    throw new RangeError(`item: expected a tensor with one element, got shape ${fmt(t.shape)}`);
  return data[0]!;
}
