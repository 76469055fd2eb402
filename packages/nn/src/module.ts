// Module: a tree of parameters whose field names are the checkpoint keys (style guide 3.7, after MLX
// Module and tinygrad get_state_dict). Own enumerable fields holding a Parameter, a Module or an array
// of Modules form the tree; fields whose names start with "_" (caches, config) are never walked.

import type { Tensor } from "@tsgrad/tensor";
import { Parameter } from "./parameter.js";

function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

export interface LoadStateDictOptions {
  /** Throw on missing or unexpected keys (default true). Shape mismatches always throw. */
  strict?: boolean;
}

export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

type Child = { key: string; value: Parameter | Module };

export abstract class Module {
  /** Dropout and similar layers read this; train() and eval() set it on the whole tree. */
  training = true;

  /** The direct children: parameters and modules, arrays flattened to "name.i". */
  *children(): Iterable<Child> {
    for (const [key, value] of Object.entries(this)) {
      if (key.startsWith("_")) continue;
      if (value instanceof Parameter || value instanceof Module) yield { key, value };
      else if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const v: unknown = value[i];
          if (v instanceof Module || v instanceof Parameter) yield { key: `${key}.${i}`, value: v };
        }
      }
    }
  }

  /**
   * Every parameter with its dotted path, depth first in field order, each once (the first path wins if
   * one is reachable twice).
   * @example for (const [name, p] of model.namedParameters()) console.log(name, p.shape);
   */
  *namedParameters(prefix = ""): Iterable<[string, Parameter]> {
    const seen = new Set<Parameter | Module>([this]);
    const stack: [string, Parameter | Module][] = this.childEntries(prefix).reverse();
    while (stack.length > 0) {
      const [path, value] = stack.pop()!;
      if (seen.has(value)) continue;
      seen.add(value);
      if (value instanceof Parameter) yield [path, value];
      else stack.push(...value.childEntries(path).reverse());
    }
  }

  private childEntries(path: string): [string, Parameter | Module][] {
    return [...this.children()].map(({ key, value }) => [path === "" ? key : `${path}.${key}`, value]);
  }

  parameters(): Parameter[] {
    return [...this.namedParameters()].map(([, p]) => p);
  }

  /** This module ("" or `prefix`) and every descendant, depth first, with their paths. */
  *namedModules(prefix = ""): Iterable<[string, Module]> {
    const seen = new Set<Module>();
    const stack: [string, Module][] = [[prefix, this]];
    while (stack.length > 0) {
      const [path, m] = stack.pop()!;
      if (seen.has(m)) continue;
      seen.add(m);
      yield [path, m];
      const kids = [...m.children()].filter((c) => c.value instanceof Module).reverse();
      for (const { key, value } of kids) stack.push([path === "" ? key : `${path}.${key}`, value as Module]);
    }
  }

  /** Parameters with requiresGrad, by name: what an optimizer updates and an adapter file holds. */
  trainableParameters(): Map<string, Parameter> {
    return new Map([...this.namedParameters()].filter(([, p]) => p.requiresGrad));
  }

  numParameters(options: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const [, p] of this.namedParameters()) if (!options.trainableOnly || p.requiresGrad) n += p.numel;
    return n;
  }

  /** Sets requiresGrad = false on every parameter (or those whose name is in `keys`). */
  freeze(options: { keys?: readonly string[] } = {}): this {
    return this.setRequiresGrad(false, options.keys);
  }
  unfreeze(options: { keys?: readonly string[] } = {}): this {
    return this.setRequiresGrad(true, options.keys);
  }
  private setRequiresGrad(flag: boolean, keys?: readonly string[]): this {
    for (const [name, p] of this.namedParameters()) if (!keys || keys.includes(name)) p.requiresGrad = flag;
    return this;
  }

  /** Drops (and frees) every parameter's gradient, like torch's zero_grad(set_to_none=True). */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** The parameters by name (the model's own tensors, not copies). */
  stateDict(): Map<string, Tensor> {
    return new Map<string, Tensor>(this.namedParameters());
  }

  /**
   * Copies tensors into the parameters of the same name, checking shapes. Missing, unexpected and
   * mis-shaped keys are all listed in one error.
   * @example model.loadStateDict(other.stateDict());
   */
  loadStateDict(
    dict: Map<string, Tensor> | Record<string, Tensor>,
    options: LoadStateDictOptions = {},
  ): LoadStateDictResult {
    const { strict = true } = options;
    const entries = dict instanceof Map ? dict : new Map(Object.entries(dict));
    const params = new Map(this.namedParameters());
    const missingKeys = [...params.keys()].filter((k) => !entries.has(k));
    const unexpectedKeys = [...entries.keys()].filter((k) => !params.has(k));
    const misShaped: string[] = [];
    for (const [k, t] of entries) {
      const p = params.get(k);
      if (p && (p.ndim !== t.ndim || p.shape.some((d, i) => d !== t.shape[i])))
        misShaped.push(`${k}: got ${fmt(t.shape)}, expected ${fmt(p.shape)}`);
    }
    const problems: string[] = [];
    if (misShaped.length > 0) problems.push(`mis-shaped keys: ${misShaped.join("; ")}`);
    if (strict && missingKeys.length > 0) problems.push(`missing keys: ${missingKeys.join(", ")}`);
    if (strict && unexpectedKeys.length > 0) problems.push(`unexpected keys: ${unexpectedKeys.join(", ")}`);
    if (problems.length > 0)
      throw new Error(`loadStateDict (${this.constructor.name}): ${problems.join("\n  ")}`);
    for (const [k, t] of entries) params.get(k)?.assign(t);
    return { missingKeys, unexpectedKeys };
  }

  /** The module at a dotted path ("model.layers.3.self_attn"); "" is this module. */
  getSubmodule(path: string): Module {
    if (path === "") return this;
    let cur: unknown = this;
    for (const seg of path.split(".")) {
      const next: unknown =
        cur !== null && typeof cur === "object" ? (cur as Record<string, unknown>)[seg] : undefined;
      if (next === undefined || seg.startsWith("_") || !(next instanceof Module || Array.isArray(next)))
        throw new Error(
          `getSubmodule: no module at "${path}" (stopped at "${seg}") in ${this.constructor.name}`,
        );
      cur = next;
    }
    if (!(cur instanceof Module)) throw new Error(`getSubmodule: "${path}" is not a module`);
    return cur;
  }

  /**
   * Replaces the child module at a dotted path, as PEFT's _replace_module does with setattr.
   * @example model.setSubmodule("model.layers.0.self_attn.q_proj", new LoraLinear(old, cfg));
   */
  setSubmodule(path: string, module: Module): void {
    const cut = path.lastIndexOf(".");
    const parentPath = cut < 0 ? "" : path.slice(0, cut);
    const last = path.slice(cut + 1);
    let parent: unknown;
    if (cut >= 0 && /^\d+$/.test(last)) {
      // The child sits in an array field: "model.layers.3".
      const arrCut = parentPath.lastIndexOf(".");
      const owner = this.getSubmodule(arrCut < 0 ? "" : parentPath.slice(0, arrCut));
      parent = (owner as unknown as Record<string, unknown>)[parentPath.slice(arrCut + 1)];
    } else parent = this.getSubmodule(parentPath);
    const holder = parent as Record<string, unknown>;
    if (!(holder[last] instanceof Module))
      throw new Error(`setSubmodule: "${path}" does not name an existing module in ${this.constructor.name}`);
    holder[last] = module;
  }
}
