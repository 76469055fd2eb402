// Dropout as a module: active while training, the identity after eval().

import { dropout, type Tensor } from "@tsgrad/tensor";
import { Module } from "../module.js";

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
  }
  /** Inverted dropout while training (scaled by 1/(1-p)); the identity in eval mode. */
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }
}
