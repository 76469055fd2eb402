// Linear, Embedding and Dropout: the leaf layers. Linear keeps Hugging Face's weight layout [out, in]
// and computes y = x W^T + b, so checkpoints load with no transposes (style guide 3.7).

import { type DType, dropout, embedding, type Tensor, where, zeros } from "@tsgrad/tensor";
import { Module } from "../module.js";
import { Parameter } from "../parameter.js";
import { initNormal, initUniform } from "./init.js";

/** What adapters and quantized layers rely on (style guide 3.9): a Linear, a QuantizedLinear, a LoraLinear. */
export interface LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  forward(x: Tensor): Tensor;
  /** The effective weight [out, in] as a dense float tensor. */
  denseWeight(): Tensor;
}

/** A module usable wherever a Linear is: model code types its projections this way so adapters can swap in. */
export type LinearModule = Module & LinearLike;

export function isLinearLike(m: unknown): m is LinearModule {
  return (
    m instanceof Module &&
    typeof (m as Partial<LinearLike>).inFeatures === "number" &&
    typeof (m as Partial<LinearLike>).outFeatures === "number" &&
    typeof (m as Partial<LinearLike>).denseWeight === "function"
  );
}

export interface LayerOptions {
  dtype?: DType;
  /** "default": torch's initialization; "zeros": allocate only (the weights will be loaded). */
  init?: "default" | "zeros";
}

export class Linear extends Module implements LinearLike {
  weight: Parameter; // [out, in]
  bias: Parameter | null; // [out]

  /**
   * @example const proj = new Linear(32, 64, { bias: false }); const y = proj.forward(x); // [..., 32] -> [..., 64]
   */
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: LayerOptions & { bias?: boolean } = {},
  ) {
    super();
    const { bias = true, dtype = "float32", init = "default" } = options;
    // NOTE: torch's default, kaiming_uniform(a=sqrt(5)), is U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    const bound = 1 / Math.sqrt(inFeatures);
    const make = (shape: number[]) =>
      new Parameter(init === "zeros" ? zeros(shape, { dtype }) : initUniform(shape, bound, dtype));
    this.weight = make([outFeatures, inFeatures]);
    this.bias = bias ? make([outFeatures]) : null;
  }

  forward(x: Tensor): Tensor {
    const lead = x.shape.slice(0, -1);
    const x2 = x.reshape([-1, this.inFeatures]); // [N, in]
    let y = x2.matmul(this.weight.mT); // [N, in] x [in, out] -> [N, out]
    if (this.bias) y = y.add(this.bias);
    return y.reshape([...lead, this.outFeatures]);
  }

  denseWeight(): Tensor {
    return this.weight;
  }
}

export class Embedding extends Module {
  weight: Parameter; // [num_embeddings, embedding_dim]

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    options: LayerOptions & { paddingIdx?: number | null } = {},
  ) {
    super();
    const { dtype = "float32", init = "default" } = options;
    const shape = [numEmbeddings, embeddingDim];
    // torch.nn.Embedding initializes N(0, 1); models re-initialize with their initializer_range.
    this.weight = new Parameter(init === "zeros" ? zeros(shape, { dtype }) : initNormal(shape, 1, dtype));
    this.paddingIdx = options.paddingIdx ?? null;
  }

  /** torch's padding_idx: lookups of this id get no gradient, so its row is never trained. */
  readonly paddingIdx: number | null;

  /** ids [...] (int32) -> [..., embedding_dim] */
  forward(ids: Tensor): Tensor {
    const out = embedding(ids, this.weight);
    if (this.paddingIdx === null || !out.requiresGrad) return out;
    return where(ids.eq(this.paddingIdx).unsqueeze(-1), out.detach(), out);
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
  }
  /** Inverted dropout while training (scaled by 1/(1-p)); the identity in eval mode. */
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }
}
