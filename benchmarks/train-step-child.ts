// The child side of benchmarks/train-step.ts: one tsgrad run of the reference step (one mode, the thread
// count from TSGRAD_NUM_THREADS) on weights PyTorch exported; prints one JSON line with ms/step, the losses
// and the matmul kernels' share. --profile also times every kernel call by name and argument shapes.
//   tsx benchmarks/train-step.ts --child --mode lora --weights PREFIX --steps N --warmup W [--profile]

import { readFileSync } from "node:fs";
import { AdamW, LlamaConfig, LlamaForCausalLM } from "@tsgrad/nn";
import { getPeftModel, LoraConfig } from "@tsgrad/peft";
import { causalWork, crossEntropy, getBackend, type Tensor, tensor, tidy } from "@tsgrad/tensor";
import { argOpt, median } from "./common.js";

export const HIDDEN = 256;
export const LAYERS = 4;
export const HEADS = 4;
export const KV_HEADS = 2;
export const INTER = 688;
export const VOCAB = 4096;
export const BATCH = 8;
export const SEQ = 128;
export const TOK = BATCH * SEQ;
export const RANK = 8;
export const ALPHA = 16;
export const TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
export const LOSS_TOL = 1e-4;
/** GFLOP/s one core reaches with 128-bit SIMD multiply-add (cpu-anchors.md, peak.c), the WebAssembly ceiling. */
export const CEILING = 67;

const log = (s: string): void => console.error(`[bench:step] ${s}`);

// ---------------- child: one tsgrad run ----------------

export interface ChildResult {
  mode: string;
  threads: number;
  ms_per_step: number;
  ms_min: number;
  tokens_per_s: number;
  losses: number[];
  trainable_params: number;
  backend: string;
  /** Median over the timed steps of the matmul kernels' time, and their FLOPs per step. */
  matmul_ms: number;
  matmul_gflop: number;
}

export async function child(args: string[]): Promise<void> {
  const opt = (name: string, dflt: string): string => argOpt(args, name, dflt);
  const mode = opt("--mode", "lora");
  const prefix = opt("--weights", "");
  const steps = Number(opt("--steps", "5"));
  const warmup = Number(opt("--warmup", "2"));
  const backend = getBackend("cpu") as {
    name: string;
    threads?: number;
    startThreads?: () => Promise<boolean>;
    kernels: Record<string, unknown>;
    fused?: Record<string, unknown>;
    matmulAccumulate?: unknown;
    matmulCausal?: unknown;
    matmulPair?: unknown;
  };
  if (backend.startThreads) await backend.startThreads();
  // --profile fills prof with every kernel call of the timed steps, by kernel name and argument shapes
  const prof = new Map<string, { ms: number; calls: number }>();
  let profiling = false;
  const record = (key: string, ms: number): void => {
    const e = prof.get(key) ?? { ms: 0, calls: 0 };
    e.ms += ms;
    e.calls++;
    prof.set(key, e);
  };
  // time and FLOPs of the matmul kernels, every run: the step's cost split into matmul and the rest
  let mmMs = 0;
  let mmFlops = 0;
  const mm = backend.kernels.matmul as (...a: unknown[]) => unknown;
  type V = { layout: { shape: number[] } };
  backend.kernels.matmul = (...a: unknown[]): unknown => {
    const t0 = performance.now();
    const r = mm(...a);
    mmMs += performance.now() - t0;
    const K = (a[0] as V[])[0]!.layout.shape.at(-1)!;
    mmFlops += 2 * K * (a[2] as V).layout.shape.reduce((x, y) => x * y, 1);
    return r;
  };
  // the other products the wasm backend runs: c += a b and [a b, a b2] (the fused LoRA op) and causal attention's, which
  // count the multiply-adds they do (causalWork), not the whole product's
  type Spec = Parameters<typeof causalWork>[0];
  const mr = (backend as { tile?: { mr: number } }).tile?.mr ?? 4; // the register tile's rows
  const dims = (a: V, b: V) => [a.layout.shape.at(-2)!, b.layout.shape.at(-1)!, a.layout.shape.at(-1)!];
  const batch = (c: V) => c.layout.shape.slice(0, -2).reduce((x, y) => x * y, 1);
  const wrap = <F extends (...a: never[]) => void>(
    name: "matmulAccumulate" | "matmulCausal" | "matmulPair",
    flops: (...a: Parameters<F>) => number,
  ) => {
    const fn = backend[name] as F | undefined;
    if (!fn) return;
    backend[name] = ((...a: Parameters<F>) => {
      const t0 = performance.now();
      fn(...a);
      const ms = performance.now() - t0;
      mmMs += ms;
      mmFlops += flops(...a);
      if (profiling)
        record(`${name} ${(a.slice(0, 3) as V[]).map((v) => v.layout.shape.join("x")).join(",")}`, ms);
    }) as never;
  };
  wrap<(a: V, b: V, c: V) => void>("matmulAccumulate", (a, b, c) => {
    const [M, N, K] = dims(a, b);
    return 2 * batch(c) * M * N * K;
  });
  // with a third product (scale a^T d, LoRA's dB) its M K N3 multiply-adds too
  wrap<(a: V, b: V, b2: V, c: V, c2: V, third?: { d: V }) => void>(
    "matmulPair",
    (a, b, b2, c, _c2, third) => {
      const [M, N, K] = dims(a, b);
      return 2 * batch(c) * M * K * (N + b2.layout.shape.at(-1)! + (third?.d.layout.shape.at(-1) ?? 0));
    },
  );
  wrap<(a: V, b: V, c: V, s: Spec) => void>("matmulCausal", (a, b, c, s) => {
    const [M, N, K] = dims(a, b);
    const groups = s.kind === "kT" ? K / s.period : M / s.period;
    const [m, k] = s.kind === "kT" ? [M, s.period] : [s.period, K];
    return 2 * batch(c) * groups * causalWork(s, m, N, k, mr);
  });
  // --profile: time every kernel call of the timed steps, by kernel name and argument shapes
  if (args.includes("--profile")) {
    // shape, then "t" when the last dim is not unit-stride (a transposed or broadcast view)
    const shapeOf = (a: unknown): string => {
      if (!a || typeof a !== "object" || !("layout" in a)) return "";
      const { shape, strides } = (a as { layout: { shape: number[]; strides: number[] } }).layout;
      return shape.join("x") + (shape.length > 0 && strides.at(-1) !== 1 ? "t" : "");
    };
    const tables = [backend.kernels, backend.fused ?? {}];
    for (const [table, name, fn] of tables.flatMap((t) =>
      Object.entries(t).map(([k, f]) => [t, k, f] as const),
    )) {
      if (typeof fn !== "function") continue;
      table[name] = (...a: unknown[]): unknown => {
        if (!profiling) return fn(...a);
        const t0 = performance.now();
        const r = fn(...a);
        const key = `${name} ${[...(Array.isArray(a[0]) ? a[0] : []), a[2]].map(shapeOf).filter(Boolean).join(",")}`;
        record(key, performance.now() - t0);
        return r;
      };
    }
  }

  const cfg = new LlamaConfig({
    vocab_size: VOCAB,
    hidden_size: HIDDEN,
    intermediate_size: INTER,
    num_hidden_layers: LAYERS,
    num_attention_heads: HEADS,
    num_key_value_heads: KV_HEADS,
    max_position_embeddings: SEQ,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
  });
  const base = new LlamaForCausalLM(cfg, { dtype: "float32" });
  const model =
    mode === "lora"
      ? getPeftModel(base, new LoraConfig({ r: RANK, lora_alpha: ALPHA, target_modules: TARGETS }))
      : base;
  const index = JSON.parse(readFileSync(`${prefix}-${mode}.json`, "utf8")) as Record<
    string,
    [number[], number]
  >;
  const buf = readFileSync(`${prefix}-${mode}.bin`);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const take = (key: string): Float32Array => {
    const e = index[key];
    if (!e) throw new Error(`weights: no ${key}`);
    const n = e[0].reduce((a, b) => a * b, 1);
    return data.slice(e[1], e[1] + n);
  };
  for (const [name, p] of model.namedParameters()) {
    const key = name.replace(/^base_model\.model\./, "").replace(".base_layer.", ".");
    const src = take(key);
    if (src.length !== p.numel)
      throw new Error(`weights: ${key} has ${src.length} values, ${name} ${p.numel}`);
    p.assign(tensor(src, { dtype: "float32", shape: p.shape }));
  }
  if (mode === "full") for (const [, p] of model.namedParameters()) p.requiresGrad = true;
  const ids = Array.from(take("ids"), (v) => Math.round(v));
  const x: number[][] = [];
  const y: number[][] = [];
  for (let b = 0; b < BATCH; b++) {
    const row = ids.slice(b * (SEQ + 1), (b + 1) * (SEQ + 1));
    x.push(row.slice(0, SEQ));
    y.push(row.slice(1));
  }
  const target = tensor(y.flat(), { dtype: "int32" });
  const params = new Map([...model.namedParameters()].filter(([, p]) => p.requiresGrad));
  const optim = new AdamW(params, { lr: 1e-4, weight_decay: 0.01 });
  // As SFTTrainer runs a step: forward and backward inside tidy, so the step's tensors are freed (and their
  // buffers reused) when it ends rather than whenever the garbage collector runs.
  const step = (): number => {
    const value = tidy(() => {
      const { logits } = model.forward({ input_ids: x });
      const loss: Tensor = crossEntropy(logits.reshape([TOK, VOCAB]), target);
      loss.backward();
      return loss.itemSync();
    });
    optim.step();
    optim.zeroGrad();
    return value;
  };
  const losses: number[] = [];
  const ts: number[] = [];
  const mmTimes: number[] = [];
  let gflop = 0;
  for (let i = 0; i < warmup + steps; i++) {
    mmMs = 0;
    mmFlops = 0;
    const t0 = performance.now();
    losses.push(step());
    const dt = performance.now() - t0;
    if (i >= warmup) {
      ts.push(dt);
      mmTimes.push(mmMs);
      gflop = mmFlops / 1e9;
    }
    profiling = args.includes("--profile") && i + 1 >= warmup;
    log(
      `tsgrad ${mode} ${backend.threads ?? 1}t step ${i}: loss ${losses[i]!.toFixed(5)}, ${dt.toFixed(0)} ms`,
    );
  }
  const med = median(ts);
  if (prof.size > 0) {
    const total = [...prof.values()].reduce((t, e) => t + e.ms, 0);
    log(`kernel time ${(total / steps).toFixed(0)} ms/step of ${med.toFixed(0)}`);
    const byOp = new Map<string, number>();
    for (const [k, e] of prof) byOp.set(k.split(" ")[0]!, (byOp.get(k.split(" ")[0]!) ?? 0) + e.ms);
    log(
      `by kernel: ${[...byOp]
        .sort((a, b) => b[1] - a[1])
        .map(([k, ms]) => `${k} ${(ms / steps).toFixed(0)}`)
        .join(", ")}`,
    );
    for (const [k, e] of [...prof].sort((a, b) => b[1].ms - a[1].ms).slice(0, 45))
      log(`${(e.ms / steps).toFixed(1).padStart(8)} ms ${String(e.calls / steps).padStart(5)}x  ${k}`);
  }
  const out: ChildResult = {
    mode,
    threads: backend.threads ?? 1,
    ms_per_step: med,
    ms_min: Math.min(...ts),
    tokens_per_s: (TOK / med) * 1e3,
    losses,
    trainable_params: [...params.values()].reduce((s, p) => s + p.numel, 0),
    backend: backend.name,
    matmul_ms: median(mmTimes),
    matmul_gflop: gflop,
  };
  console.log(JSON.stringify(out));
  process.exit(0);
}
