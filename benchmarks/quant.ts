// QLoRA benchmarks, written to benchmarks/RESULTS-quant.md:
//   1. resident bytes of the frozen base per parameter (NF4 + double quant, NF4, LLM.int8), counted from the
//      buffers the layers hold and measured as the growth of the process's ArrayBuffer memory;
//   2. one training step (forward, backward, AdamW) of LoRA on a 4-bit base vs LoRA on the float base;
//   3. peak resident memory (max RSS) of a fresh process loading a checkpoint with and without
//      quantization_config, against the checkpoint's float32 size.
//   npm run bench:quant                    (defaults below)
//   npm run bench:quant -- --layers 4 --hidden 512 --out /tmp/r.md

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  AdamW,
  AutoModelForCausalLM,
  type CausalLM,
  Linear4bit,
  type Linear4bitKernel,
  Linear8bitLt,
  LlamaConfig,
  LlamaForCausalLM,
  Qwen2Config,
  Qwen2ForCausalLM,
  quantizeModel,
} from "@tsgrad/nn";
import { getPeftModel, LoraConfig } from "@tsgrad/peft";
import * as T from "@tsgrad/tensor";
import { manualSeed, randint, tidy } from "@tsgrad/tensor";
import { argOpt } from "./common.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => argOpt(args, name, dflt);
const OUT = opt("--out", path.join(here, "RESULTS-quant.md"));

const gc = (globalThis as { gc?: () => void }).gc;
/** Full GCs with pauses between, so freed ArrayBuffer backing stores are really released. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 30));
  }
}

/** N(0, std^2) float32 values (Box-Muller), outside any tensor backend so nothing else holds them. */
function normalWeights(n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - Math.random())) * std;
    const t = 2 * Math.PI * Math.random();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

/** `count` quantized layers [O, I] of one kind; each float source is dropped as soon as it is quantized. */
function makeLayers(kind: string, O: number, I: number, count: number): (Linear4bit | Linear8bitLt)[] {
  const layers: (Linear4bit | Linear8bitLt)[] = [];
  for (let i = 0; i < count; i++) {
    const w = normalWeights(O * I, 0.02);
    layers.push(
      kind === "int8"
        ? Linear8bitLt.fromWeight(w, [O, I], null)
        : Linear4bit.fromWeight(w, [O, I], null, { quantType: "nf4", compressStatistics: kind === "nf4-dq" }),
    );
  }
  return layers;
}

/**
 * Peak RSS of this process image: VmHWM from /proc/self/status on Linux. (getrusage's maxRSS is not
 * used: on Linux it keeps the parent's RSS from before the exec of a spawned child.)
 */
function peakRssKiB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]);
  } catch {}
  return process.resourceUsage().maxRSS;
}

// ---- child process: quantize layers and report the ArrayBuffer growth ----
if (args[0] === "--child-bits") {
  const [, kind, o, i, c] = args;
  const [O, I, count] = [Number(o), Number(i), Number(c)];
  const layers = await (async () => {
    await settle();
    const base = process.memoryUsage().arrayBuffers;
    const made = makeLayers(kind!, O, I, count);
    await settle();
    return { made, grown: process.memoryUsage().arrayBuffers - base };
  })();
  const counted = layers.made.reduce((a, l) => a + l.weightBytes(), 0);
  process.stdout.write(JSON.stringify({ counted, measured: layers.grown }));
  process.exit(0);
}

// ---- child process: load a checkpoint and report max RSS ----
if (args[0] === "--child") {
  const [, mode, dir] = args;
  const before = process.memoryUsage().rss;
  const quantization_config =
    mode === "nf4"
      ? { load_in_4bit: true, bnb_4bit_quant_type: "nf4" as const, bnb_4bit_use_double_quant: true }
      : undefined;
  const t0 = performance.now();
  const model = await AutoModelForCausalLM.fromPretrained(dir!, { quantization_config });
  const ms = performance.now() - t0;
  const after = process.memoryUsage().rss;
  process.stdout.write(
    JSON.stringify({
      maxRssKiB: peakRssKiB(),
      startRss: before,
      endRss: after,
      ms,
      n: model.numParameters(),
    }),
  );
  process.exit(0);
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);
const lines: string[] = [];
const log = (s = "") => {
  console.log(s);
  lines.push(s);
};

// ---- 1. bits per parameter ----
async function bitsPerParam(): Promise<void> {
  const O = Number(opt("--bits-out", "2048"));
  const I = Number(opt("--bits-in", "2048"));
  const count = 4;
  log(`## 1. Resident bytes of the frozen base per parameter`);
  log();
  log(
    `${count} layers of [${O}, ${I}] (${((count * O * I) / 1e6).toFixed(1)} M parameters) quantized from N(0, 0.02^2) weights, float source dropped.`,
  );
  log(`"counted" = bytes of the buffers the layers hold (codes, statistics, code books; bias excluded);`);
  log(
    `"measured" = growth of process.memoryUsage().arrayBuffers in a fresh process after creating them (after GC).`,
  );
  log();
  log(`| format | bits/param counted | bits/param measured | target | spec formula |`);
  log(`|---|---|---|---|---|`);
  const kinds = [
    { name: "NF4 + double quant", kind: "nf4-dq", target: 4.2, formula: 4 + 8 / 64 + 32 / (64 * 256) },
    { name: "NF4", kind: "nf4", target: 4.6, formula: 4.5 },
    { name: "LLM.int8", kind: "int8", target: 8.3, formula: 8 + 32 / I },
  ];
  const self = fileURLToPath(import.meta.url);
  for (const k of kinds) {
    const r = spawnSync(
      process.execPath,
      [...process.execArgv, self, "--child-bits", k.kind, `${O}`, `${I}`, `${count}`],
      {
        encoding: "utf8",
      },
    );
    if (r.status !== 0) throw new Error(`child ${k.kind} failed: ${r.stderr}`);
    const { counted, measured } = JSON.parse(r.stdout) as { counted: number; measured: number };
    const n = count * O * I;
    log(
      `| ${k.name} | ${((counted * 8) / n).toFixed(4)} | ${((measured * 8) / n).toFixed(4)} | <= ${k.target} | ${k.formula.toFixed(4)} |`,
    );
  }
  log();
}

// ---- 2. step time ----
/**
 * The issue's reference config (../shared/anchors/torch_llama_lora_step.py): Llama, hidden 256, 4 layers,
 * 4 heads / 2 KV heads, intermediate 688, vocab 4096, untied head, no biases.
 */
function referenceConfig(): LlamaConfig {
  return new LlamaConfig({
    vocab_size: Number(opt("--vocab", "4096")),
    hidden_size: Number(opt("--hidden", "256")),
    intermediate_size: Number(opt("--intermediate", "688")),
    num_hidden_layers: Number(opt("--layers", "4")),
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    max_position_embeddings: 512,
    tie_word_embeddings: false,
  });
}

/** Median step times (ms) of LoRA on the float base and of QLoRA with each Linear4bit kernel. */
function stepTimes(backendName: string): void {
  const B = Number(opt("--batch", "8"));
  const Tlen = Number(opt("--seq", "128"));
  const steps = Number(opt("--steps", "5"));
  const runs: [string, Linear4bitKernel | null][] = [
    ["lora", null],
    ["fused", "fused"],
    ["chunked", "chunked"],
  ];
  const ids = randint(0, Number(opt("--vocab", "4096")), [B, Tlen], { dtype: "int32" }).keep();
  const setups = runs.map(([name, kernel]) => {
    manualSeed(0);
    let model: CausalLM = new LlamaForCausalLM(referenceConfig());
    if (kernel !== null)
      model = quantizeModel(model, {
        load_in_4bit: true,
        bnb_4bit_quant_type: "nf4",
        bnb_4bit_use_double_quant: true,
      });
    const peft = getPeftModel(model, new LoraConfig({ r: 8, lora_alpha: 16, target_modules: "all-linear" }));
    peft.train();
    const optim = new AdamW(peft.trainableParameters(), { lr: 1e-4 });
    return { name, kernel, peft, optim, times: [] as number[] };
  });
  // The variants take turns step by step, so load from other processes hits them alike.
  for (let s = 0; s < steps + 1; s++) {
    for (const v of setups) {
      Linear4bit.kernel = v.kernel ?? "chunked";
      const t0 = performance.now();
      tidy(() => {
        const out = v.peft.forward({ input_ids: ids, labels: ids });
        out.loss!.backward();
      });
      v.optim.step();
      v.optim.zeroGrad();
      if (s > 0) v.times.push(performance.now() - t0);
    }
  }
  Linear4bit.kernel = "chunked";
  ids.dispose();
  const result: Record<string, number> = {};
  for (const v of setups) {
    v.times.sort((a, b) => a - b);
    result[v.name] = v.times[Math.floor(v.times.length / 2)]!;
  }
  const { lora, fused, chunked } = result as Record<string, number>;
  log(
    `| ${backendName} | ${lora!.toFixed(0)} | ${fused!.toFixed(0)} (${(fused! / lora!).toFixed(2)}x) | ${chunked!.toFixed(0)} (${(chunked! / lora!).toFixed(2)}x) |`,
  );
}

// ---- 3. peak memory while loading ----
function loadConfig(hidden: number, layers: number): Qwen2Config {
  return new Qwen2Config({
    vocab_size: 2048,
    hidden_size: hidden,
    intermediate_size: Math.round((hidden * 8) / 3 / 32) * 32,
    num_hidden_layers: layers,
    num_attention_heads: hidden / 64,
    num_key_value_heads: Math.max(1, hidden / 256),
    max_position_embeddings: 512,
    tie_word_embeddings: false,
  });
}

async function loadMemory(): Promise<void> {
  const hidden = Number(opt("--load-hidden", "1024"));
  const layers = Number(opt("--load-layers", "6"));
  const dir = mkdtempSync(path.join(os.tmpdir(), "tsgrad-bench-quant-"));
  try {
    manualSeed(0);
    const cfg = loadConfig(hidden, layers);
    let model: CausalLM | null = new Qwen2ForCausalLM(cfg);
    const nParams = model.numParameters();
    await model.savePretrained(dir);
    for (const p of model.parameters()) p.dispose();
    model = null;
    const fileBytes = statSync(path.join(dir, "model.safetensors")).size;
    log(`## 3. Peak memory while loading`);
    log();
    log(
      `Qwen2-shaped checkpoint: hidden ${hidden}, ${layers} layers, intermediate ${cfg.intermediate_size}, vocab ${cfg.vocab_size}: ${(nParams / 1e6).toFixed(1)} M parameters, model.safetensors ${mib(fileBytes)} MiB (F32). Each load runs in a fresh process; peak RSS = VmHWM of /proc/self/status.`,
    );
    log();
    log(`| load | peak RSS (MiB) | RSS before loading (MiB) | RSS after (MiB) | load time (s) |`);
    log(`|---|---|---|---|---|`);
    const self = fileURLToPath(import.meta.url);
    let quantized: { maxRssKiB: number; startRss: number; endRss: number } | null = null;
    for (const mode of ["float32", "nf4"]) {
      const r = spawnSync(process.execPath, [...process.execArgv, self, "--child", mode, dir], {
        encoding: "utf8",
        maxBuffer: 1 << 20,
      });
      if (r.status !== 0) throw new Error(`child ${mode} failed: ${r.stderr}`);
      const j = JSON.parse(r.stdout) as { maxRssKiB: number; startRss: number; endRss: number; ms: number };
      log(
        `| ${mode === "nf4" ? "NF4 + double quant (quantized while read)" : "float32"} | ${mib(j.maxRssKiB * 1024)} | ${mib(j.startRss)} | ${mib(j.endRss)} | ${(j.ms / 1000).toFixed(2)} |`,
      );
      if (mode === "nf4") quantized = j;
    }
    log();
    // The issue's bound: peak <= 1.2 x the loaded model's size + the largest single tensor of the file.
    const largest = Math.max(cfg.vocab_size * hidden, cfg.intermediate_size * hidden) * 4;
    const peak = quantized!.maxRssKiB * 1024 - quantized!.startRss;
    const final = quantized!.endRss - quantized!.startRss;
    const bound = 1.2 * final + largest;
    log(
      `NF4 load, growth over the RSS before loading: peak ${mib(peak)} MiB, final ${mib(final)} MiB, largest tensor ${mib(largest)} MiB; bound 1.2 x final + largest = ${mib(bound)} MiB: ${peak <= bound ? "within" : "OVER"} the bound.`,
    );
    log();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const cmd = `npm run bench:quant${args.length ? ` -- ${args.join(" ")}` : ""}`;
  log(`# QLoRA benchmarks`);
  log();
  log(`- date: ${new Date().toISOString()}`);
  log(
    `- machine: ${os.cpus()[0]?.model ?? "?"}, ${os.cpus().length} cores, ${mib(os.totalmem())} MiB RAM, ${os.platform()} ${os.release()}, Node ${process.version}`,
  );
  log(`- command: \`${cmd}\``);
  log(
    `- load average at start (1/5/15 min): ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" / ")} (other work shares this machine)`,
  );
  log();
  const sections = opt("--sections", "1,2,3").split(",");
  if (sections.includes("1")) await bitsPerParam();
  if (sections.includes("2")) await stepSection();
  if (sections.includes("3")) await loadMemory();
  writeFileSync(OUT, `${lines.join("\n")}\n`);
  console.log(`wrote ${OUT}`);
}

async function stepSection(): Promise<void> {
  log(`## 2. Training step time: LoRA on a 4-bit base vs LoRA on the float32 base`);
  log();
  log(
    `The issue's reference config: Llama, hidden ${opt("--hidden", "256")}, ${opt("--layers", "4")} layers, 4 heads / 2 KV heads, intermediate ${opt("--intermediate", "688")}, vocab ${opt("--vocab", "4096")}, batch ${opt("--batch", "8")} x ${opt("--seq", "128")} tokens, LoRA r 8 (alpha 16) on all seven projections, AdamW; median of ${opt("--steps", "5")} steps after one warm-up, the three variants taking turns step by step. The 4-bit base is NF4 + double quant; "fused" = the WebAssembly SIMD dequantize-and-matmul kernel (one weight row dequantized at a time); "chunked" = up to 1 Mi weights dequantized at a time into a float block, multiplied with the active backend's matmul. Linear4bit uses "chunked" unless Linear4bit.kernel = "fused".`,
  );
  log();
  log(
    `| backend | LoRA step (ms) | QLoRA step, fused wasm kernel (ms, vs LoRA) | QLoRA step, chunked dequantize + backend matmul (ms, vs LoRA) |`,
  );
  log(`|---|---|---|---|`);
  stepTimes("cpu (default backend)");
  const initWasm = (T as Record<string, unknown>).initWasmBackend as
    | ((o?: object) => Promise<{ name: string; stopThreads(): void }>)
    | undefined;
  if (initWasm && opt("--wasm", "1") === "1") {
    try {
      const b = await initWasm();
      T.setBackend(b.name);
      stepTimes("wasm (SIMD matmul)");
      T.setBackend("cpu");
      b.stopThreads();
    } catch (e) {
      log(`| wasm | (not run: ${(e as Error).message.split("\n")[0]}) | | |`);
    }
  }
  log();
}

await main();
