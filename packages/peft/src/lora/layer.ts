// LoRA and DoRA on a Linear (trl-peft-spec 1.2-1.5, 1.9, 2): y = base(x) + s * B(A(dropout(x))), with
// s = alpha/r (or alpha/sqrt(r) for rsLoRA); DoRA rescales each output row by m / ||W + s B A||.

import {
  Dropout,
  initNormal,
  initUniform,
  isQuantizedLinear,
  Linear,
  type LinearModule,
  Module,
  Parameter,
} from "@tsgrad/nn";
import { type DType, fusedKernelsEnabled, noGrad, type Tensor } from "@tsgrad/tensor";
import type { AdapterLayer } from "../adapter-layer.js";
import { ModuleDict } from "../module-dict.js";
import { loraLinear } from "./fused.js";

/** DoRA's per-output-row magnitude; saved as "<layer>.lora_magnitude_vector" (spec 5.3). */
export class LoraMagnitude extends Module {
  weight: Parameter;
  constructor(m: Tensor) {
    super();
    this.weight = new Parameter(m);
  }
}

export interface LoraAdapterSettings {
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  use_rslora: boolean;
  use_dora: boolean;
  lora_bias: boolean;
  init_lora_weights: boolean | "gaussian";
}

/** Adapters train in float32 (PEFT's autocast_adapter_dtype); a float64 base keeps float64 for gradchecks. */
function adapterDType(base: LinearModule): DType {
  return base.denseWeight().dtype === "float64" ? "float64" : "float32";
}

/** Row norms ||W||_2 along dim 1: [O, I] -> [O]. */
function rowNorm(w: Tensor): Tensor {
  return w.square().sum(1).sqrt();
}

export class LoraLinear extends Module implements AdapterLayer {
  base_layer: LinearModule;
  lora_dropout = new ModuleDict<Dropout>();
  lora_A = new ModuleDict<Linear>();
  lora_B = new ModuleDict<Linear>();
  lora_magnitude_vector = new ModuleDict<LoraMagnitude>();
  private _scaling = new Map<string, number>();
  private _active: string[] = [];
  private _disabled = false;
  private _merged: string[] = [];
  /** DoRA: the detached ||W + dW|| at merge time, which unmerge needs. */
  private _mergeNorm = new Map<string, Tensor>();

  constructor(base: LinearModule, adapterName: string, settings: LoraAdapterSettings) {
    super();
    this.base_layer = base;
    this.addAdapter(adapterName, settings);
    this._active = [adapterName];
  }

  get inFeatures(): number {
    return this.base_layer.inFeatures;
  }
  get outFeatures(): number {
    return this.base_layer.outFeatures;
  }
  get merged(): boolean {
    return this._merged.length > 0;
  }
  get activeAdapters(): readonly string[] {
    return this._active;
  }
  scaling(name: string): number {
    const s = this._scaling.get(name);
    if (s === undefined)
      throw new Error(`LoraLinear: no adapter named "${name}"; have ${this.adapterNames().join(", ")}`);
    return s;
  }

  /** Creates adapter `name`: A [r, in] kaiming-uniform (or N(0, 1/r) for "gaussian"), B [out, r] zeros. */
  addAdapter(name: string, cfg: LoraAdapterSettings): void {
    if (this.lora_A.get(name)) throw new Error(`LoraLinear: adapter "${name}" already exists`);
    const { r } = cfg;
    const I = this.inFeatures;
    const O = this.outFeatures;
    const dtype = adapterDType(this.base_layer);
    const A = new Linear(I, r, { bias: false, dtype, init: "zeros" });
    const B = new Linear(r, O, { bias: cfg.lora_bias, dtype, init: "zeros" });
    if (cfg.init_lora_weights === true) {
      A.weight.assign(initUniform([r, I], 1 / Math.sqrt(I), dtype)); // kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(I), 1/sqrt(I))
    } else if (cfg.init_lora_weights === "gaussian") {
      A.weight.assign(initNormal([r, I], 1 / r, dtype));
    } else {
      // NOTE: init_lora_weights=false leaves both at nn.Linear's default init: the adapter is not a no-op (debug only).
      A.weight.assign(initUniform([r, I], 1 / Math.sqrt(I), dtype));
      B.weight.assign(initUniform([O, r], 1 / Math.sqrt(r), dtype));
    }
    this.lora_A.set(name, A);
    this.lora_B.set(name, B);
    this.lora_dropout.set(name, new Dropout(cfg.lora_dropout));
    const s = cfg.use_rslora ? cfg.lora_alpha / Math.sqrt(r) : cfg.lora_alpha / r;
    this._scaling.set(name, s);
    if (cfg.use_dora) {
      // m = ||W + s B A||_row, which is ||W||_row while B is zero (spec 2).
      const m = noGrad(() => rowNorm(this.baseWeight(dtype).add(this.deltaWeight(name))));
      this.lora_magnitude_vector.set(name, new LoraMagnitude(m));
    }
  }

  adapterNames(): string[] {
    return this.lora_A.keys();
  }

  setActiveAdapters(names: readonly string[]): void {
    this._active = names.filter((n) => this.lora_A.get(n) !== undefined);
  }

  setDisabled(disabled: boolean): void {
    this._disabled = disabled;
  }

  deleteAdapter(name: string): void {
    if (this._merged.includes(name))
      throw new Error(`LoraLinear: unmerge adapter "${name}" before deleting it`);
    for (const d of [this.lora_A, this.lora_B, this.lora_dropout, this.lora_magnitude_vector]) d.delete(name);
    this._scaling.delete(name);
    this._active = this._active.filter((n) => n !== name);
  }

  private baseWeight(dtype: DType): Tensor {
    return noGrad(() => this.base_layer.denseWeight().detach().to(dtype));
  }

  private baseBias(): Tensor | null {
    return (this.base_layer as unknown as { bias?: Tensor | null }).bias ?? null;
  }

  /** s * B A, shape [out, in] (spec 1.9 get_delta_weight). */
  deltaWeight(name: string): Tensor {
    const A = this.lora_A.get(name)!;
    const B = this.lora_B.get(name)!;
    return B.weight.matmul(A.weight).mul(this.scaling(name));
  }

  forward(x: Tensor): Tensor {
    if (this._disabled || this._merged.length > 0 || this._active.length === 0)
      return this.base_layer.forward(x);
    const fused = this.fusedForward(x);
    if (fused) return fused;
    let result = this.base_layer.forward(x);
    for (const name of this._active) {
      const A = this.lora_A.get(name)!;
      const B = this.lora_B.get(name)!;
      const drop = this.lora_dropout.get(name)!;
      const xa = x.dtype === A.weight.dtype ? x : x.to(A.weight.dtype);
      const mag = this.lora_magnitude_vector.get(name);
      const update = mag
        ? this.doraUpdate(name, xa, result, A, B, drop, mag)
        : B.forward(A.forward(drop.forward(xa))).mul(this.scaling(name));
      result = result.add(update.to(result.dtype));
    }
    return result;
  }

  /**
   * The single plain adapter on a dense float Linear as one op (fused.ts), when fused kernels are on:
   * null where the composition must run (DoRA, lora_bias, a quantized or trainable base, mixed dtypes,
   * several active adapters). Dropout draws the same mask as the composition, which applies it to the A
   * path only.
   */
  private fusedForward(x: Tensor): Tensor | null {
    if (!fusedKernelsEnabled() || this._active.length !== 1) return null;
    const name = this._active[0]!;
    const base = this.base_layer;
    const B = this.lora_B.get(name)!;
    if (
      !(base instanceof Linear) ||
      base.weight.requiresGrad ||
      B.bias ||
      this.lora_magnitude_vector.get(name)
    )
      return null;
    const A = this.lora_A.get(name)!.weight;
    const W = base.weight;
    const dt = x.dtype;
    if (dt !== "float32" && dt !== "float64") return null;
    if (W.dtype !== dt || A.dtype !== dt || B.weight.dtype !== dt || (base.bias && base.bias.dtype !== dt))
      return null;
    const x2 = x.reshape([-1, this.inFeatures]);
    const xd = this.lora_dropout.get(name)!.forward(x2);
    const y = loraLinear(x2, xd, W, A, B.weight, base.bias, this.scaling(name));
    return y.reshape([...x.shape.slice(0, -1), this.outFeatures]);
  }

  /**
   * DoRA's addition to the base result (spec 2): (scale - 1) * base + scale * s * B(A(x)), with
   * scale = m / ||W + s B A||_row. NOTE: the norm is detached (DoRA paper section 4.3), so only m, A and B learn.
   */
  private doraUpdate(
    name: string,
    x: Tensor,
    result: Tensor,
    A: Linear,
    B: Linear,
    drop: Dropout,
    mag: LoraMagnitude,
  ): Tensor {
    const s = this.scaling(name);
    const W = this.baseWeight(x.dtype); // [O, I]
    const norm = noGrad(() => rowNorm(W.add(this.deltaWeight(name).detach()))); // [O]
    const scale = mag.weight.div(norm); // [O]
    let base: Tensor;
    let xl = x;
    if (drop.p === 0 || !drop.training) {
      const bias = this.baseBias();
      base = bias ? result.to(x.dtype).sub(bias.detach().to(x.dtype)) : result.to(x.dtype);
    } else {
      xl = drop.forward(x);
      base = xl.matmul(W.mT); // the base path on the dropped input, without bias
    }
    const lora = xl.matmul(A.weight.mT).matmul(B.weight.mT).mul(s); // [..., O]
    return scale.sub(1).mul(base).add(scale.mul(lora));
  }

  /**
   * Replaces a 4-bit/8-bit base by its dequantized full-precision Linear (spec 1.9, 11.1: merging into a
   * quantized base would re-quantize and add rounding error). Returns whether it did.
   */
  dequantizeBase(): boolean {
    const base = this.base_layer;
    if (!isQuantizedLinear(base)) return false;
    this.base_layer = base.toLinear();
    return true;
  }

  /**
   * Folds the adapters into the base weight: W + s B A, or DoRA's diag(m / ||W + s B A||)(W + s B A). A
   * quantized base is dequantized first and stays in full precision (with a warning).
   */
  merge(names: readonly string[] = this._active): void {
    const kind = this.base_layer.constructor.name;
    if (this.dequantizeBase())
      console.warn(
        `LoraLinear: merging into a quantized ${kind} base: the base was dequantized and the merged layer is full precision (float32)`,
      );
    const weight = this.mergeableWeight();
    noGrad(() => {
      for (const name of names) {
        if (this._merged.includes(name)) {
          console.warn(`LoraLinear: adapter "${name}" is already merged`);
          continue;
        }
        const delta = this.deltaWeight(name).to(weight.dtype);
        let w = weight.add(delta);
        const mag = this.lora_magnitude_vector.get(name);
        if (mag) {
          const norm = rowNorm(w);
          this._mergeNorm.set(name, norm.keep());
          w = w.mul(mag.weight.to(w.dtype).div(norm).unsqueeze(1));
        }
        const B = this.lora_B.get(name)!;
        const bias = this.baseBias();
        if (B.bias && bias instanceof Parameter)
          bias.assign(bias.add(B.bias.mul(this.scaling(name)).to(bias.dtype)));
        weight.assign(w);
        this._merged.push(name);
      }
    });
  }

  unmerge(): void {
    const weight = this.mergeableWeight();
    noGrad(() => {
      while (this._merged.length > 0) {
        const name = this._merged.pop()!;
        const delta = this.deltaWeight(name).to(weight.dtype);
        let w: Tensor = weight;
        const mag = this.lora_magnitude_vector.get(name);
        if (mag) {
          w = w.div(mag.weight.to(w.dtype).div(this._mergeNorm.get(name)!).unsqueeze(1));
          this._mergeNorm.delete(name);
        }
        const B = this.lora_B.get(name)!;
        const bias = this.baseBias();
        if (B.bias && bias instanceof Parameter)
          bias.assign(bias.sub(B.bias.mul(this.scaling(name)).to(bias.dtype)));
        weight.assign(w.sub(delta));
      }
    });
  }

  private mergeableWeight(): Parameter {
    const w = (this.base_layer as unknown as { weight?: unknown }).weight;
    if (!(w instanceof Parameter) || (w.dtype !== "float32" && w.dtype !== "float64")) {
      throw new Error(
        `LoraLinear: cannot merge into a ${this.base_layer.constructor.name} base; merging needs a float weight (dequantize the base first)`,
      );
    }
    return w;
  }

  denseWeight(): Tensor {
    return noGrad(() => {
      if (this._disabled || this.merged) return this.base_layer.denseWeight();
      let w = this.base_layer.denseWeight();
      for (const name of this._active) {
        let merged = w.add(this.deltaWeight(name).to(w.dtype));
        const mag = this.lora_magnitude_vector.get(name);
        if (mag) merged = merged.mul(mag.weight.to(w.dtype).div(rowNorm(merged)).unsqueeze(1));
        w = merged;
      }
      return w;
    });
  }
}
