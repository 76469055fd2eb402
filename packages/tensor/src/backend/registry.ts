// Which backend new tensors go to. A "device" is just the name of a registered backend.

import type { Backend } from "./backend.js";

const backends = new Map<string, Backend>();
let active: Backend | null = null;
let defaultFactory: (() => Backend) | null = null;

/** Set by the package entry so the registry need not import the CPU backend (keeps imports one-way). */
export function setDefaultBackendFactory(factory: () => Backend): void {
  defaultFactory = factory;
}

export function registerBackend(backend: Backend): void {
  backends.set(backend.name, backend);
}

/** Makes `backend` (or the registered backend of that name) the one new tensors are created on. */
export function setBackend(backend: Backend | string): Backend {
  if (typeof backend === "string") {
    const found = backends.get(backend) ?? (backend === "cpu" ? getCpuBackend() : undefined);
    if (!found) {
      throw new Error(
        `setBackend: no backend named "${backend}"; registered: ${[...backends.keys()].join(", ") || "none"}`,
      );
    }
    active = found;
  } else {
    registerBackend(backend);
    active = backend;
  }
  return active;
}

export function getBackend(name?: string): Backend {
  if (name !== undefined) {
    const b = name === "cpu" ? getCpuBackend() : backends.get(name);
    if (!b)
      throw new Error(
        `getBackend: no backend named "${name}"; registered: ${[...backends.keys()].join(", ")}`,
      );
    return b;
  }
  if (!active) active = getCpuBackend();
  return active;
}

/** The plain TypeScript CPU backend: the reference every other backend falls back to. */
export function getCpuBackend(): Backend {
  let cpu = backends.get("cpu");
  if (!cpu) {
    if (!defaultFactory)
      throw new Error("tsgrad: the CPU backend was not initialised (import @tsgrad/tensor, not a deep path)");
    cpu = defaultFactory();
    backends.set("cpu", cpu);
  }
  return cpu;
}

export function listBackends(): string[] {
  getCpuBackend();
  return [...backends.keys()];
}
