// fp32 square matmul GFLOP/s: tsgrad's wasm backend (1 and 2 threads), tsgrad's plain TypeScript backend
// (small sizes), TensorFlow.js wasm and PyTorch, all measured in one run (one process tree) and written to
// benchmarks/RESULTS.md with the ratios to PyTorch from the same run.
//   npm run bench                      (all sizes: 256, 512, 1024, 2048)
//   npm run bench -- --sizes 256,512 --out /tmp/r.md
// PyTorch runs as /usr/bin/python3 with OPENBLAS_CORETYPE=SkylakeX. Debian's python3-torch links the
// reference BLAS unless an OpenBLAS libblas.so.3 comes first on LD_LIBRARY_PATH: the directory is taken from
// TSGRAD_BENCH_OPENBLAS, else from a cache that `apt-get download libopenblas0-openmp` + `dpkg -x` fills
// (the system's BLAS alternative is never changed). If torch still ends up on the reference BLAS, it is
// reported but not compared.

import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Backend,
  createCpuBackend,
  createWasmBackend,
  type GemmTile,
  randn,
  registerBackend,
} from "@tsgrad/tensor";
import { argOpt, openblasDir, waitQuiet } from "./common.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => argOpt(args, name, dflt);
const SIZES = opt("--sizes", "256,512,1024,2048").split(",").map(Number);
const TS_SIZES = SIZES.filter((n) => n <= 512);
const TRIALS = Number(opt("--trials", "5"));
const MIN_SECONDS = Number(opt("--min-seconds", "0.25"));
const OUT = opt("--out", path.join(here, "RESULTS.md"));
const QUIET_MAX_S = Number(opt("--quiet-max", "60"));
const PASSES = Number(opt("--passes", "2"));

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const log = (s: string): void => console.error(`[bench] ${s}`);

// ---- tsgrad ----

function benchTsgrad(device: string, sizes: number[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const n of sizes) {
    const a = randn([n, n], { device });
    const b = randn([n, n], { device });
    const once = (): void => a.matmul(b).dispose();
    once();
    once();
    let t0 = performance.now();
    once();
    const one = (performance.now() - t0) / 1e3;
    const iters = Math.max(1, Math.ceil(MIN_SECONDS / one));
    const ts: number[] = [];
    for (let t = 0; t < TRIALS; t++) {
      t0 = performance.now();
      for (let i = 0; i < iters; i++) once();
      ts.push((performance.now() - t0) / 1e3 / iters);
    }
    a.dispose();
    b.dispose();
    out[n] = (2 * n ** 3) / median(ts) / 1e9;
    log(`${device} ${n}: ${out[n]!.toFixed(1)} GFLOP/s`);
  }
  return out;
}

// ---- PyTorch ----

interface TorchResult {
  torch: string;
  blas_info: string[];
  blas_libs: string[];
  probe_512_1t: number;
  results: Record<string, Record<string, number>>;
}

function benchTorch(blasDir: string | null): { res: TorchResult | null; env: string; error?: string } {
  const env: Record<string, string> = { OPENBLAS_CORETYPE: "SkylakeX" };
  if (blasDir) env.LD_LIBRARY_PATH = blasDir;
  const envText = Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  const r = spawnSync(
    "/usr/bin/python3",
    [path.join(here, "torch-matmul.py"), SIZES.join(","), "1,2", String(TRIALS), String(MIN_SECONDS)],
    { env: { ...process.env, ...env }, encoding: "utf8" },
  );
  if (r.status !== 0) return { res: null, env: envText, error: (r.stderr || String(r.error)).slice(-500) };
  return { res: JSON.parse(r.stdout.trim().split("\n").at(-1)!) as TorchResult, env: envText };
}

/** Why torch must not be compared (reference BLAS), or null when it is on an optimized BLAS. */
function referenceBlasReason(t: TorchResult): string | null {
  const optimized = t.blas_libs.some((l) => /openblas|mkl/i.test(l));
  if (!optimized)
    return `no OpenBLAS/MKL library is mapped (BLAS libraries: ${t.blas_libs.join(", ") || "none"})`;
  if (t.probe_512_1t < 30)
    return `512^3 on one thread runs at ${t.probe_512_1t.toFixed(1)} GFLOP/s, the speed of the reference BLAS`;
  return null;
}

// ---- tfjs ----

function benchTfjs(): { res: Record<number, number>; info: string; error?: string } {
  const r = spawnSync(
    process.execPath,
    [path.join(here, "tfjs-matmul.cjs"), SIZES.join(","), String(TRIALS), String(MIN_SECONDS)],
    { encoding: "utf8", cwd: here },
  );
  if (r.status !== 0) return { res: {}, info: "", error: (r.stderr || String(r.error)).slice(-500) };
  const res: Record<number, number> = {};
  let info = "";
  for (const line of r.stdout.trim().split("\n")) {
    const j = JSON.parse(line) as {
      n: number;
      gflops: number;
      simd: boolean;
      multithread: boolean;
      tfjs: string;
    };
    res[j.n] = j.gflops;
    info = `tfjs-core ${j.tfjs}, SIMD ${j.simd}, multithread ${j.multithread}`;
    log(`tfjs-wasm ${j.n}: ${j.gflops.toFixed(1)} GFLOP/s`);
  }
  return { res, info };
}

// ---- run ----

async function main(): Promise<void> {
  const started = new Date();
  const cpuModel =
    execFileSync("lscpu", { encoding: "utf8" })
      .split("\n")
      .find((l) => l.startsWith("Model name"))
      ?.split(":")[1]
      ?.trim() ?? "unknown";
  const cores = os.availableParallelism();
  const quiet: Record<string, number> = {};

  const wasm1 = createWasmBackend({ name: "wasm-1t", threads: 1 });
  const wasm2 = createWasmBackend({ name: "wasm-2t", threads: 2 });
  // the 4 x 8 mul + add tile, which runs where the runtime lacks relaxed SIMD (or with TSGRAD_WASM_FMA=0)
  const mulAdd = createWasmBackend({ name: "wasm-1t-mul-add", threads: 1, fma: false });
  const plain: Backend = createCpuBackend("cpu-bench");
  for (const b of [wasm1, wasm2, mulAdd, plain]) registerBackend(b);
  const tileName = (t: GemmTile): string => `${t.mr} x 8 ${t.fma ? "FMA" : "mul + add"} tile`;
  if (!(await wasm2.startThreads())) throw new Error("the wasm backend's worker thread did not start");

  // Every block runs PASSES times, interleaved; each cell keeps its best pass (the machine is shared, and
  // other load only ever slows a block down). The same rule applies to every method, PyTorch included.
  const best = (into: Record<number, number>, r: Record<number, number>): void => {
    for (const [k, v] of Object.entries(r)) into[Number(k)] = Math.max(into[Number(k)] ?? 0, v);
  };
  const w1: Record<number, number> = {};
  const w2: Record<number, number> = {};
  const wm: Record<number, number> = {};
  const ts: Record<number, number> = {};
  const tfjsRes: Record<number, number> = {};
  const t1: Record<number, number> = {};
  const t2: Record<number, number> = {};
  let torch: ReturnType<typeof benchTorch> = { res: null, env: "", error: "not run" };
  let tfjs: ReturnType<typeof benchTfjs> = { res: {}, info: "", error: "not run" };
  const blasDir = openblasDir();
  const idle = (name: string): void => {
    const v = waitQuiet(QUIET_MAX_S);
    quiet[name] = Math.min(quiet[name] ?? 100, v);
    log(`${name} (idle ${v}%)`);
  };
  for (let pass = 0; pass < PASSES; pass++) {
    idle("torch");
    torch = benchTorch(blasDir);
    if (torch.res) {
      best(
        t1,
        Object.fromEntries(Object.entries(torch.res.results["1"] ?? {}).map(([k, v]) => [Number(k), v])),
      );
      best(
        t2,
        Object.fromEntries(Object.entries(torch.res.results["2"] ?? {}).map(([k, v]) => [Number(k), v])),
      );
    }
    idle("wasm1");
    best(w1, benchTsgrad("wasm-1t", SIZES));
    idle("wasm2");
    best(w2, benchTsgrad("wasm-2t", SIZES));
    idle("wasm1-mul-add");
    best(wm, benchTsgrad("wasm-1t-mul-add", SIZES));
    idle("ts");
    best(ts, benchTsgrad("cpu-bench", TS_SIZES));
    idle("tfjs");
    tfjs = benchTfjs();
    best(tfjsRes, tfjs.res);
  }
  wasm2.stopThreads();

  const reason = torch.res ? referenceBlasReason(torch.res) : (torch.error ?? "failed");
  const f = (x: number | undefined): string => (x === undefined ? "—" : x.toFixed(1));
  const ratio = (x: number | undefined, t: number | undefined): string =>
    x === undefined || t === undefined || reason !== null ? "—" : `${(x / t).toFixed(2)}×`;
  const row = (name: string, th: number, r: Record<number, number>): string =>
    `| ${name} | ${th} | ${SIZES.map((n) => f(r[n])).join(" | ")} |`;
  const torchLabel =
    reason === null ? "PyTorch (OpenBLAS, SkylakeX kernels)" : "PyTorch (NOT COMPARED, see below)";

  const md = `# Benchmark results: fp32 square matmul

Generated by \`benchmarks/matmul.ts\`. Do not edit by hand; re-run the command below.
Training-step results (LoRA and full fine-tuning of the reference config): [RESULTS-step.md](RESULTS-step.md),
from \`npm run bench:step\`.

- **Date:** ${started.toISOString()}
- **Machine:** ${cpuModel}, ${cores} cores (\`os.availableParallelism()\`), ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}
- **Command:** \`${["npm run bench", ...(args.length ? ["--", ...args] : [])].join(" ")}\` (from the repository root)
- **Method:** GFLOP/s = 2n³ / time. A pass measures each figure as the median of ${TRIALS} trials after 3
  warm-up calls, each trial repeating the call for at least ${MIN_SECONDS} s. The blocks ran in ${PASSES} interleaved
  passes and each cell shows its best pass, for every method alike (the machine is shared). tsgrad is measured through the public API
  (\`a.matmul(b)\` on \`randn\` tensors, output allocated and disposed each call). All blocks run in this one
  process tree, one after the other; each first waits up to ${QUIET_MAX_S} s for the machine to be ≥ 90% idle
  (lowest idle seen before each block: ${Object.entries(quiet)
    .map(([k, v]) => `${k} ${v}%`)
    .join(", ")}).
- **PyTorch:** ${torch.res ? `torch ${torch.res.torch} (${torch.res.blas_info.map((l) => /BLAS_INFO=\w+/.exec(l)?.[0] ?? "").join(" ")}); BLAS libraries mapped: ${torch.res.blas_libs.join(", ")}; env \`${torch.env}\`` : `failed to run: ${torch.error}`}
- **tfjs:** ${tfjs.error ? `failed: ${tfjs.error}` : `${tfjs.info} (tfjs-wasm cannot use threads in Node, so it has no 2-thread row)`}

${
  Math.min(...Object.values(quiet)) < 90
    ? `> **The machine was busy during this run** (lowest idle before a block: ${Math.min(...Object.values(quiet))}%). Other
> processes shared the two cores, so the figures (2-thread ones most of all, PyTorch's included) understate
> what an idle machine gives; the ratios compare runs under similar, not equal, load.

`
    : ""
}## GFLOP/s

| method | threads | ${SIZES.join(" | ")} |
|---|---|${SIZES.map(() => "---|").join("")}
${row(`tsgrad wasm (WebAssembly SIMD, ${tileName(wasm1.tile)})`, 1, w1)}
${row(`tsgrad wasm (WebAssembly SIMD, ${tileName(wasm2.tile)})`, 2, w2)}
${row(`tsgrad wasm (${tileName(mulAdd.tile)}, without relaxed SIMD)`, 1, wm)}
${row("tsgrad plain TypeScript (cpu)", 1, ts)}
${row("tfjs-wasm 4.22 (XNNPACK)", 1, tfjsRes)}
${row(torchLabel, 1, t1)}
${row(torchLabel, 2, t2)}

## Ratios to PyTorch (same run, same thread count)

${
  reason === null
    ? `| method | threads | ${SIZES.join(" | ")} |
|---|---|${SIZES.map(() => "---|").join("")}
| tsgrad wasm | 1 | ${SIZES.map((n) => ratio(w1[n], t1[n])).join(" | ")} |
| tsgrad wasm | 2 | ${SIZES.map((n) => ratio(w2[n], t2[n])).join(" | ")} |
| tsgrad wasm, mul + add tile | 1 | ${SIZES.map((n) => ratio(wm[n], t1[n])).join(" | ")} |
| tsgrad plain TS | 1 | ${SIZES.map((n) => ratio(ts[n], t1[n])).join(" | ")} |
| tfjs-wasm | 1 | ${SIZES.map((n) => ratio(tfjsRes[n], t1[n])).join(" | ")} |`
    : `Not compared: PyTorch is on the reference BLAS (${reason}). Its figures above are not a meaningful
baseline; set TSGRAD_BENCH_OPENBLAS to a directory holding OpenBLAS's libblas.so.3.`
}

Targets for tsgrad wasm at n = 1024: ≥ 60 GFLOP/s on one thread (measured ${f(w1[1024])}), ≥ 110 on two
(measured ${f(w2[1024])}). WebAssembly SIMD is 128 bits wide; the measured 128-bit ceiling of this core is about
67 GFLOP/s (\`/work/shared/reference/cpu-anchors.md\`), while PyTorch uses 512-bit AVX-512 kernels.
The FMA tile uses WebAssembly relaxed SIMD's fused multiply-add, on by default in Node 22 and turned on
by the backend on Node 20 (\`packages/tensor/README.md\`); the mul + add tile is what runs without it.
`;
  writeFileSync(OUT, md);
  log(`wrote ${OUT}`);
  console.log(readFileSync(OUT, "utf8"));
  process.exit(0);
}

await main();
