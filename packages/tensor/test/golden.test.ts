// Golden tests against PyTorch: forward values and input gradients of every op family, replayed from
// fixtures/ops/*.json (written by scripts/gen-fixtures/ops.py; see fixtures/ops/VERSIONS.json). Each case
// backpropagates sum(out * v) for the recorded projection v, so every output element's gradient counts.

import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  cat,
  crossEntropy,
  type DType,
  embedding,
  logsumexp,
  maximum,
  minimum,
  ones,
  pow,
  stack,
  type Tensor,
  tensor,
  triu,
  where,
} from "@tsgrad/tensor";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { describe, expect, it } from "vitest";

type Num = number | "nan" | "inf" | "-inf";
interface Values {
  shape: number[];
  data: Num[];
}
interface Input extends Values {
  name: string;
  dtype: DType;
  requiresGrad: boolean;
}
interface Case {
  name: string;
  op: string;
  dtype: "float32" | "float64";
  attrs: Record<string, unknown>;
  inputs: Input[];
  outputs: Values[];
  v: Values[];
  grads: (Values | null)[];
}

const FIXTURES = fileURLToPath(new URL("../../../fixtures/ops/", import.meta.url));
/** float64 replays of float64 PyTorch: both sides round differently only in the last bits. */
const F64 = { atol: 1e-10, rtol: 1e-10 };

const num = (v: unknown): number =>
  v === "nan"
    ? Number.NaN
    : v === "inf"
      ? Number.POSITIVE_INFINITY
      : v === "-inf"
        ? Number.NEGATIVE_INFINITY
        : (v as number);
const nums = (vals: Values): number[] => vals.data.map(num);

type Op = (x: Tensor[], a: Record<string, unknown>) => Tensor | Tensor[];
const n = (a: Record<string, unknown>, key: string): number => num(a[key]);
const dims = (a: Record<string, unknown>): number | number[] | undefined =>
  a.dim === null ? undefined : (a.dim as number | number[]);

/** Fixture op name -> the same computation with tsgrad. */
const OPS: Record<string, Op> = {
  // unary
  exp: ([x]) => x!.exp(),
  log: ([x]) => x!.log(),
  sqrt: ([x]) => x!.sqrt(),
  rsqrt: ([x]) => x!.rsqrt(),
  sin: ([x]) => x!.sin(),
  cos: ([x]) => x!.cos(),
  tanh: ([x]) => x!.tanh(),
  sigmoid: ([x]) => x!.sigmoid(),
  erf: ([x]) => x!.erf(),
  abs: ([x]) => x!.abs(),
  relu: ([x]) => x!.relu(),
  silu: ([x]) => x!.silu(),
  gelu: ([x]) => x!.gelu(),
  gelu_tanh: ([x]) => x!.gelu("tanh"),
  neg: ([x]) => x!.neg(),
  reciprocal: ([x]) => x!.reciprocal(),
  square: ([x]) => x!.square(),
  pow_scalar: ([x], a) => x!.pow(n(a, "p")),
  on_transposed: ([x], a) => OPS[a.inner as string]!([x!.mT], {}) as Tensor,
  on_transposed_dim: ([x], a) => OPS[a.inner as string]!([x!.mT], a) as Tensor,
  // binary, broadcasting
  add: ([a, b]) => a!.add(b!),
  sub: ([a, b]) => a!.sub(b!),
  mul: ([a, b]) => a!.mul(b!),
  div: ([a, b]) => a!.div(b!),
  maximum: ([a, b]) => maximum(a!, b!),
  minimum: ([a, b]) => minimum(a!, b!),
  pow: ([a, b]) => pow(a!, b!),
  add_alpha: ([a, b], at) => a!.add(b!, n(at, "alpha")),
  sub_alpha: ([a, b], at) => a!.sub(b!, n(at, "alpha")),
  mul_scalar: ([a], at) => a!.mul(n(at, "s")),
  rdiv_scalar: ([a], at) => pow(a!, -1).mul(n(at, "s")),
  rsub_scalar: ([a], at) => a!.neg().add(n(at, "s")),
  // selection
  where: ([c, a, b]) => where(c!, a!, b!),
  where_scalar: ([c, a], at) => where(c!, a!, n(at, "other")),
  masked_fill: ([x, m], a) => x!.maskedFill(m!, n(a, "value")),
  clamp: ([x], a) => x!.clamp(a.min as number | null, a.max as number | null),
  // reductions
  sum: ([x], a) => x!.sum(dims(a), a.keepdim as boolean),
  mean: ([x], a) => x!.mean(dims(a), a.keepdim as boolean),
  amax: ([x], a) => x!.amax(dims(a), a.keepdim as boolean),
  amin: ([x], a) => x!.amin(dims(a), a.keepdim as boolean),
  logsumexp: ([x], a) => logsumexp(x!, a.dim as number | number[], a.keepdim as boolean),
  var: ([x], a) => x!.var(dims(a), { correction: a.correction as number, keepdim: a.keepdim as boolean }),
  sum_permuted: ([x], a) => x!.permute(a.dims as number[]).sum(a.dim as number),
  sum_expanded: ([x], a) => x!.expand(a.shape as number[]).sum(a.dim as number[]),
  mean_transposed: ([x], a) => x!.mT.mean(a.dim as number, true),
  // softmax
  softmax: ([x], a) => x!.softmax(a.dim as number),
  log_softmax: ([x], a) => x!.logSoftmax(a.dim as number),
  // contraction
  matmul: ([a, b]) => a!.matmul(b!),
  matmul_tt: ([a, b]) => a!.transpose(-1, -2).matmul(b!.transpose(-1, -2)),
  // movement
  reshape: ([x], a) => x!.reshape(a.shape as number[]),
  transpose_reshape: ([x], a) => x!.transpose(a.d0 as number, a.d1 as number).reshape(a.shape as number[]),
  transpose: ([x], a) => x!.transpose(a.d0 as number, a.d1 as number),
  permute: ([x], a) => x!.permute(a.dims as number[]),
  expand: ([x], a) => x!.expand(a.shape as number[]),
  narrow: ([x], a) => x!.narrow(a.dim as number, a.start as number, a.length as number),
  slice: ([x], a) => x!.slice(a.dim as number, a.start as number, a.end as number),
  cat: (xs, a) => cat(xs, a.dim as number),
  stack: (xs, a) => stack(xs, a.dim as number),
  split: ([x], a) => x!.split(a.split as number | number[], a.dim as number),
  chunk: ([x], a) => x!.chunk(a.chunks as number, a.dim as number),
  tril: ([x], a) => x!.tril(a.diagonal as number),
  triu: ([x], a) => x!.triu(a.diagonal as number),
  squeeze_unsqueeze: ([x], a) => x!.squeeze(1).unsqueeze(a.dim as number),
  unsqueeze: ([x], a) => x!.unsqueeze(a.dim as number),
  flatten: ([x], a) => x!.flatten(a.start as number, a.end as number),
  // indexing
  gather: ([x, i], a) => x!.gather(a.dim as number, i!),
  index_select: ([x, i], a) => x!.indexSelect(a.dim as number, i!),
  gather_transposed: ([x, i], a) => x!.mT.gather(a.dim as number, i!),
  index_select_transposed: ([x, i], a) => x!.mT.indexSelect(a.dim as number, i!),
  embedding: ([ids, w]) => embedding(ids!, w!),
  // losses
  cross_entropy: ([logits, t], a) =>
    crossEntropy(logits!, t!, {
      ignore_index: -100,
      reduction: a.reduction as "mean" | "sum" | "none",
      label_smoothing: a.label_smoothing as number,
    }),
  log_softmax_nll: ([logits, t]) => logits!.logSoftmax(1).gather(1, t!.unsqueeze(1)).neg().mean(),
  // composites, where inputs fan out
  causal_attention: ([q, k, v]) => {
    const [T, d] = q!.shape.slice(-2) as [number, number];
    const future = triu(ones([T, T]), 1).gt(0);
    const scores = q!.matmul(k!.mT).div(Math.sqrt(d)).maskedFill(future, Number.NEGATIVE_INFINITY);
    return scores.softmax(-1).matmul(v!);
  },
  layer_norm: ([x, w, b], a) => {
    const mu = x!.mean(-1, true);
    const variance = x!.var(-1, { correction: 0, keepdim: true });
    return x!
      .sub(mu)
      .mul(variance.add(n(a, "eps")).rsqrt())
      .mul(w!)
      .add(b!);
  },
  rms_norm: ([x, w], a) => x!.mul(x!.square().mean(-1, true).add(n(a, "eps")).rsqrt()).mul(w!),
  swiglu_mlp: ([x, wg, wu, wd]) => x!.matmul(wg!.mT).silu().mul(x!.matmul(wu!.mT)).matmul(wd!.mT),
  fanout: ([x]) => x!.mul(x!).add(x!.exp().mul(x!.sum(0, true))),
};

function loadFamilies(): { family: string; cases: Case[] }[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith(".json") && f !== "VERSIONS.json")
    .sort()
    .map((f) => JSON.parse(readFileSync(FIXTURES + f, "utf8")) as { family: string; cases: Case[] });
}

/** float64 tensors (float64 all through) compare tightly; float32 ones, as in PyTorch, within TOLERANCES.f32. */
function check(label: string, actual: Tensor, expected: Values): void {
  expect(actual.shape, `${label} shape`).toEqual(expected.shape);
  const tol = actual.dtype === "float64" ? F64 : TOLERANCES.f32;
  try {
    expectAllClose(actual, nums(expected), tol);
  } catch (e) {
    throw new Error(`${label}: ${(e as Error).message}`);
  }
}

/** A leaf tensor from fixture values (float64 text, converted to the dtype as torch stored it). */
function build(vals: Values, dtype: DType, requiresGrad = false): Tensor {
  return tensor(Float64Array.from(nums(vals)), { dtype, shape: vals.shape, requiresGrad });
}

function runCase(c: Case): void {
  const op = OPS[c.op];
  if (!op) throw new Error(`no tsgrad mapping for fixture op "${c.op}"`);
  const inputs = c.inputs.map((i) => build(i, i.dtype, i.requiresGrad));
  const raw = op(inputs, c.attrs);
  const outs = Array.isArray(raw) ? raw : [raw];
  expect(outs.length, "number of outputs").toBe(c.outputs.length);
  outs.forEach((o, k) => {
    expect(o.dtype, `output ${k} dtype`).toBe(c.dtype);
    check(`output ${k}`, o, c.outputs[k]!);
  });
  if (!c.grads.some((g) => g !== null)) return;
  let loss: Tensor | null = null;
  outs.forEach((o, k) => {
    const v = build(c.v[k]!, c.dtype);
    const term = o.mul(v).sum();
    loss = loss === null ? term : loss.add(term);
  });
  (loss as Tensor | null)!.backward();
  c.grads.forEach((g, k) => {
    if (g === null) return;
    const grad = inputs[k]!.grad;
    if (grad === null) {
      // no path from the output: PyTorch's gradient must then be all zeros
      expect(
        nums(g).every((x) => x === 0),
        `grad of ${c.inputs[k]!.name} missing`,
      ).toBe(true);
      return;
    }
    expect(grad.dtype, `grad of ${c.inputs[k]!.name} dtype`).toBe(c.inputs[k]!.dtype);
    check(`grad of ${c.inputs[k]!.name}`, grad, g);
  });
}

const families = loadFamilies();

describe("golden fixtures vs PyTorch", () => {
  it("covers every op family and maps every fixture op", () => {
    expect(families.map((f) => f.family).sort()).toEqual(
      [
        "binary",
        "composite",
        "indexing",
        "loss",
        "matmul",
        "movement",
        "nonfinite",
        "reduce",
        "select",
        "softmax",
        "unary",
      ].sort(),
    );
    for (const f of families)
      for (const c of f.cases) expect(OPS[c.op], `${f.family}/${c.name}`).toBeDefined();
  });

  for (const { family, cases } of families) {
    describe(family, () => {
      for (const c of cases) it(c.name, () => runCase(c));
    });
  }
});
