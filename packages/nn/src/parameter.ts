// Parameter: a Tensor that a Module owns. It is a leaf that requires grad by default, survives tidy()
// scopes, and can take new data in place (optimizer updates, checkpoint loading) with assign().

import { isFloat, noGrad, Tensor } from "@tsgrad/tensor";

function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** True when t owns a row-major buffer holding exactly its elements (so its storage can be adopted). */
function ownsDenseStorage(t: Tensor): boolean {
  return t.isContiguous && t.offset === 0 && t._store.storage.size === t.numel;
}

export class Parameter extends Tensor {
  /** Bumped by every assign(), so holders of derived data (caches, optimizers) can notice a change. */
  version = 0;

  /**
   * Wraps the data of `t` (copied first unless t owns a dense buffer). Floating-point parameters
   * require grad unless `requiresGrad` is false; integer ones (packed weights) never do.
   * @example const w = new Parameter(randn([out, inF]).mul(0.02));
   */
  constructor(t: Tensor, requiresGrad = true) {
    const dense = ownsDenseStorage(t) ? t : noGrad(() => t.clone());
    super(dense._store, dense.shape, dense.dtype);
    if (dense !== t) dense.dispose();
    this._kept = true;
    this.requiresGrad = requiresGrad && isFloat(this.dtype);
  }

  /**
   * Replaces the data with `value` (same shape; cast to this parameter's dtype). The graph and the
   * gradient are untouched; other tensors that shared the old data keep it.
   * @example noGrad(() => p.assign(p.sub(p.grad!.mul(lr))));
   */
  assign(value: Tensor): this {
    if (value.shape.length !== this.shape.length || value.shape.some((d, i) => d !== this.shape[i])) {
      throw new RangeError(
        `Parameter.assign: expected shape ${fmt(this.shape)}, got ${fmt(value.shape)} (a parameter keeps its shape)`,
      );
    }
    if (value.device !== this.device) {
      throw new Error(
        `Parameter.assign: the value lives on "${value.device}" but the parameter on "${this.device}"; move it with toDevice()`,
      );
    }
    const dense = noGrad(() => {
      const v = value.dtype === this.dtype ? value : value.to(this.dtype);
      return ownsDenseStorage(v) ? v : v.clone();
    });
    const old = this._store;
    dense._store.retain();
    this._store = dense._store;
    old.release();
    if (dense !== value) dense.dispose();
    this.version++;
    return this;
  }
}
