// modules_to_save (trl-peft-spec 1.8): a frozen original plus one trainable deep copy per adapter. The
// copy's parameters live under "<key>.modules_to_save.<adapter>." and are saved as "<key>.".

import { Module, Parameter } from "@tsgrad/nn";
import { noGrad, type Tensor } from "@tsgrad/tensor";
import { ModuleDict } from "./module-dict.js";

/** A deep copy of a module tree with fresh parameter storage; other fields are shared. */
export function cloneModule<M extends Module>(m: M): M {
  const copy = Object.create(Object.getPrototypeOf(m)) as Record<string, unknown>;
  const cloneValue = (v: unknown): unknown => {
    if (v instanceof Parameter)
      return new Parameter(
        noGrad(() => v.detach().clone()),
        v.requiresGrad,
      );
    if (v instanceof Module) return cloneModule(v);
    if (Array.isArray(v)) return v.map(cloneValue);
    return v;
  };
  for (const [k, v] of Object.entries(m)) copy[k] = cloneValue(v);
  return copy as M;
}

type AnyForward = (...args: unknown[]) => unknown;

export class ModulesToSaveWrapper extends Module {
  original_module: Module;
  modules_to_save = new ModuleDict();
  private _active: string | null = null;
  private _disabled = false;

  constructor(original: Module, adapterName: string) {
    super();
    this.original_module = original;
    this.addAdapter(adapterName);
  }

  addAdapter(name: string): void {
    const copy = cloneModule(this.original_module);
    for (const p of copy.parameters()) p.requiresGrad = true;
    this.modules_to_save.set(name, copy);
    this._active ??= name;
  }

  setActiveAdapter(name: string): void {
    if (this.modules_to_save.get(name)) this._active = name;
  }
  setDisabled(disabled: boolean): void {
    this._disabled = disabled;
  }
  get activeAdapter(): string | null {
    return this._active;
  }

  /** The module forward uses: the active copy, or the original when disabled or absent. */
  current(): Module {
    if (this._disabled || this._active === null) return this.original_module;
    return this.modules_to_save.get(this._active) ?? this.original_module;
  }

  forward(...args: unknown[]): unknown {
    const m = this.current() as unknown as { forward?: AnyForward };
    if (typeof m.forward !== "function")
      throw new Error(`modules_to_save: ${this.original_module.constructor.name} has no forward`);
    return m.forward.apply(m, args);
  }

  // Delegated so the wrapper stands in for a Linear (lm_head) or an Embedding (tied weights).
  get weight(): Tensor {
    return (this.current() as unknown as { weight: Tensor }).weight;
  }
  get inFeatures(): number | undefined {
    return (this.current() as unknown as { inFeatures?: number }).inFeatures;
  }
  get outFeatures(): number | undefined {
    return (this.current() as unknown as { outFeatures?: number }).outFeatures;
  }
  denseWeight(): Tensor {
    const m = this.current() as unknown as { denseWeight?: () => Tensor; weight: Tensor };
    return m.denseWeight ? m.denseWeight() : m.weight;
  }
}
