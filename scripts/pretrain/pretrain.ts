// Pretrains models/tsgrad-tiny-qwen, the embedded default model: a small Qwen2ForCausalLM trained from
// scratch with tsgrad on Moby Dick (public domain) and synthetic text from countries-list (MIT), with the
// byte-level BPE tokenizer that train-bpe.ts wrote into the same folder. Deterministic: a fixed seed, a
// seeded batch sampler and a fixed step count (single-threaded kernels, so the sums run in one order).
//   npx tsx scripts/pretrain/make-datasets.ts && npx tsx scripts/pretrain/train-bpe.ts
//   npx tsx scripts/pretrain/pretrain.ts   (the defaults are the committed run; --steps, --lr, --out ... override)

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  AdamW,
  AutoTokenizer,
  clipGradNorm,
  getScheduler,
  type PreTrainedTokenizer,
  Qwen2Config,
  Qwen2ForCausalLM,
} from "@tsgrad/nn";
import { initWasmBackend, manualSeed, noGrad, setBackend, tidy, wasmSimdSupported } from "@tsgrad/tensor";
import { chatml, continentChats, factProse, mobyDick } from "./corpus.js";
import { isMain, ROOT, rng, shuffled } from "./facts.js";

export const MODEL_DIR = join(ROOT, "models", "tsgrad-tiny-qwen");

/** The architecture: about 1.1 M parameters, tied embeddings, grouped-query attention (4 query, 2 KV heads). */
export function tinyConfig(tok: PreTrainedTokenizer): Qwen2Config {
  const id = (t: string) => tok.convertTokensToIds(t)!;
  return new Qwen2Config({
    vocab_size: tok.vocabSize,
    hidden_size: 128,
    intermediate_size: 384,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 512,
    rope_theta: 10000,
    rms_norm_eps: 1e-6,
    initializer_range: 0.02,
    tie_word_embeddings: true,
    bos_token_id: id("<|endoftext|>"),
    eos_token_id: id("<|im_end|>"),
  });
}

/** One token stream per source: Moby Dick's training chapters, and the synthetic documents (seeded order). */
export function tokenStreams(
  tok: PreTrainedTokenizer,
  factRounds: number,
  chatRounds: number,
): { moby: Int32Array; synthetic: Int32Array } {
  const moby = Int32Array.from(tok.encode(mobyDick().train));
  const docs = shuffled([...factProse(3, factRounds), ...continentChats(4, chatRounds)], rng(5));
  const synthetic = Int32Array.from(tok.encode(docs.join("<|endoftext|>")));
  return { moby, synthetic };
}

/** Fixed held-out windows (Moby Dick's last chapters) for the evaluation loss. */
export function heldOutWindows(tok: PreTrainedTokenizer, count: number, len: number): number[][] {
  const ids = tok.encode(mobyDick().heldOut);
  const stride = Math.floor((ids.length - len) / count);
  return Array.from({ length: count }, (_, i) => ids.slice(i * stride, i * stride + len));
}

function evalLoss(model: Qwen2ForCausalLM, windows: number[][]): number {
  model.eval();
  const v = tidy(() => noGrad(() => model.forward({ input_ids: windows, labels: windows }).loss!.itemSync()));
  model.train();
  return v;
}

function greedyAnswer(model: Qwen2ForCausalLM, tok: PreTrainedTokenizer, question: string): string {
  model.eval();
  const prompt = tok.applyChatTemplate([{ role: "user", content: question }], {
    tokenize: true,
    add_generation_prompt: true,
  }) as number[];
  const out = tidy(() => model.generate([prompt], { max_new_tokens: 24 }).dataSync());
  model.train();
  return tok.decode(Array.from(out).slice(prompt.length), { skip_special_tokens: true });
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      steps: { type: "string", default: "1200" },
      batch: { type: "string", default: "16" },
      seq: { type: "string", default: "128" },
      lr: { type: "string", default: "3e-3" },
      "synthetic-fraction": { type: "string", default: "0.5" },
      "fact-rounds": { type: "string", default: "16" },
      "chat-rounds": { type: "string", default: "3" },
      warmup: { type: "string", default: "60" },
      "eval-every": { type: "string", default: "100" },
      seed: { type: "string", default: "0" },
      out: { type: "string", default: MODEL_DIR },
    },
  });
  const steps = Number(a.steps);
  const B = Number(a.batch);
  const T = Number(a.seq);
  const synthFrac = Number(a["synthetic-fraction"]);
  const evalEvery = Number(a["eval-every"]);
  const out = a.out!;

  if (wasmSimdSupported()) {
    await initWasmBackend({ threads: 1 });
    setBackend("wasm");
  }
  const tok = await AutoTokenizer.fromPretrained(out);
  const { moby, synthetic } = tokenStreams(tok, Number(a["fact-rounds"]), Number(a["chat-rounds"]));
  const held = heldOutWindows(tok, 8, T);
  console.log(`tokens: moby ${moby.length}, synthetic ${synthetic.length}, held-out windows 8 x ${T}`);

  manualSeed(Number(a.seed));
  const config = tinyConfig(tok);
  const model = new Qwen2ForCausalLM(config, { dtype: "float32" });
  model.train();
  const params = model.trainableParameters();
  const numParams = model.numParameters();
  console.log(
    `params ${numParams} (${(numParams / 1e6).toFixed(2)} M), ${steps} steps of ${B} x ${T} tokens`,
  );
  const opt = new AdamW(params, {
    lr: Number(a.lr),
    betas: [0.9, 0.95],
    weight_decay: 0.1,
    decay: (name, p) => p.ndim >= 2 && !name.includes("embed_tokens"),
  });
  const sched = getScheduler("cosine", opt, {
    num_warmup_steps: Math.min(Number(a.warmup), steps / 10),
    num_training_steps: steps,
  });

  const rand = rng(Number(a.seed) + 1);
  const window = (stream: Int32Array) => {
    const start = Math.floor(rand() * (stream.length - T));
    return Array.from(stream.subarray(start, start + T));
  };
  const log: Record<string, number | string>[] = [];
  const t0 = performance.now();
  let ema = 0;
  const initial = evalLoss(model, held);
  console.log(
    `step 0 held-out loss ${initial.toFixed(3)} (ln V = ${Math.log(config.vocab_size).toFixed(3)})`,
  );
  log.push({ step: 0, held_out_loss: initial });
  for (let step = 1; step <= steps; step++) {
    const batch = Array.from({ length: B }, () => window(rand() < synthFrac ? synthetic : moby));
    const loss = tidy(() => {
      const l = model.forward({ input_ids: batch, labels: batch }).loss!;
      l.backward();
      return l.itemSync();
    });
    const norm = clipGradNorm(params.values(), 1.0);
    norm.dispose();
    opt.step();
    sched.step();
    opt.zeroGrad();
    ema = step === 1 ? loss : 0.95 * ema + 0.05 * loss;
    const sec = (performance.now() - t0) / 1000;
    if (step % 10 === 0 || step === 1) {
      const tps = Math.round((step * B * T) / sec);
      console.log(
        `step ${step}/${steps} loss ${loss.toFixed(3)} ema ${ema.toFixed(3)} lr ${opt.lr.toExponential(2)} ${tps} tok/s ${sec.toFixed(0)} s`,
      );
    }
    if (step % evalEvery === 0 || step === steps) {
      const h = evalLoss(model, held);
      const q1 = greedyAnswer(model, tok, "Which continent is Peru in?");
      const q2 = greedyAnswer(model, tok, "What is the capital of Peru?");
      console.log(
        `  held-out loss ${h.toFixed(3)} | continent: ${JSON.stringify(q1)} | capital: ${JSON.stringify(q2)}`,
      );
      log.push({ step, train_loss_ema: ema, held_out_loss: h, seconds: sec });
      await model.savePretrained(out);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const generation = {
    bos_token_id: config.bos_token_id,
    eos_token_id: [config.eos_token_id, config.bos_token_id],
    pad_token_id: tok.pad_token_id,
    do_sample: false,
    max_new_tokens: 64,
  };
  writeFileSync(join(out, "generation_config.json"), `${JSON.stringify(generation, null, 2)}\n`);
  const summary = {
    steps,
    batch: B,
    seq: T,
    tokens_seen: steps * B * T,
    params: numParams,
    seconds: Math.round(seconds),
    final_train_loss_ema: ema,
    held_out_loss: log[log.length - 1]!.held_out_loss,
    initial_held_out_loss: initial,
    sample_chat: chatml([{ role: "user", content: "Which continent is Peru in?" }]),
  };
  console.log(JSON.stringify(summary));
  writeFileSync(join(out, "training_log.json"), `${JSON.stringify({ summary, log }, null, 2)}\n`);
}

if (isMain(import.meta.url)) await main();
