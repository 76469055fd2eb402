// A module whose children are named at run time: PEFT keeps one lora_A, lora_B, ... per adapter name in a
// ModuleDict, which is how the adapter name ends up in parameter paths (q_proj.lora_A.default.weight).

import { Module } from "@tsgrad/nn";

export class ModuleDict<M extends Module = Module> extends Module {
  get(name: string): M | undefined {
    const m = (this as unknown as Record<string, unknown>)[name];
    return m instanceof Module ? (m as M) : undefined;
  }
  set(name: string, module: M): void {
    if (!/^[A-Za-z0-9][\w-]*$/.test(name) || name === "training") {
      throw new RangeError(
        `adapter name ${JSON.stringify(name)} is not allowed; use letters, digits, "_" and "-"`,
      );
    }
    (this as unknown as Record<string, unknown>)[name] = module;
  }
  delete(name: string): void {
    delete (this as unknown as Record<string, unknown>)[name];
  }
  keys(): string[] {
    return [...this.children()].filter((c) => c.value instanceof Module).map((c) => c.key);
  }
}
