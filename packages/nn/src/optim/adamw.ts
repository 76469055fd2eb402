// AdamW with decoupled weight decay, as torch.optim.AdamW (Loshchilov & Hutter 2019, Algorithm 2), the
// optimizer transformers' Trainer uses. State is keyed by parameter name so checkpoints are name-stable.

import { adamwUpdate, keep, noGrad, type Tensor, tidy, zerosLike } from "@tsgrad/tensor";
import type { Parameter } from "../parameter.js";

export interface AdamWOptions {
  /** Learning rate (torch default 1e-3); a scheduler overwrites `lr` between steps. */
  lr?: number;
  betas?: [number, number];
  eps?: number;
  /** Decoupled decay, applied as p *= 1 - lr * weight_decay before the Adam update (torch default 0.01). */
  weight_decay?: number;
  /** Parameters for which this returns false get no weight decay (default: every parameter decays). */
  decay?: (name: string, p: Parameter) => boolean;
}

interface ParamState {
  step: number;
  exp_avg: Tensor;
  exp_avg_sq: Tensor;
}

/** What stateDict() returns: the moment tensors by "<param>.exp_avg" / "<param>.exp_avg_sq", and the rest as JSON. */
export interface AdamWStateDict {
  tensors: Map<string, Tensor>;
  meta: {
    steps: Record<string, number>;
    lr: number;
    betas: [number, number];
    eps: number;
    weight_decay: number;
  };
}

export class AdamW {
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weight_decay: number;
  readonly params: Map<string, Parameter>;
  private readonly decays: Map<string, boolean>;
  private readonly state = new Map<string, ParamState>();

  /**
   * @example const opt = new AdamW(model.trainableParameters(), { lr: 2e-4, weight_decay: 0 });
   *          loss.backward(); opt.step(); opt.zeroGrad();
   */
  constructor(params: Map<string, Parameter> | Iterable<[string, Parameter]>, options: AdamWOptions = {}) {
    this.params = new Map(params);
    this.lr = options.lr ?? 1e-3;
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weight_decay = options.weight_decay ?? 1e-2;
    const [b1, b2] = this.betas;
    if (!(this.lr >= 0)) throw new RangeError(`AdamW: invalid learning rate ${this.lr}`);
    if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1))
      throw new RangeError(`AdamW: betas must be in [0, 1), got [${b1}, ${b2}]`);
    if (!(this.eps >= 0)) throw new RangeError(`AdamW: invalid eps ${this.eps}`);
    if (!(this.weight_decay >= 0)) throw new RangeError(`AdamW: invalid weight_decay ${this.weight_decay}`);
    const decay = options.decay ?? (() => true);
    this.decays = new Map([...this.params].map(([n, p]) => [n, decay(n, p)]));
  }

  /** One update of every parameter that has a gradient; parameters without one are skipped (as in torch). */
  step(): void {
    const [b1, b2] = this.betas;
    for (const [name, p] of this.params) {
      const g = p.grad;
      if (!g) continue;
      let s = this.state.get(name);
      if (!s) {
        const dtype = p.dtype === "float64" ? "float64" : "float32";
        s = {
          step: 0,
          exp_avg: keep(zerosLike(p, { dtype })),
          exp_avg_sq: keep(zerosLike(p, { dtype })),
        };
        this.state.set(name, s);
      }
      s.step++;
      const lr = this.lr;
      const wd = this.decays.get(name) ? this.weight_decay : 0;
      const bc1 = 1 - b1 ** s.step;
      const bc2Sqrt = Math.sqrt(1 - b2 ** s.step);
      const st = s;
      // decoupled decay w (1 - lr wd), m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
      // w -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps): one fused pass where the backend has it
      const attrs = { lr, beta1: b1, beta2: b2, eps: this.eps, weight_decay: wd, bc1, bc2Sqrt };
      const [next, m, v] = tidy(() =>
        noGrad(() =>
          adamwUpdate(p.to(st.exp_avg.dtype), g.to(st.exp_avg.dtype), st.exp_avg, st.exp_avg_sq, attrs),
        ),
      );
      st.exp_avg.dispose();
      st.exp_avg_sq.dispose();
      st.exp_avg = keep(m!);
      st.exp_avg_sq = keep(v!);
      p.assign(next!);
      next!.dispose();
    }
  }

  /** Drops every gradient (torch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const p of this.params.values()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** The moments and step counts, by parameter name (tensors are the optimizer's own, not copies). */
  stateDict(): AdamWStateDict {
    const tensors = new Map<string, Tensor>();
    const steps: Record<string, number> = {};
    for (const [name, s] of this.state) {
      tensors.set(`${name}.exp_avg`, s.exp_avg);
      tensors.set(`${name}.exp_avg_sq`, s.exp_avg_sq);
      steps[name] = s.step;
    }
    return {
      tensors,
      meta: { steps, lr: this.lr, betas: this.betas, eps: this.eps, weight_decay: this.weight_decay },
    };
  }

  /** Restores a stateDict(); every named parameter must exist here with the moments' shape. */
  loadStateDict(sd: AdamWStateDict): void {
    const problems: string[] = [];
    for (const [name, step] of Object.entries(sd.meta.steps)) {
      const p = this.params.get(name);
      const m = sd.tensors.get(`${name}.exp_avg`);
      const v = sd.tensors.get(`${name}.exp_avg_sq`);
      if (!p) problems.push(`"${name}" is not a parameter of this optimizer`);
      else if (!m || !v) problems.push(`"${name}" has no exp_avg / exp_avg_sq tensors`);
      else if (m.shape.join() !== p.shape.join() || v.shape.join() !== p.shape.join())
        problems.push(`"${name}": moments have shape [${m.shape}], the parameter [${p.shape}]`);
      else if (!Number.isInteger(step) || step < 1) problems.push(`"${name}": bad step count ${step}`);
    }
    if (problems.length > 0) throw new Error(`AdamW.loadStateDict: ${problems.join("; ")}`);
    for (const s of this.state.values()) {
      s.exp_avg.dispose();
      s.exp_avg_sq.dispose();
    }
    this.state.clear();
    for (const [name, step] of Object.entries(sd.meta.steps)) {
      const dtype = this.params.get(name)!.dtype === "float64" ? "float64" : "float32";
      const copy = (t: Tensor) => keep(noGrad(() => t.to(dtype).clone()));
      this.state.set(name, {
        step,
        exp_avg: copy(sd.tensors.get(`${name}.exp_avg`)!),
        exp_avg_sq: copy(sd.tensors.get(`${name}.exp_avg_sq`)!),
      });
    }
    this.lr = sd.meta.lr;
  }
}
