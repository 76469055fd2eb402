#!/usr/bin/env node
import fs from "node:fs";
// Run by benchmarks/train-step.ts; adapted from /work/shared/anchors/tfjs_llama_lora_step.mjs (default
// backend wasm only). @tensorflow/tfjs 4.22.0 is needed, not just tfjs-core: core's Node bundle registers
// no gradient functions, the union package does.
// One training step of a small Llama-style decoder in TensorFlow.js 4.22
// (Node, fp32). It is the same model and step as torch_llama_lora_step.py:
//   hidden 256, 4 layers, 4 heads of dim 64, 2 KV heads (GQA: KV head j serves query heads
//   2j and 2j+1), intermediate 688, vocab 4096, RMSNorm (eps 1e-6), RoPE (theta 10000,
//   rotate-half layout), SwiGLU MLP, causal attention, untied lm_head, no biases.
//   Batch 8 x seq 128 (1024 tokens), next-token cross-entropy (mean).
// Modes:
//   lora : base weights are constant tensors (frozen); LoRA rank 8, alpha 16 (A ~ U(+-1/sqrt(in)),
//          which is torch's kaiming_uniform(a=sqrt(5)); B = 0) on q,k,v,o,gate,up,down;
//          AdamW over the LoRA tf.variables only.
//   full : no adapters; every weight is a tf.variable; AdamW over all of them.
// One step = tf.variableGrads (forward + backward, restricted to the trainable variables) +
// the optimizer update, inside tf.tidy, ending with a read of the loss (the sync point).
// Init scales are torch's: embed, linear and lm_head weights ~ N(0, 0.02); RMSNorm weights 1.
// Weights are stored [in, out] (tfjs's dense layout), so a forward linear is matMul(x, W).
//
// Optimizer (--opt): 'adamw' (default) is a hand-written AdamW that follows torch.optim.AdamW
// (lr 1e-4, betas 0.9/0.999, eps 1e-8, decoupled weight decay 0.01 on every trainable tensor,
// bias-corrected). 'adam' is tf.train.adam (same lr/betas/eps, no weight decay).
//
// Linear layers (--linear):
//   plain (default): tf.matMul and tfjs's own gradients. On the wasm backend only a
//     non-transposed, non-batched matMul reaches XNNPACK; the backward matMuls
//     (dy·Wᵀ and xᵀ·dy) and the batched attention matMuls run in tfjs-wasm's scalar fallback loop.
//   xnn: a tf.customGrad linear that transposes explicitly (frozen Wᵀ precomputed once) so every
//     2-D matMul of the linears, forward and backward, takes the XNNPACK path. Attention is unchanged.
// The embedding uses a tf.customGrad whose gradient is tf.scatterND (sums duplicate ids): the
// wasm backend has no UnsortedSegmentSum kernel, which tf.gather's own gradient needs.
//
// Usage (from a folder where @tensorflow/tfjs and @tensorflow/tfjs-backend-wasm 4.22.0 are
// installed, or from this folder after `npm install --ignore-scripts`):
//   node tfjs_llama_lora_step.mjs [--backend wasm cpu] [--mode lora full] [--steps 10] [--warmup 2]
//        [--cpu-steps 3] [--cpu-warmup 2] [--linear plain|xnn] [--opt adamw|adam] [--lr 1e-4]
//        [--check] [--profile]
// Prints one JSON line per (backend, mode): median ms/step over the timed steps after the
// warm-up steps, tokens/s, and the per-step losses. The cpu backend is slow (tens of seconds
// per step), so its step counts are capped by --cpu-steps / --cpu-warmup.
// --profile prints, per (backend, mode), each kernel's share of kernel time over one step (tf.profile).
import { createRequire } from "node:module";
import path from "node:path";

function loadTf() {
  const bases = [path.join(process.cwd(), "noop.js"), import.meta.url];
  for (const base of bases) {
    const req = createRequire(base);
    try {
      req.resolve("@tensorflow/tfjs");
    } catch {
      continue;
    }
    const tf = req("@tensorflow/tfjs");
    const wasm = req("@tensorflow/tfjs-backend-wasm"); // registers the 'wasm' backend
    return { tf, wasm };
  }
  throw new Error(
    "cannot find @tensorflow/tfjs (install @tensorflow/tfjs@4.22.0 and " +
      "@tensorflow/tfjs-backend-wasm@4.22.0 in the current folder)",
  );
}
const { tf } = loadTf();

const HIDDEN = 256,
  LAYERS = 4,
  HEADS = 4,
  KV_HEADS = 2,
  INTER = 688,
  VOCAB = 4096;
const HEAD_DIM = HIDDEN / HEADS,
  REP = HEADS / KV_HEADS;
const BATCH = 8,
  SEQ = 128,
  TOK = BATCH * SEQ;
const RANK = 8,
  ALPHA = 16,
  SCALE = ALPHA / RANK;
const EPS = 1e-6;

// ---------- arguments ----------
const argv = process.argv.slice(2);
function listArg(name, def) {
  const i = argv.indexOf(name);
  if (i < 0) return def;
  const out = [];
  for (let j = i + 1; j < argv.length && !argv[j].startsWith("--"); j++) out.push(argv[j]);
  return out.length ? out : def;
}
const oneArg = (name, def) => listArg(name, [def])[0];
const flag = (name) => argv.includes(name);
const A = {
  backends: listArg("--backend", ["wasm"]),
  modes: listArg("--mode", ["lora", "full"]),
  steps: Number(oneArg("--steps", "10")),
  warmup: Number(oneArg("--warmup", "2")),
  cpuSteps: Number(oneArg("--cpu-steps", "3")),
  cpuWarmup: Number(oneArg("--cpu-warmup", "2")),
  linear: oneArg("--linear", "plain"),
  opt: oneArg("--opt", "adamw"),
  lr: Number(oneArg("--lr", "1e-4")),
  check: flag("--check"),
  weights: oneArg("--weights", ""),
  profile: flag("--profile"),
};

// ---------- flops (same analytic count as the torch script) ----------
function flopsPerStep(mode) {
  const lin =
    LAYERS * (HIDDEN * HEADS * HEAD_DIM * 2 + HIDDEN * KV_HEADS * HEAD_DIM * 2 + 3 * HIDDEN * INTER);
  const lm = HIDDEN * VOCAB;
  const attn = LAYERS * 2 * (2 * BATCH * HEADS * SEQ * SEQ * HEAD_DIM);
  const fwd = 2 * TOK * (lin + lm) + attn;
  const loraP =
    LAYERS *
    RANK *
    ((HIDDEN + HEADS * HEAD_DIM) * 2 + (HIDDEN + KV_HEADS * HEAD_DIM) * 2 + 3 * (HIDDEN + INTER));
  if (mode === "full") return 3 * fwd;
  return fwd + 2 * TOK * loraP + (2 * TOK * (lin + lm) + 2 * attn) + 2 * (2 * TOK * loraP);
}

// ---------- building blocks ----------
let seedCounter = 0;
const nextSeed = () => 1000 + seedCounter++;
// --weights PREFIX loads PREFIX.json ({key: [shape, offset]}) + PREFIX.bin (float32, tfjs layout)
// instead of the random init, e.g. weights exported from the torch model for a cross-check.
let loaded = null;
function initTensor(key, shape, makeRandom) {
  const t = makeRandom(); // always drawn, so the seeds do not depend on --weights
  if (!loaded) return t;
  const [s, off] = loaded.index[key] || [];
  if (!s || s.join() !== shape.join()) throw new Error(`--weights: ${key} missing or shape ${s} != ${shape}`);
  t.dispose();
  return tf.tensor(loaded.data.subarray(off, off + shape.reduce((a, b) => a * b, 1)), shape);
}

// Linear y = x·W for x [N, in], W [in, out].
// linearPlain: tfjs's own matMul gradient. makeXnnLinear: explicit transposes so every matMul
// is non-transposed and 2-D (XNNPACK on wasm).
const linearPlain = (x, w) => tf.matMul(x, w);
const xnnTrainable = tf.customGrad((x, w, save) => {
  save([x, w]);
  return {
    value: tf.matMul(x, w),
    gradFunc: (dy, [xs, ws]) => [tf.matMul(dy, tf.transpose(ws)), tf.matMul(tf.transpose(xs), dy)],
  };
});
function makeFrozenXnn(w) {
  // W constant: only dx, with Wᵀ computed once
  const wt = tf.keep(tf.transpose(w));
  return tf.customGrad((x, _save) => ({ value: tf.matMul(x, w), gradFunc: (dy) => tf.matMul(dy, wt) }));
}

function makeLinear(key, fin, fout, mode, linearKind) {
  const init = initTensor(`${key}.w`, [fin, fout], () =>
    tf.randomNormal([fin, fout], 0, 0.02, "float32", nextSeed()),
  );
  const p = { trainable: [] };
  if (mode === "full") {
    p.w = tf.variable(init, true);
    init.dispose();
    p.trainable.push(p.w);
  } else {
    p.w = init; // frozen: a plain constant tensor, never in the var list
  }
  if (mode === "lora") {
    const bound = 1 / Math.sqrt(fin);
    p.a = tf.variable(
      initTensor(`${key}.a`, [fin, RANK], () =>
        tf.randomUniform([fin, RANK], -bound, bound, "float32", nextSeed()),
      ),
      true,
    );
    p.b = tf.variable(
      initTensor(`${key}.b`, [RANK, fout], () => tf.zeros([RANK, fout])),
      true,
    );
    p.trainable.push(p.a, p.b);
  }
  let base, small;
  if (linearKind === "xnn") {
    base = mode === "full" ? (x) => xnnTrainable(x, p.w) : makeFrozenXnn(p.w);
    small = (x, w) => xnnTrainable(x, w);
  } else {
    base = (x) => linearPlain(x, p.w);
    small = linearPlain;
  }
  p.fwd = (x) => {
    const y = base(x);
    if (mode !== "lora") return y;
    return tf.add(y, tf.mul(small(small(x, p.a), p.b), SCALE));
  };
  return p;
}

function makeNorm(key, mode) {
  const init = initTensor(key, [HIDDEN], () => tf.ones([HIDDEN]));
  const w = mode === "full" ? tf.variable(init, true) : init;
  return { w, trainable: mode === "full" ? [w] : [], fwd: (x) => rmsNorm(x, w) };
}
const rmsNorm = (x, w) => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), EPS))), w);

// Embedding lookup whose gradient is a scatter-add (tf.scatterND sums duplicate indices).
function makeEmbedding(mode) {
  const init = initTensor("embed", [VOCAB, HIDDEN], () =>
    tf.randomNormal([VOCAB, HIDDEN], 0, 0.02, "float32", nextSeed()),
  );
  if (mode !== "full") return { w: init, trainable: [], fwd: (ids) => tf.gather(init, ids) };
  const w = tf.variable(init, true);
  init.dispose();
  const lookup = tf.customGrad((table, _save) => ({
    value: tf.gather(table, lookup.ids),
    gradFunc: (dy) => tf.scatterND(lookup.ids2d, dy, [VOCAB, HIDDEN]),
  }));
  return {
    w,
    trainable: [w],
    fwd: (ids) => {
      lookup.ids = ids;
      lookup.ids2d = ids.reshape([TOK, 1]);
      return lookup(w);
    },
  };
}

function ropeTables() {
  const half = HEAD_DIM / 2;
  const cos = new Float32Array(SEQ * HEAD_DIM),
    sin = new Float32Array(SEQ * HEAD_DIM);
  for (let t = 0; t < SEQ; t++) {
    for (let i = 0; i < half; i++) {
      const inv = 1 / 10000 ** ((2 * i) / HEAD_DIM);
      const f = Math.fround(t * Math.fround(inv));
      cos[t * HEAD_DIM + i] = cos[t * HEAD_DIM + i + half] = Math.cos(f);
      sin[t * HEAD_DIM + i] = sin[t * HEAD_DIM + i + half] = Math.sin(f);
    }
  }
  return { cos: tf.tensor2d(cos, [SEQ, HEAD_DIM]), sin: tf.tensor2d(sin, [SEQ, HEAD_DIM]) };
}
function rotateHalf(x) {
  const [x1, x2] = tf.split(x, 2, -1);
  return tf.concat([tf.neg(x2), x1], -1);
}
// [B, KV, T, D] -> [B, HEADS, T, D] with head h reading KV head floor(h / REP) (repeat_interleave)
function repeatKv(x) {
  const e = tf.reshape(x, [BATCH, KV_HEADS, 1, SEQ * HEAD_DIM]);
  return tf.reshape(tf.broadcastTo(e, [BATCH, KV_HEADS, REP, SEQ * HEAD_DIM]), [BATCH, HEADS, SEQ, HEAD_DIM]);
}

function buildModel(mode, linearKind) {
  seedCounter = 0;
  const m = { embed: makeEmbedding(mode), layers: [] };
  for (let l = 0; l < LAYERS; l++) {
    const L = `layers.${l}`;
    m.layers.push({
      ln1: makeNorm(`${L}.ln1`, mode),
      ln2: makeNorm(`${L}.ln2`, mode),
      q: makeLinear(`${L}.q`, HIDDEN, HEADS * HEAD_DIM, mode, linearKind),
      k: makeLinear(`${L}.k`, HIDDEN, KV_HEADS * HEAD_DIM, mode, linearKind),
      v: makeLinear(`${L}.v`, HIDDEN, KV_HEADS * HEAD_DIM, mode, linearKind),
      o: makeLinear(`${L}.o`, HEADS * HEAD_DIM, HIDDEN, mode, linearKind),
      gate: makeLinear(`${L}.gate`, HIDDEN, INTER, mode, linearKind),
      up: makeLinear(`${L}.up`, HIDDEN, INTER, mode, linearKind),
      down: makeLinear(`${L}.down`, INTER, HIDDEN, mode, linearKind),
    });
  }
  m.norm = makeNorm("norm", mode);
  m.lmHead = makeLinear("lm_head", HIDDEN, VOCAB, mode === "full" ? "full" : "frozen", linearKind); // no adapter
  const { cos, sin } = ropeTables();
  m.cos = cos;
  m.sin = sin;
  const mask = new Float32Array(SEQ * SEQ);
  for (let i = 0; i < SEQ; i++) for (let j = i + 1; j < SEQ; j++) mask[i * SEQ + j] = -1e9;
  m.mask = tf.tensor2d(mask, [SEQ, SEQ]);
  const parts = [m.embed, m.norm, m.lmHead, ...m.layers.flatMap((b) => Object.values(b))];
  m.trainable = parts.flatMap((p) => p.trainable);
  m.all = [
    m.embed.w,
    m.norm.w,
    m.lmHead.w,
    ...m.layers.flatMap((b) => Object.values(b).flatMap((p) => [p.w, p.a, p.b])),
  ].filter(Boolean);
  return m;
}

function block(b, x, m) {
  let h = b.ln1.fwd(x);
  const heads = (t, n) => tf.transpose(tf.reshape(t, [BATCH, SEQ, n, HEAD_DIM]), [0, 2, 1, 3]);
  let q = heads(b.q.fwd(h), HEADS),
    k = heads(b.k.fwd(h), KV_HEADS),
    v = heads(b.v.fwd(h), KV_HEADS);
  q = tf.add(tf.mul(q, m.cos), tf.mul(rotateHalf(q), m.sin));
  k = tf.add(tf.mul(k, m.cos), tf.mul(rotateHalf(k), m.sin));
  k = repeatKv(k);
  v = repeatKv(v);
  let att = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(HEAD_DIM)), m.mask);
  att = tf.softmax(att, -1);
  const y = tf.reshape(tf.transpose(tf.matMul(att, v), [0, 2, 1, 3]), [TOK, HEADS * HEAD_DIM]);
  x = tf.add(x, b.o.fwd(y));
  h = b.ln2.fwd(x);
  const g = b.gate.fwd(h);
  return tf.add(x, b.down.fwd(tf.mul(tf.mul(g, tf.sigmoid(g)), b.up.fwd(h))));
}

function lossFn(m, ids, onehot) {
  let x = m.embed.fwd(ids);
  for (const b of m.layers) x = block(b, x, m);
  const logits = m.lmHead.fwd(m.norm.fwd(x));
  return tf.losses.softmaxCrossEntropy(onehot, logits); // mean over the 1024 tokens
}

// ---------- optimizers ----------
function makeAdamW(vars, lr, wd = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8) {
  const st = vars.map((v) => ({
    m: tf.variable(tf.zerosLike(v), false),
    v: tf.variable(tf.zerosLike(v), false),
  }));
  let t = 0;
  return (grads) => {
    t++;
    const bc1 = 1 - b1 ** t,
      bc2 = 1 - b2 ** t;
    vars.forEach((p, i) => {
      const g = grads[p.name],
        s = st[i];
      s.m.assign(tf.add(tf.mul(s.m, b1), tf.mul(g, 1 - b1)));
      s.v.assign(tf.add(tf.mul(s.v, b2), tf.mul(tf.square(g), 1 - b2)));
      const denom = tf.add(tf.div(tf.sqrt(s.v), Math.sqrt(bc2)), eps);
      p.assign(tf.sub(tf.mul(p, 1 - lr * wd), tf.mul(tf.div(s.m, denom), lr / bc1)));
    });
  };
}
function makeTfAdam(_vars, lr) {
  const opt = tf.train.adam(lr, 0.9, 0.999, 1e-8);
  return (grads) => opt.applyGradients(grads);
}

// ---------- run ----------
async function run(backend, mode) {
  if (A.weights) {
    const index = JSON.parse(fs.readFileSync(`${A.weights}.json`, "utf8"));
    const buf = fs.readFileSync(`${A.weights}.bin`);
    loaded = { index, data: new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4) };
  }
  const m = buildModel(mode, A.linear);
  const ids = loaded?.index.ids
    ? tf.tensor(
        Int32Array.from(loaded.data.subarray(loaded.index.ids[1], loaded.index.ids[1] + BATCH * (SEQ + 1))),
        [BATCH, SEQ + 1],
        "int32",
      )
    : tf.randomUniform([BATCH, SEQ + 1], 0, VOCAB, "int32", 1);
  const x = tf.reshape(tf.slice(ids, [0, 0], [BATCH, SEQ]), [TOK]);
  const y = tf.reshape(tf.slice(ids, [0, 1], [BATCH, SEQ]), [TOK]);
  // tf.oneHot(..., 'float32') returns garbage on tfjs-wasm 4.22: build int32 and cast
  const onehot = tf.cast(tf.oneHot(y, VOCAB), "float32");
  const vars = m.trainable;
  const update = A.opt === "adam" ? makeTfAdam(vars, A.lr) : makeAdamW(vars, A.lr);
  const step = () =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => lossFn(m, x, onehot), vars);
      update(grads);
      return value.dataSync()[0]; // the sync point; a number, not a tensor
    });
  const cpu = backend === "cpu";
  const warmup = cpu ? Math.min(A.warmup, A.cpuWarmup) : A.warmup;
  const steps = cpu ? Math.min(A.steps, A.cpuSteps) : A.steps;
  const losses = [],
    ts = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    losses.push(step());
    const dt = performance.now() - t0;
    if (i >= warmup) ts.push(dt);
    if (A.check)
      console.error(
        `# ${backend} ${mode} step ${i} loss ${losses[i].toFixed(5)} ${dt.toFixed(0)} ms tensors ${tf.memory().numTensors}`,
      );
  }
  const sorted = ts.slice().sort((a, b) => a - b);
  const med =
    sorted.length % 2
      ? sorted[sorted.length >> 1]
      : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  const size = (list) => list.reduce((s, v) => s + v.size, 0);
  const out = {
    backend: tf.getBackend(),
    mode,
    linear: A.linear,
    opt: A.opt,
    ms_per_step: +med.toFixed(1),
    ms_min: +sorted[0].toFixed(1),
    tokens_per_s: Math.round((TOK / med) * 1e3),
    gflop_per_step: +(flopsPerStep(mode) / 1e9).toFixed(2),
    gflops_effective: +(flopsPerStep(mode) / med / 1e6).toFixed(2),
    warmup,
    steps,
    trainable_params: size(vars),
    total_params: size(m.all),
    loss_first: +losses[0].toFixed(5),
    loss_last: +losses[losses.length - 1].toFixed(5),
    losses: losses.map((l) => +l.toFixed(5)),
    tfjs: tf.version.tfjs,
  };
  if (backend === "wasm") {
    out.wasm_simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
    out.wasm_threads = await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT");
  }
  console.log(JSON.stringify(out));
  if (A.profile) {
    const prof = await tf.profile(() => {
      step();
    });
    const by = new Map();
    let total = 0;
    for (const k of prof.kernels) {
      if (!tf.getKernel(k.name, backend)) continue; // composite wrappers (customGrad, ops) nest real kernels
      const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
      const key =
        k.name === "BatchMatMul" ? `BatchMatMul ${k.inputShapes.map((s) => s.join("x")).join(",")}` : k.name;
      by.set(key, (by.get(key) || 0) + ms);
      total += ms;
    }
    const top = [...by.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([k, v]) => [k, +(v / total).toFixed(3), +v.toFixed(1)]);
    const mm = [...by.entries()].filter(([k]) => k.startsWith("BatchMatMul")).reduce((s, [, v]) => s + v, 0);
    console.log(
      JSON.stringify({
        backend,
        mode,
        linear: A.linear,
        kernel_ms: +total.toFixed(1),
        kernels: prof.kernels.length,
        matmul_share: +(mm / total).toFixed(3),
        top_by_kernel_and_shapes: top,
      }),
    );
  }
  tf.disposeVariables();
  tf.dispose([ids, x, y, onehot, m.cos, m.sin, m.mask, ...m.all.filter((t) => !t.isDisposed)]);
}

for (const backend of A.backends) {
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed to initialise`);
  await tf.ready();
  for (const mode of A.modes) await run(backend, mode);
}
