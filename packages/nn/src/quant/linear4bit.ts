// Linear4bit: bitsandbytes' 4-bit linear (trl-peft-spec 3.3-3.5). The weight lives only as packed NF4/FP4
// codes plus block statistics and is frozen; forward dequantizes and multiplies (qmatmul4), and its backward
// gives the input gradient dy W (and the bias gradient), recomputing W chunk by chunk instead of saving it.

import { defineOp, noGrad, type Tensor, tensor } from "@tsgrad/tensor";
import { Linear, type LinearLike } from "../layers/linear.js";
import { Module } from "../module.js";
import { Parameter } from "../parameter.js";
import type { ComputeDType, QuantStorage } from "./config.js";
import {
  checkPacked,
  dequantize4bitArray,
  type QuantSourceDType,
  type QuantState4bit,
  type QuantType4,
  quantize4bitState,
} from "./functional.js";
import { qmatmul4, qmatmul4T } from "./qmatmul.js";
import {
  fusedQmatmulAvailable,
  fusedQmatmulSupports,
  qmatmul4Fused,
  qmatmul4TFused,
} from "./qmatmul-wasm.js";

export interface Linear4bitOptions {
  quantType?: QuantType4;
  blocksize?: number;
  /** Double quantization of the block absmax values. */
  compressStatistics?: boolean;
  computeDtype?: ComputeDType;
  quantStorage?: QuantStorage;
  /** The dtype of the weights before quantization (what dequantize rounds back to); default float32. */
  dtype?: QuantSourceDType;
}

/**
 * Which matmul Linear4bit runs: "chunked" (default) = rows of W dequantized up to 1 Mi values at a time and
 * multiplied with the active backend's matmul; "fused" = the WebAssembly SIMD dequantize-and-matmul kernel,
 * which holds one dequantized row at a time (float32 compute only; otherwise chunked). Their training-step
 * times are within run-to-run noise of each other (benchmarks/RESULTS-quant.md); "chunked" stays the
 * default because the fused kernel copies x and y through its own WebAssembly memory, which grows to the
 * largest call and is never given back.
 */
export type Linear4bitKernel = "fused" | "chunked";

export class Linear4bit extends Module implements LinearLike {
  /** The kernel every Linear4bit uses (see Linear4bitKernel). */
  static kernel: Linear4bitKernel = "chunked";

  bias: Parameter | null;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** @internal Packed codes, two per byte (bitsandbytes' order). */
  _packed: Uint8Array;
  /** @internal */
  _state: QuantState4bit;
  computeDtype: ComputeDType;
  readonly quantStorage: QuantStorage;

  /** Wraps already quantized data (a loaded checkpoint); see fromLinear / fromWeight to quantize. */
  constructor(
    packed: Uint8Array,
    state: QuantState4bit,
    bias: Tensor | null,
    options: { computeDtype?: ComputeDType; quantStorage?: QuantStorage } = {},
  ) {
    super();
    if (state.shape.length !== 2)
      throw new RangeError(`Linear4bit: the weight must be 2-D [out, in], got [${state.shape.join(", ")}]`);
    checkPacked(packed, state, "Linear4bit");
    const [O, I] = state.shape as [number, number];
    this.outFeatures = O;
    this.inFeatures = I;
    this._packed = packed;
    this._state = state;
    if (bias && (bias.ndim !== 1 || bias.shape[0] !== O))
      throw new RangeError(`Linear4bit: bias must have shape [${O}], got [${bias.shape.join(", ")}]`);
    this.bias = bias ? new Parameter(bias.dtype === "float32" ? bias : bias.to("float32"), false) : null;
    this.computeDtype = options.computeDtype ?? "float32";
    this.quantStorage = options.quantStorage ?? "uint8";
  }

  /** Quantizes a float weight [out, in] (row-major values). */
  static fromWeight(
    weight: ArrayLike<number>,
    shape: readonly [number, number],
    bias: Tensor | null,
    options: Linear4bitOptions = {},
  ): Linear4bit {
    const { packed, state } = quantize4bitState(weight, shape, {
      blocksize: options.blocksize ?? 64,
      quantType: options.quantType ?? "nf4",
      compressStatistics: options.compressStatistics ?? false,
      dtype: options.dtype ?? "float32",
    });
    return new Linear4bit(packed, state, bias, options);
  }

  /**
   * Quantizes a Linear (any other module kind is an error).
   * @example const q = Linear4bit.fromLinear(new Linear(64, 32), { quantType: "nf4", compressStatistics: true });
   */
  static fromLinear(linear: Module, options: Linear4bitOptions = {}): Linear4bit {
    if (!(linear instanceof Linear))
      throw new TypeError(
        `Linear4bit.fromLinear: only a Linear can be quantized to 4 bits, got ${linear.constructor.name}`,
      );
    const w = linear.weight.dataSync();
    return Linear4bit.fromWeight(
      w,
      [linear.outFeatures, linear.inFeatures],
      linear.bias?.detach() ?? null,
      options,
    );
  }

  get quantState(): Readonly<QuantState4bit> {
    return this._state;
  }
  get packedWeight(): Uint8Array {
    return this._packed;
  }

  /** The float32 weight [out, in] (bitsandbytes' dequantize_4bit). */
  dequantize(): Tensor {
    return tensor(dequantize4bitArray(this._packed, this._state), {
      shape: [this.outFeatures, this.inFeatures],
      dtype: "float32",
    });
  }

  denseWeight(): Tensor {
    return this.dequantize();
  }

  /** A full-precision, frozen Linear with the dequantized weight and a copy of the bias. */
  toLinear(): Linear {
    const lin = new Linear(this.inFeatures, this.outFeatures, { bias: this.bias !== null, init: "zeros" });
    noGrad(() => {
      const w = this.dequantize();
      lin.weight.assign(w);
      w.dispose();
      if (this.bias && lin.bias) lin.bias.assign(this.bias);
    });
    // The base stays frozen, as the quantized weight was.
    lin.weight.requiresGrad = false;
    if (lin.bias) lin.bias.requiresGrad = this.bias?.requiresGrad ?? false;
    return lin;
  }

  /** Bytes held for the frozen weight: packed codes, statistics and code books (the bias excluded). */
  weightBytes(): number {
    const s = this._state;
    let n = this._packed.byteLength + s.absmax.byteLength + s.code.byteLength;
    if (s.nested) n += s.nested.absmax.byteLength + s.nested.code.byteLength + 4;
    return n;
  }

  /** Whether forward/backward run the fused WebAssembly kernel for `rows` input rows. */
  usesFusedKernel(rows: number): boolean {
    if (Linear4bit.kernel !== "fused" || this.computeDtype !== "float32") return false;
    return fusedQmatmulAvailable() && fusedQmatmulSupports(this._state, rows);
  }

  forward(x: Tensor): Tensor {
    const I = this.inFeatures;
    const O = this.outFeatures;
    if (x.shape[x.ndim - 1] !== I)
      throw new RangeError(`Linear4bit: expected input [..., ${I}], got [${x.shape.join(", ")}]`);
    const lead = x.shape.slice(0, -1);
    const opts = { computeDtype: this.computeDtype };
    const packed = this._packed;
    const state = this._state;
    const bias = this.bias;
    const op = defineOp<Tensor[]>({
      name: "linear4bit",
      forward: (xin, b) => {
        const x2 = xin!.reshape([-1, I]);
        let y = this.usesFusedKernel(x2.shape[0]!)
          ? qmatmul4Fused(x2, packed, state)
          : qmatmul4(x2, packed, state, opts);
        if (b) y = y.add(b);
        if (x.dtype !== "float32") y = y.to(x.dtype);
        return y.reshape([...lead, O]);
      },
      backward: (dy, { needs }) => {
        const dy2 = dy.reshape([-1, O]);
        const dx2 = !needs[0]
          ? null
          : this.usesFusedKernel(dy2.shape[0]!)
            ? qmatmul4TFused(dy2, packed, state)
            : qmatmul4T(dy2, packed, state, opts);
        const dx = dx2 ? dx2.reshape(x.shape).to(x.dtype) : null;
        const db = needs[1] ? dy2.sum(0).to(bias!.dtype) : null;
        return bias ? [dx, db] : [dx];
      },
    });
    return bias ? op(x, bias) : op(x);
  }
}
