// Linear8bitLt: LLM.int8 (trl-peft-spec 3.8). The weight is int8 with one absmax per output row (CB, SCB).
// Each forward finds the input columns holding an outlier (|x| >= threshold in any row); those columns are
// multiplied in float32 against the dequantized weight columns, everything else in int8 with row-wise
// absmax scaling of the input and an exact integer accumulation.

import { defineOp, noGrad, type Tensor, tensor } from "@tsgrad/tensor";
import { Linear, type LinearLike } from "../layers/linear.js";
import { Module } from "../module.js";
import { Parameter } from "../parameter.js";
import { int8VectorwiseDequant, int8VectorwiseQuant, roundHalfEven } from "./functional.js";

const f = Math.fround;
/** 1 / (127 * 127) as a float32, bitsandbytes' int8_mm_dequant constant. */
const MM_DEQUANT = f(6.200124e-5);

export class Linear8bitLt extends Module implements LinearLike {
  bias: Parameter | null;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** @internal int8 weight [out, in] */
  _CB: Int8Array;
  /** @internal per-row absmax [out] */
  _SCB: Float32Array;
  /** 0 disables the outlier decomposition. */
  threshold: number;

  constructor(
    CB: Int8Array,
    SCB: Float32Array,
    shape: readonly [number, number],
    bias: Tensor | null,
    threshold = 6.0,
  ) {
    super();
    const [O, I] = shape;
    if (CB.length !== O * I || SCB.length !== O)
      throw new RangeError(
        `Linear8bitLt: CB has ${CB.length} values and SCB ${SCB.length}; expected ${O * I} and ${O} for [${O}, ${I}]`,
      );
    this.outFeatures = O;
    this.inFeatures = I;
    this._CB = CB;
    this._SCB = SCB;
    this.threshold = threshold;
    this.bias = bias ? new Parameter(bias.dtype === "float32" ? bias : bias.to("float32"), false) : null;
  }

  static fromWeight(
    weight: ArrayLike<number>,
    shape: readonly [number, number],
    bias: Tensor | null,
    threshold = 6.0,
  ): Linear8bitLt {
    const { CB, SCB } = int8VectorwiseQuant(weight, shape[0], shape[1]);
    return new Linear8bitLt(CB, SCB, shape, bias, threshold);
  }

  /** Quantizes a Linear (any other module kind is an error). */
  static fromLinear(linear: Module, threshold = 6.0): Linear8bitLt {
    if (!(linear instanceof Linear))
      throw new TypeError(
        `Linear8bitLt.fromLinear: only a Linear can be quantized to 8 bits, got ${linear.constructor.name}`,
      );
    return Linear8bitLt.fromWeight(
      linear.weight.dataSync(),
      [linear.outFeatures, linear.inFeatures],
      linear.bias?.detach() ?? null,
      threshold,
    );
  }

  dequantize(): Tensor {
    return tensor(int8VectorwiseDequant(this._CB, this._SCB, this.inFeatures), {
      shape: [this.outFeatures, this.inFeatures],
      dtype: "float32",
    });
  }
  denseWeight(): Tensor {
    return this.dequantize();
  }
  toLinear(): Linear {
    const lin = new Linear(this.inFeatures, this.outFeatures, { bias: this.bias !== null, init: "zeros" });
    noGrad(() => {
      lin.weight.assign(this.dequantize());
      if (this.bias && lin.bias) lin.bias.assign(this.bias);
    });
    // The base stays frozen, as the quantized weight was.
    lin.weight.requiresGrad = false;
    if (lin.bias) lin.bias.requiresGrad = this.bias?.requiresGrad ?? false;
    return lin;
  }
  weightBytes(): number {
    return this._CB.byteLength + this._SCB.byteLength;
  }

  /** The input columns computed in float32 for x [N, I] (values as float32). */
  outlierColumns(x: ArrayLike<number>, N: number): number[] {
    const I = this.inFeatures;
    if (this.threshold <= 0) return [];
    const cols: number[] = [];
    for (let j = 0; j < I; j++) {
      for (let r = 0; r < N; r++) {
        if (Math.abs(x[r * I + j]!) >= this.threshold) {
          cols.push(j);
          break;
        }
      }
    }
    return cols;
  }

  /** y = int8 part + float32 outlier part (no bias), x [N, I] row-major float32. */
  private matmul(x: Float32Array, N: number): Float32Array {
    const I = this.inFeatures;
    const O = this.outFeatures;
    const CB = this._CB;
    const SCB = this._SCB;
    const outliers = this.outlierColumns(x, N);
    const isOut = new Uint8Array(I);
    for (const j of outliers) isOut[j] = 1;
    const CA = new Int8Array(N * I);
    const SCA = new Float32Array(N);
    for (let r = 0; r < N; r++) {
      let m = 0;
      for (let j = 0; j < I; j++) if (!isOut[j]) m = Math.max(m, Math.abs(x[r * I + j]!));
      SCA[r] = m;
      if (m === 0) continue;
      const s = f(127 / m);
      for (let j = 0; j < I; j++) if (!isOut[j]) CA[r * I + j] = roundHalfEven(f(x[r * I + j]! * s));
    }
    const y = new Float32Array(N * O);
    const k = f(1 / 127);
    for (let r = 0; r < N; r++) {
      for (let o = 0; o < O; o++) {
        let acc = 0; // exact: |sum| <= I * 127 * 127
        for (let j = 0; j < I; j++) acc += CA[r * I + j]! * CB[o * I + j]!;
        let v = f(f(acc * f(SCA[r]! * SCB[o]!)) * MM_DEQUANT);
        if (outliers.length > 0) {
          let out = 0;
          for (const j of outliers) out += x[r * I + j]! * f(f(CB[o * I + j]! * SCB[o]!) * k);
          v = f(v + f(out));
        }
        y[r * O + o] = v;
      }
    }
    return y;
  }

  forward(x: Tensor): Tensor {
    const I = this.inFeatures;
    const O = this.outFeatures;
    if (x.shape[x.ndim - 1] !== I)
      throw new RangeError(`Linear8bitLt: expected input [..., ${I}], got [${x.shape.join(", ")}]`);
    const lead = x.shape.slice(0, -1);
    const bias = this.bias;
    const op = defineOp<Tensor[]>({
      name: "linear8bitlt",
      forward: (xin, b) => {
        const x32 = xin!.dtype === "float32" ? xin! : xin!.to("float32");
        const data = x32.contiguous().dataSync() as Float32Array;
        const N = data.length / I;
        let y = tensor(this.matmul(data, N), { shape: [N, O], dtype: "float32" });
        if (b) y = y.add(b);
        if (x.dtype !== "float32") y = y.to(x.dtype);
        return y.reshape([...lead, O]);
      },
      backward: (dy, { needs }) => {
        // MatMul8bitLt's input gradient: dy against the dequantized int8 weight.
        const dy2 = dy.reshape([-1, O]);
        const dx = needs[0] ? dy2.to("float32").matmul(this.dequantize()).reshape(x.shape).to(x.dtype) : null;
        const db = needs[1] ? dy2.sum(0).to(bias!.dtype) : null;
        return bias ? [dx, db] : [dx];
      },
    });
    return bias ? op(x, bias) : op(x);
  }
}
