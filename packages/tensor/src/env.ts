// The TSGRAD_* settings read from the environment, and Node's built-in modules: through globalThis, so the
// package also loads where there is no `process` (a browser), and every setting then takes its default.

/** Node's built-in module `id` (process.getBuiltinModule), or undefined outside Node. */
export function nodeBuiltin<T>(id: string): T | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  return proc?.getBuiltinModule?.(id) as T | undefined;
}

/** The environment variable `name`, or undefined where it is unset or there is no environment. */
export function envVar(name: string): string | undefined {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
}

/**
 * Bytes from the environment variable `name`, given in MiB (`fallback` when unset or empty); throws when
 * it is not a number in [0, max].
 */
export function envMiB(name: string, fallback: number, max = Number.POSITIVE_INFINITY): number {
  const env = envVar(name);
  const mb = env !== undefined && env !== "" ? Number(env) : fallback;
  if (!(mb >= 0 && mb <= max))
    throw new RangeError(
      `${name} must be a number of MiB ${max === Number.POSITIVE_INFINITY ? ">= 0" : `in [0, ${max}]`}, got ${env}`,
    );
  return mb * 1024 * 1024;
}
