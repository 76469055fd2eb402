// Deterministic lifetimes for backends whose memory is not garbage-collected (GPU buffers): tidy(fn)
// disposes every tensor created inside fn except what fn returns and what was kept (style guide 3.6,
// after tfjs engine.tidy). On CPU this only drops references, so it is always safe to use.

import type { Backend, Storage } from "./backend/backend.js";

/** A storage shared by a tensor and all its views; freed when the last of them is disposed. */
export class StorageRef {
  refs = 0;
  constructor(
    readonly backend: Backend,
    readonly storage: Storage,
  ) {}
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) this.backend.free(this.storage);
  }
}

export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
  /** @internal */ _kept: boolean;
}

const scopes: Set<Disposable>[] = [];

/** @internal Called by every Tensor constructor. */
export function trackTensor(t: Disposable): void {
  scopes[scopes.length - 1]?.add(t);
}

/** Keeps `t` alive past the enclosing tidy scopes (parameters, optimizer state, gradients). */
export function keep<T extends Disposable>(t: T): T {
  t._kept = true;
  return t;
}

function collect(value: unknown, into: Set<unknown>, depth = 0): void {
  if (value === null || typeof value !== "object" || depth > 4) return;
  if ("dispose" in value && "isDisposed" in value) {
    into.add(value);
    return;
  }
  const items = Array.isArray(value)
    ? value
    : value instanceof Map
      ? [...value.values()]
      : Object.values(value);
  for (const v of items) collect(v, into, depth + 1);
}

/**
 * Runs `fn` and disposes the tensors it created, except those reachable from its result (a tensor, or
 * arrays/objects/maps of them) and those passed to `keep`. Run backward inside the same scope as the
 * forward: the graph holds the intermediate tensors.
 * @example const loss = tidy(() => { const l = model(x).sum(); l.backward(); return l; });
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    // NOTE: nothing escapes a scope that threw, so everything it made is freed (as tfjs's tidy does)
    for (const t of scope) if (!t._kept && !t.isDisposed) t.dispose();
    throw e;
  } finally {
    scopes.pop();
  }
  if (result instanceof Promise)
    throw new Error("tidy: fn must be synchronous; await reads outside the scope");
  const survivors = new Set<unknown>();
  collect(result, survivors);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    // NOTE: kept tensors are handed to the parent scope too, which skips them while they stay kept, so
    // one that is un-kept later (a gradient that turned out to be an intermediate) is still freed there
    if (t._kept || survivors.has(t)) parent?.add(t);
    else if (!t.isDisposed) t.dispose();
  }
  return result;
}
