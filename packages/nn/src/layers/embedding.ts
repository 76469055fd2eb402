// Embedding: a lookup table [num_embeddings, dim] whose gradient scatter-adds into the looked-up rows,
// with torch's padding_idx (that row gets no gradient from lookups).

import { embedding, type Tensor, where, zeros } from "@tsgrad/tensor";
import { Module } from "../module.js";
import { Parameter } from "../parameter.js";
import { initNormal } from "./init.js";
import type { LayerOptions } from "./linear.js";

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
