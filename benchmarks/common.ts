// Helpers the benchmark programs share: waiting for an idle machine, and finding OpenBLAS for PyTorch.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** The value after flag `name` in `args` (`--out FILE`), or `dflt`. */
export function argOpt(args: readonly string[], name: string, dflt: string): string {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
}

/** The median (the mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[n >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/** Waits (at most maxS seconds) until the machine is at least 90% idle over one second; returns idle %. */
export function waitQuiet(maxS: number): number {
  const sample = (): [number, number] => {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    return [f[3]!, f.slice(0, 8).reduce((a, b) => a + b, 0)];
  };
  let idlePct = 0;
  for (let t = 0; t < maxS; t++) {
    const [i0, t0] = sample();
    const until = Date.now() + 1000;
    while (Date.now() < until)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, until - Date.now());
    const [i1, t1] = sample();
    idlePct = (100 * (i1 - i0)) / Math.max(1, t1 - t0);
    if (idlePct >= 90) break;
  }
  return Math.round(idlePct);
}

/**
 * The directory holding OpenBLAS's libblas.so.3 for PyTorch (Debian's torch otherwise runs on the
 * reference BLAS): TSGRAD_BENCH_OPENBLAS, or Debian's libopenblas0-openmp unpacked into a cache.
 */
export function openblasDir(): string | null {
  const fromEnv = process.env.TSGRAD_BENCH_OPENBLAS;
  if (fromEnv) return fromEnv;
  const cache = path.join(os.homedir(), ".cache", "tsgrad-bench-openblas");
  const lib = path.join(cache, "root/usr/lib/x86_64-linux-gnu/openblas-openmp");
  if (existsSync(path.join(lib, "libblas.so.3"))) return lib;
  try {
    mkdirSync(cache, { recursive: true });
    execFileSync("apt-get", ["download", "libopenblas0-openmp"], { cwd: cache, stdio: "ignore" });
    const deb = readdirSync(cache).find((f) => f.startsWith("libopenblas0-openmp") && f.endsWith(".deb"));
    if (!deb) return null;
    execFileSync("dpkg", ["-x", deb, "root"], { cwd: cache, stdio: "ignore" });
    return existsSync(path.join(lib, "libblas.so.3")) ? lib : null;
  } catch {
    return null;
  }
}
