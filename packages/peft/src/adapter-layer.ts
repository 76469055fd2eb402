// The contract an adapter kind implements. LoraLinear is one; a researcher's new adapter is another:
// implement this interface, and getPeftModel-style injection, merging, enabling and saving work on it.

import type { LinearLike, LinearModule, Module } from "@tsgrad/nn";

export interface AdapterLayer extends LinearLike {
  /** The wrapped, frozen layer (saved keys keep it under "<module>.base_layer."). */
  readonly base_layer: LinearModule;
  /** Names of the adapters this layer holds. */
  adapterNames(): string[];
  /** Which adapters the forward applies. */
  setActiveAdapters(names: readonly string[]): void;
  /** When disabled, forward is exactly the base layer's. */
  setDisabled(disabled: boolean): void;
  /** Folds the active adapters into the base weight (forward unchanged, faster). */
  merge(names?: readonly string[]): void;
  /** Undoes merge(). */
  unmerge(): void;
  readonly merged: boolean;
  /** Removes one adapter's parameters. */
  deleteAdapter(name: string): void;
}

export function isAdapterLayer(m: Module): m is Module & AdapterLayer {
  const a = m as unknown as Partial<AdapterLayer>;
  return typeof a.adapterNames === "function" && typeof a.merge === "function" && a.base_layer !== undefined;
}
