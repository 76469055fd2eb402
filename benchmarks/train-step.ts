// Training-step benchmark of the reference config (hidden 256, 4 layers, GQA 4/2 heads, intermediate 688,
// vocab 4096, batch 8 x 128, LoRA rank 8 / alpha 16 on all seven projections): the LoRA step and the full
// fine-tuning step (forward, cross-entropy, backward, AdamW, zero grad) for tsgrad (1 and 2 threads), PyTorch
// (1 and 2 threads, OpenBLAS with SkylakeX kernels) and TensorFlow.js wasm (its plain and XNNPACK-linear
// variants, 1 thread), all in one run; writes benchmarks/RESULTS-step.md with the ratios to PyTorch.
//   npm run bench:step
//   npm run bench:step -- --steps 5 --warmup 2 --out /tmp/r.md
// Before timing, PyTorch exports its initial weights and token ids (torch-train-step.py --export) and tsgrad
// loads them, so both compute the same step: tsgrad's step-0 loss must equal PyTorch's within 1e-4.
// Each tsgrad thread count runs in its own child process (TSGRAD_NUM_THREADS; train-step-child.ts):
//   tsx benchmarks/train-step.ts --child --mode lora --weights PREFIX --steps N --warmup W [--profile]

import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { argOpt, openblasDir, waitQuiet } from "./common.js";
import {
  ALPHA,
  BATCH,
  CEILING,
  type ChildResult,
  child,
  HEADS,
  HIDDEN,
  INTER,
  KV_HEADS,
  LAYERS,
  LOSS_TOL,
  RANK,
  SEQ,
  TOK,
  VOCAB,
} from "./train-step-child.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => argOpt(args, name, dflt);
const log = (s: string): void => console.error(`[bench:step] ${s}`);
// ---------------- orchestrator ----------------

const jsonLines = <T>(s: string): T[] =>
  s
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as T);

interface Row {
  ms: number;
  tps: number;
}

async function main(): Promise<void> {
  const started = new Date();
  const steps = opt("--steps", "5");
  const warmup = opt("--warmup", "2");
  // tfjs's idiomatic variant takes many seconds per step, so it gets fewer steps by default
  const tfSteps = opt("--tfjs-steps", "3");
  const tfWarmup = opt("--tfjs-warmup", "1");
  const torchSteps = opt("--torch-steps", "10");
  const passes = Number(opt("--passes", "2"));
  const out = opt("--out", path.join(here, "RESULTS-step.md"));
  const quietMax = Number(opt("--quiet-max", "60"));
  const modes = ["lora", "full"];
  const cpuModel =
    execFileSync("lscpu", { encoding: "utf8" })
      .split("\n")
      .find((l) => l.startsWith("Model name"))
      ?.split(":")[1]
      ?.trim() ?? "unknown";
  const quiet: Record<string, number> = {};
  const idle = (name: string): void => {
    const v = waitQuiet(quietMax);
    quiet[name] = Math.min(quiet[name] ?? 100, v);
    log(`${name} (idle ${v}%)`);
  };

  // PyTorch environment: OpenBLAS with SkylakeX kernels, exactly as benchmarks/matmul.ts sets it up.
  const blasDir = openblasDir();
  const torchEnv: Record<string, string> = { OPENBLAS_CORETYPE: "SkylakeX" };
  if (blasDir) torchEnv.LD_LIBRARY_PATH = blasDir;
  const envText = Object.entries(torchEnv)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  const torchScript = path.join(here, "torch-train-step.py");
  const py = (extra: string[]): string => {
    const r = spawnSync("/usr/bin/python3", [torchScript, ...extra], {
      env: { ...process.env, ...torchEnv },
      encoding: "utf8",
      maxBuffer: 1 << 26,
    });
    if (r.status !== 0)
      throw new Error(`torch-train-step.py failed: ${(r.stderr || String(r.error)).slice(-800)}`);
    return r.stdout;
  };

  // 1. same weights and inputs: PyTorch exports them and its step-0 loss
  const dir = mkdtempSync(path.join(os.tmpdir(), "tsgrad-step-"));
  const prefix = path.join(dir, "w");
  const exported = jsonLines<{ export: string; loss0: number }>(py(["--export", prefix]));
  const torchLoss0 = Object.fromEntries(exported.map((e) => [e.export, e.loss0]));
  log(`torch step-0 losses ${JSON.stringify(torchLoss0)}`);

  // 2. tsgrad (1 and 2 threads, each in a child process) and PyTorch (1 and 2 threads), in interleaved
  // passes: the machine is shared, so each cell keeps its best pass, for every method alike.
  const ts: Record<string, ChildResult> = {};
  const torch: Record<string, Row & { loss: number; gflop: number }> = {};
  let probe: { probe_512_1t: number; blas: string[]; torch: string } | null = null;
  for (let pass = 0; pass < passes; pass++) {
    for (const th of [1, 2]) {
      for (const mode of modes) {
        idle(`tsgrad ${th}t`);
        const r = spawnSync(
          process.execPath,
          [
            ...process.execArgv,
            fileURLToPath(import.meta.url),
            "--child",
            "--mode",
            mode,
            "--weights",
            prefix,
            "--steps",
            steps,
            "--warmup",
            warmup,
          ],
          {
            env: { ...process.env, TSGRAD_NUM_THREADS: String(th) },
            encoding: "utf8",
            stdio: ["ignore", "pipe", "inherit"],
          },
        );
        if (r.status !== 0) throw new Error(`tsgrad child (${mode}, ${th} threads) failed`);
        const res = jsonLines<ChildResult>(r.stdout).at(-1)!;
        const key = `${mode}/${th}`;
        if (!ts[key] || res.ms_per_step < ts[key].ms_per_step) ts[key] = res;
      }
    }
    idle("torch");
    const torchLines = jsonLines<Record<string, unknown>>(
      py(["--threads", "1", "2", "--mode", ...modes, "--steps", torchSteps, "--warmup", "3"]),
    );
    probe = torchLines[0] as { probe_512_1t: number; blas: string[]; torch: string };
    for (const l of torchLines.slice(1) as {
      mode: string;
      threads: number;
      ms_per_step: number;
      tokens_per_s: number;
      loss: number;
      gflop_per_step: number;
    }[]) {
      const key = `${l.mode}/${l.threads}`;
      if (!torch[key] || l.ms_per_step < torch[key].ms)
        torch[key] = { ms: l.ms_per_step, tps: l.tokens_per_s, loss: l.loss, gflop: l.gflop_per_step };
    }
  }
  const lossDiff: Record<string, number> = {};
  for (const mode of modes) {
    const d = Math.abs(ts[`${mode}/1`]!.losses[0]! - torchLoss0[mode]!);
    lossDiff[mode] = d;
    log(
      `${mode}: tsgrad step-0 loss ${ts[`${mode}/1`]!.losses[0]} vs torch ${torchLoss0[mode]} (|d| ${d.toExponential(2)})`,
    );
    if (!(d <= LOSS_TOL))
      throw new Error(`${mode}: tsgrad's step-0 loss differs from PyTorch's by ${d} (> ${LOSS_TOL})`);
  }
  const refReason = !probe!.blas.some((l) => /openblas|mkl/i.test(l))
    ? `no OpenBLAS/MKL library is mapped (${probe!.blas.join(", ") || "none"})`
    : probe!.probe_512_1t < 30
      ? `512^3 on one thread runs at ${probe!.probe_512_1t.toFixed(1)} GFLOP/s, the reference BLAS's speed`
      : null;

  // 4. tfjs-wasm, plain and XNNPACK-linear variants (1 thread: tfjs-wasm has no threads in Node)
  const tf: Record<string, Row> = {};
  let tfInfo = "";
  for (const linear of ["plain", "xnn"]) {
    idle(`tfjs ${linear}`);
    const r = spawnSync(
      process.execPath,
      [
        path.join(here, "tfjs-train-step.mjs"),
        "--backend",
        "wasm",
        "--mode",
        ...modes,
        "--linear",
        linear,
        "--steps",
        tfSteps,
        "--warmup",
        tfWarmup,
      ],
      { encoding: "utf8", cwd: here, maxBuffer: 1 << 26 },
    );
    if (r.status !== 0) {
      log(`tfjs ${linear} failed: ${(r.stderr || String(r.error)).slice(-800)}`);
      continue;
    }
    for (const l of jsonLines<{
      mode: string;
      ms_per_step: number;
      tokens_per_s: number;
      tfjs: string;
      wasm_simd: boolean;
      wasm_threads: boolean;
    }>(r.stdout)) {
      tf[`${l.mode}/${linear}`] = { ms: l.ms_per_step, tps: l.tokens_per_s };
      tfInfo = `tfjs-core ${l.tfjs}, wasm SIMD ${l.wasm_simd}, threads ${l.wasm_threads}`;
      log(`tfjs ${linear} ${l.mode}: ${l.ms_per_step} ms/step`);
    }
  }

  // 5. report
  const f0 = (x: number | undefined): string => (x === undefined ? "—" : x.toFixed(0));
  const ratio = (tps: number | undefined, ref: number | undefined): string =>
    tps === undefined || ref === undefined || refReason !== null ? "—" : `${(tps / ref).toFixed(3)}×`;
  const rows: string[] = [];
  for (const mode of modes) {
    for (const th of [1, 2]) {
      const t = ts[`${mode}/${th}`]!;
      const ref = torch[`${mode}/${th}`];
      rows.push(
        `| ${mode} | tsgrad (${t.backend} backend) | ${th} | ${f0(t.ms_per_step)} | ${f0(t.tokens_per_s)} | ${ratio(t.tokens_per_s, ref?.tps)} |`,
      );
    }
    for (const th of [1, 2]) {
      const ref = torch[`${mode}/${th}`];
      rows.push(
        `| ${mode} | PyTorch ${probe!.torch} (OpenBLAS SkylakeX) | ${th} | ${f0(ref?.ms)} | ${f0(ref?.tps)} | ${refReason === null ? "1×" : "—"} |`,
      );
    }
    for (const linear of ["plain", "xnn"]) {
      const r = tf[`${mode}/${linear}`];
      rows.push(
        `| ${mode} | tfjs-wasm, ${linear === "plain" ? "idiomatic (tf.matMul gradients)" : "fast path (XNNPACK-only linears)"} | 1 | ${f0(r?.ms)} | ${f0(r?.tps)} | ${ratio(r?.tps, torch[`${mode}/1`]?.tps)} |`,
      );
    }
  }
  const target = (mode: string, th: number, goal: number): string => {
    const t = ts[`${mode}/${th}`]!;
    const ref = torch[`${mode}/${th}`];
    if (!ref || refReason !== null) return "not compared";
    const r = t.tokens_per_s / ref.tps;
    return `${r.toFixed(3)}× (${r >= goal ? "met" : "not met"})`;
  };
  const minIdle = Math.min(...Object.values(quiet));
  const md = `# Benchmark results: training step (reference config)

Generated by \`benchmarks/train-step.ts\`. Do not edit by hand; re-run the command below.

- **Date:** ${started.toISOString()}
- **Machine:** ${cpuModel}, ${os.availableParallelism()} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}
- **Command:** \`${["npm run bench:step", ...(args.length ? ["--", ...args] : [])].join(" ")}\` (from the repository root)
- **Config:** Llama, hidden ${HIDDEN}, ${LAYERS} layers, ${HEADS} heads / ${KV_HEADS} KV heads (GQA), intermediate ${INTER},
  vocab ${VOCAB}, batch ${BATCH} × ${SEQ} = ${TOK} tokens, fp32. LoRA: rank ${RANK}, alpha ${ALPHA}, on q, k, v, o, gate, up
  and down; base frozen. Full: every parameter trainable. One step = forward, mean cross-entropy, backward,
  AdamW (lr 1e-4, weight decay 0.01), zero grad.
- **Method:** ms/step is the median of the timed steps after warm-up steps (tsgrad ${steps} after ${warmup},
  each thread count in its own child process with \`TSGRAD_NUM_THREADS\`; PyTorch ${torchSteps} after 3; tfjs
  ${tfSteps} after ${tfWarmup}). tsgrad and PyTorch ran in ${passes} interleaved passes and each of their cells
  is its best pass, for both alike (the machine is shared; tfjs ran once). tokens/s = ${TOK} / (ms/step). Ratio = tokens/s ÷ PyTorch's tokens/s at the same
  thread count in this run (tfjs against PyTorch's 1 thread). Each block first waited up to ${quietMax} s for the
  machine to be ≥ 90% idle (lowest idle seen: ${Object.entries(quiet)
    .map(([k, v]) => `${k} ${v}%`)
    .join(", ")}).
- **Same computation:** PyTorch (\`benchmarks/torch-train-step.py --export\`) wrote its initial weights and
  token ids and tsgrad loaded them. Step-0 loss, tsgrad vs PyTorch: ${modes
    .map(
      (m) =>
        `${m} ${ts[`${m}/1`]!.losses[0]!.toFixed(6)} vs ${torchLoss0[m]!.toFixed(6)} (|Δ| ${lossDiff[m]!.toExponential(1)})`,
    )
    .join("; ")}; the run refuses to report if |Δ| > ${LOSS_TOL}.
- **PyTorch:** torch ${probe!.torch}; BLAS mapped: ${probe!.blas.join(", ")}; 512³ probe ${probe!.probe_512_1t.toFixed(0)} GFLOP/s on 1 thread; env \`${envText}\`.${refReason === null ? "" : ` **Not compared: ${refReason}.**`}
- **tfjs:** ${tfInfo || "failed"}. The idiomatic variant uses tf.matMul and tfjs's own gradients; the fast path
  transposes explicitly so every linear matMul, forward and backward, takes XNNPACK (attention unchanged).
  tfjs-wasm cannot use threads in Node, so it has only 1-thread rows.

${
  minIdle < 90
    ? `> **The machine was busy during this run** (lowest idle before a block: ${minIdle}%). The figures (2-thread
> ones most of all) understate what an idle machine gives.

`
    : ""
}## ms/step, tokens/s and ratio to PyTorch

| mode | method | threads | ms/step | tokens/s | ÷ PyTorch (same threads) |
|---|---|---|---|---|---|
${rows.join("\n")}

## Where tsgrad's time goes

| mode | threads | ms/step | matmul ms | matmul GFLOP/step | matmul GFLOP/s | rest ms | target ms/step | matmul ms at the SIMD ceiling | left for the rest |
|---|---|---|---|---|---|---|---|---|---|
${modes
  .flatMap((mode) =>
    [1, 2].map((th) => {
      const t = ts[`${mode}/${th}`]!;
      const ref = torch[`${mode}/${th}`];
      const goal = mode === "lora" ? 0.4 : 0.33;
      const budget = ref ? ref.ms / goal : undefined;
      const floor = (t.matmul_gflop / (CEILING * th)) * 1e3;
      return `| ${mode} | ${th} | ${f0(t.ms_per_step)} | ${f0(t.matmul_ms)} | ${t.matmul_gflop.toFixed(1)} | ${(t.matmul_gflop / (t.matmul_ms / 1e3)).toFixed(1)} | ${f0(t.ms_per_step - t.matmul_ms)} | ${f0(budget)} | ${f0(floor)} | ${budget === undefined ? "—" : f0(budget - floor)} |`;
    }),
  )
  .join("\n")}

matmul ms is the time inside the matmul kernels (median over the timed steps; staging copies included),
with the fused LoRA op's in-place products and causal attention's, whose GFLOP count only the
multiply-adds they do (causal attention skips what the mask cancels, so a step needs fewer), rest ms everything else (the other kernels, autograd, allocation). Target ms/step is PyTorch's ms/step in
this run divided by the target ratio. WebAssembly SIMD is 128-bit, and 128 bits of multiply-add issue at
most ${CEILING} GFLOP/s per core on this CPU (\`../shared/reference/cpu-anchors.md\`, measured with \`peak.c\`;
FMA does not raise it). At that ceiling, ${CEILING} GFLOP/s per thread, the step's matmuls alone would take the
"ceiling" column, which leaves the last column for everything else. PyTorch itself spends a quarter to a
third of its step outside GEMM (cpu-anchors.md: GEMM is 63-75% of its step).

## Targets

- LoRA step ≥ 0.4× PyTorch's throughput: 1 thread ${target("lora", 1, 0.4)}, 2 threads ${target("lora", 2, 0.4)}.
- Full fine-tuning step ≥ 0.33×: 1 thread ${target("full", 1, 0.33)}, 2 threads ${target("full", 2, 0.33)}.
`;
  writeFileSync(out, md);
  log(`wrote ${out}`);
  console.log(readFileSync(out, "utf8"));
  process.exit(0);
}

if (args.includes("--child")) await child(args);
else await main();
