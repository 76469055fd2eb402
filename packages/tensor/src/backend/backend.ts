// The Backend interface: storage plus a kernel table, nothing else. No shape logic and no autograd live
// here (style guide 3.3); the frontend hands kernels strided views whose shapes it already checked.

import type { DType, TypedArray } from "../dtype.js";
import type { FusedKernelTable } from "../fused/signatures.js";
import type { KernelTable } from "../ops/signatures.js";

/** A strided window onto a storage: the same layout PyTorch keeps (shape, strides, offset in elements). */
export interface Layout {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

/** Opaque handle owned by exactly one backend. `size` counts elements of `dtype`. */
export interface Storage {
  readonly backend: string;
  readonly dtype: DType;
  readonly size: number;
}

export interface View {
  readonly storage: Storage;
  readonly layout: Layout;
  readonly dtype: DType;
}

export interface Backend {
  /** "cpu" | "wasm" | "webgpu" | ... */
  readonly name: string;
  /**
   * A storage of `size` elements, zero-filled unless `zero` is false: then its contents are unspecified,
   * for a caller that writes every element (a kernel's output), and the backend may skip the fill.
   */
  alloc(dtype: DType, size: number, zero?: boolean): Storage;
  /** A storage holding a copy of `data`, read as `dtype` (bool is stored as uint8). */
  fromArray(data: TypedArray, dtype: DType): Storage;
  /**
   * A storage that takes `data` itself, without a copy, when the backend keeps typed arrays (CPU
   * backends); the caller must not touch `data` afterwards. Backends without it copy via fromArray.
   */
  adopt?(data: TypedArray, dtype: DType): Storage;
  /** The elements of `view` in row-major order, as a fresh typed array. The only way out of a GPU. */
  read(view: View): Promise<TypedArray>;
  /** Synchronous read; CPU backends only. */
  readSync?(view: View): TypedArray;
  free(storage: Storage): void;
  /** Bytes currently held, for leak tests. */
  liveBytes(): number;
  /** A CPU backend's table is total; any other backend may implement a subset and fall back to CPU. */
  readonly kernels: Partial<KernelTable>;
  /**
   * Fused kernels (softmax, cross-entropy, RMSNorm, SwiGLU, RoPE, with their backwards). Optional: where
   * one is missing the frontend runs the op's composition of primitives.
   */
  readonly fused?: Partial<FusedKernelTable>;
  /**
   * c += a b in place for a [..., M, K], b [..., K, N] and a contiguous c [..., M, N] of one dtype (the
   * same batch dims). Optional: matmulAccumulate adds a separate product where it is missing.
   */
  matmulAccumulate?(a: View, b: View, c: View): void;
  /**
   * out = a b and out2 = a b2 (a [..., M, K], b [..., K, N], b2 [..., K, N2], contiguous outs, one dtype),
   * sharing the work on a: LoRA's x W^T with x A^T. With `third` (float32 only), also third.out =
   * third.scale a^T third.d for d [..., M, N3] into a contiguous, zero-filled [..., K, N3] (LoRA's
   * dB = s dy^T (x A^T) next to dy W and dy (s B)). Optional: matmulPair runs separate products where
   * missing.
   */
  matmulPair?(
    a: View,
    b: View,
    b2: View,
    out: View,
    out2: View,
    third?: { d: View; scale: number; out: View },
  ): void;
  /**
   * out = a b computing only what a causal attention mask lets through (see CausalSpec), 0 where skipped;
   * out comes uninitialized, so every element is written. Optional: causalMatmul computes the whole
   * product where it is missing.
   */
  matmulCausal?(a: View, b: View, out: View, spec: CausalSpec): void;
}

/**
 * The shape of causal attention in a product's rows, for matmulCausal. "cols": the rows are (group, t), t =
 * row mod `period`, and row t keeps columns s <= t + offset (the scores Q K^T, and dP = dO V^T); the rest
 * is left 0. "k": the same rows, and A is zero at k > t + offset (P V, and dQ = dS K). "kT": the rows are s,
 * k runs over (group, t) rows, and A is zero where t < s - offset (dK = dS^T Q, dV = P^T dO).
 */
export interface CausalSpec {
  period: number;
  offset: number;
  kind: "cols" | "k" | "kT";
}
