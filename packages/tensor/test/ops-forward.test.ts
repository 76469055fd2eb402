// Forward results derived by hand (the derivation sits in a comment beside each), dtype promotion, views,
// numerical stability, the RNG, memory lifetimes, the 16-bit storage conversions and async reads.

import {
  arange,
  bfloat16BitsToFloat32,
  cat,
  chunk,
  crossEntropy,
  dropout,
  embedding,
  eye,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  full,
  getBackend,
  getRngState,
  keep,
  manualSeed,
  noGrad,
  ones,
  rand,
  randn,
  setRngState,
  split,
  stack,
  type Tensor,
  tensor,
  tidy,
  where,
  zeros,
} from "@tsgrad/tensor";
import { arbShape, arbTensor, expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const LN2 = Math.LN2;
const f64 = (v: number[] | number[][], shape?: number[]) =>
  shape ? tensor(Float64Array.from(v.flat()), { shape, dtype: "float64" }) : tensor(v, { dtype: "float64" });

describe("hand-derived forward results", () => {
  it("add broadcasts a row over a matrix", () => {
    // [[1,2,3],[4,5,6]] + [10,20,30] adds the row to each matrix row
    const y = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]).add(tensor([10, 20, 30]));
    expect(y.shape).toEqual([2, 3]);
    expect(y.tolistSync()).toEqual([
      [11, 22, 33],
      [14, 25, 36],
    ]);
  });

  it("broadcasts a column against a row into an outer sum", () => {
    // [[1],[2]] (2x1) - [10, 20, 30] (3) -> 2x3 with y[i][j] = a[i] - b[j]
    expect(
      tensor([[1], [2]])
        .sub(tensor([10, 20, 30]))
        .tolistSync(),
    ).toEqual([
      [-9, -19, -29],
      [-8, -18, -28],
    ]);
  });

  it("add with alpha scales the second operand", () => {
    // 1 + 2*3 = 7, 2 + 2*4 = 10; 1 - 2*3 = -5
    expect(
      tensor([1, 2])
        .add(tensor([3, 4]), 2)
        .tolistSync(),
    ).toEqual([7, 10]);
    expect(
      tensor([1])
        .sub(tensor([3]), 2)
        .tolistSync(),
    ).toEqual([-5]);
  });

  it("matmul of 2x2 matrices, 1-D cases and a broadcast batch", () => {
    // [[1,2],[3,4]] @ [[5,6],[7,8]] = [[1*5+2*7, 1*6+2*8], [3*5+4*7, 3*6+4*8]] = [[19,22],[43,50]]
    const a = f64([1, 2, 3, 4], [2, 2]);
    const b = f64([5, 6, 7, 8], [2, 2]);
    expect(a.matmul(b).tolistSync()).toEqual([
      [19, 22],
      [43, 50],
    ]);
    // [1,2] . [3,4] = 11, a 0-d result
    const dot = f64([1, 2]).matmul(f64([3, 4]));
    expect(dot.shape).toEqual([]);
    expect(dot.itemSync()).toBe(11);
    // [1,2] @ b = [1*5+2*7, 1*6+2*8] = [19, 22]; a @ [1,1] = row sums [3, 7]
    expect(f64([1, 2]).matmul(b).tolistSync()).toEqual([19, 22]);
    expect(a.matmul(f64([1, 1])).tolistSync()).toEqual([3, 7]);
    // batch [2,1] x batch [3] -> [2,3]: C[i][j] = ((i+1) I) @ ((j+1) b) = (i+1)(j+1) b
    const I = eye(2, 2, { dtype: "float64" });
    const A = stack([I, I.mul(2)]).unsqueeze(1);
    const B = stack([b, b.mul(2), b.mul(3)]);
    const C = A.matmul(B);
    expect(C.shape).toEqual([2, 3, 2, 2]);
    expect(C.narrow(0, 1, 1).narrow(1, 2, 1).reshape(2, 2).tolistSync()).toEqual([
      [30, 36],
      [42, 48],
    ]); // 2 * 3 * b
  });

  it("sum, mean and var over dims with keepdim", () => {
    const x = f64([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(x.sum(0).tolistSync()).toEqual([5, 7, 9]); // column sums
    expect(x.sum(1).tolistSync()).toEqual([6, 15]); // row sums
    expect(x.sum(-1, true).shape).toEqual([2, 1]);
    expect(x.sum().itemSync()).toBe(21);
    expect(x.mean().itemSync()).toBe(3.5); // 21 / 6
    expect(x.mean(1).tolistSync()).toEqual([2, 5]);
    // var([1,2,3,4]): mean 2.5, squared deviations 2.25+0.25+0.25+2.25 = 5; /3 (Bessel) or /4
    expectAllClose(f64([1, 2, 3, 4]).var(), [5 / 3], { atol: 1e-15, rtol: 0 });
    expectAllClose(f64([1, 2, 3, 4]).var(0, { correction: 0 }), [5 / 4], { atol: 1e-15, rtol: 0 });
    // var of each row of x: deviations (-1, 0, 1), sum of squares 2, /2 = 1
    expect(x.var(1, { keepdim: true }).tolistSync()).toEqual([[1], [1]]);
  });

  it("max, min, argmax and argmin over dims", () => {
    const x = f64([3, 1, 4, 1, 5, 9], [2, 3]);
    expect(x.max(1).tolistSync()).toEqual([4, 9]);
    expect(x.min(0).tolistSync()).toEqual([1, 1, 4]);
    expect(x.argmax(1).tolistSync()).toEqual([2, 2]);
    expect(x.argmin(0).tolistSync()).toEqual([1, 0, 0]);
    expect(x.argmax().itemSync()).toBe(5); // over the flattened tensor
    expect(x.argmax(1).dtype).toBe("int32");
    expect(x.amax(0, true).shape).toEqual([1, 3]);
  });

  it("argmax and argmin pick the first index on ties", () => {
    expect(f64([1, 3, 3, 2]).argmax().itemSync()).toBe(1);
    expect(f64([2, 0, 0, 5]).argmin().itemSync()).toBe(1);
    expect(f64([7, 7, 7]).argmax().itemSync()).toBe(0);
    expect(f64([0, 2, 2, 1, 1, 0], [2, 3]).argmax(1).tolistSync()).toEqual([1, 0]);
  });

  it("NaN propagates through max, min, maximum and argmax", () => {
    const x = f64([1, Number.NaN, 3]);
    expect(x.max().itemSync()).toBeNaN();
    expect(x.min().itemSync()).toBeNaN();
    expect(f64([Number.NaN, 5]).max().itemSync()).toBeNaN();
    expect(f64([1, 2, Number.NaN, 4], [2, 2]).max(1).tolistSync()).toEqual([2, Number.NaN]);
    expect(
      f64([Number.NaN, 1])
        .maximum(f64([2, Number.NaN]))
        .tolistSync(),
    ).toEqual([Number.NaN, Number.NaN]);
    expect(x.argmax().itemSync()).toBe(1); // torch.argmax treats NaN as the largest value
  });

  it("unary math at known points", () => {
    // erf(1) and erf(0.5) from tables (Abramowitz & Stegun 7.1), erf(-x) = -erf(x)
    expectAllClose(
      f64([1, 0.5, -1, 0]).erf(),
      [0.8427007929497149, 0.5204998778130465, -0.8427007929497149, 0],
      {
        atol: 1e-15,
        rtol: 1e-14,
      },
    );
    // sigmoid(0) = 1/2; the two-branch kernel keeps +-1000 finite: 1 and 0
    expect(f64([0, 1000, -1000]).sigmoid().tolistSync()).toEqual([0.5, 1, 0]);
    // exact GELU at 1 is Phi(1) = 0.8413447460685429 (standard normal CDF); GELU(-x) = -x Phi(-x)
    expectAllClose(f64([1, 0]).gelu(), [0.8413447460685429, 0], { atol: 1e-15, rtol: 1e-14 });
    // tanh GELU at 1: 0.5 (1 + tanh(sqrt(2/pi) (1 + 0.044715)))
    expectAllClose(f64([1]).gelu("tanh"), [0.5 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * 1.044715))], {
      atol: 1e-15,
      rtol: 1e-14,
    });
    // silu(x) = x sigmoid(x): silu(0) = 0, silu(ln 3) = ln 3 * 3/4
    expectAllClose(f64([0, Math.log(3)]).silu(), [0, Math.log(3) * 0.75], { atol: 1e-15, rtol: 1e-14 });
    expect(f64([-1, 0, 2]).relu().tolistSync()).toEqual([0, 0, 2]);
    expect(f64([-3, 0, 2]).abs().tolistSync()).toEqual([3, 0, 2]);
    expect(f64([-3, 0, 2]).sign().tolistSync()).toEqual([-1, 0, 1]);
    expect(f64([4, 0.25]).sqrt().tolistSync()).toEqual([2, 0.5]);
    expect(f64([4, 0.25]).rsqrt().tolistSync()).toEqual([0.5, 2]);
    expect(f64([4, -0.5]).reciprocal().tolistSync()).toEqual([0.25, -2]);
    expect(
      f64([2, 9])
        .pow(f64([3, 0.5]))
        .tolistSync(),
    ).toEqual([8, 3]);
    expect(f64([-1, 0.5, 3]).clamp(0, 1).tolistSync()).toEqual([0, 0.5, 1]);
  });

  it("softmax and logSoftmax at exact points", () => {
    // softmax([0, ln 2, ln 3]) = [1, 2, 3] / 6
    expectAllClose(f64([0, LN2, Math.log(3)]).softmax(0), [1 / 6, 2 / 6, 3 / 6], {
      atol: 1e-15,
      rtol: 1e-14,
    });
    // logsumexp over equal entries: log(n e^a) = a + ln n
    expectAllClose(f64([0, 0]).logsumexp(0), [LN2], { atol: 1e-15, rtol: 0 });
    // softmax along dim 0 of a 2x2: each column normalised on its own
    expectAllClose(f64([0, 5, 0, 5], [2, 2]).softmax(0), [0.5, 0.5, 0.5, 0.5], { atol: 1e-15, rtol: 0 });
  });

  it("softmax, logSoftmax and logsumexp stay finite on logits like +-1000", () => {
    // shift by the max first: softmax([1000, 1000]) = [1/2, 1/2] rather than inf/inf
    expect(f64([1000, 1000]).softmax(0).tolistSync()).toEqual([0.5, 0.5]);
    expect(f64([-1000, -1000]).softmax(0).tolistSync()).toEqual([0.5, 0.5]);
    // [1000, 0, -1000]: e^-1000 underflows to 0, so the result is [1, 0, 0] exactly
    expect(f64([1000, 0, -1000]).softmax(0).tolistSync()).toEqual([1, 0, 0]);
    // logSoftmax([1000, 1000]) = 1000 - (1000 + ln 2) = -ln 2 each
    expectAllClose(f64([1000, 1000]).logSoftmax(0), [-LN2, -LN2], { atol: 1e-12, rtol: 0 });
    // logSoftmax([0, -1000]) = [-log(1 + e^-1000), -1000 - log(1 + e^-1000)] = [0, -1000]
    expect(f64([0, -1000]).logSoftmax(0).tolistSync()).toEqual([0, -1000]);
    // float32 too: exp(1000) would be inf there as well
    const f32 = tensor([1000, -1000, 999], { dtype: "float32" }).logSoftmax(0).dataSync();
    expect([...f32].every(Number.isFinite)).toBe(true);
    expectAllClose(f64([1000, 1000]).logsumexp(0), [1000 + LN2], { atol: 1e-12, rtol: 0 });
    expect(f64([-Infinity, -Infinity]).logsumexp(0).itemSync()).toBe(-Infinity);
  });

  it("-inf logits (masked positions) give exact zeros forward and backward, never NaN", () => {
    // softmax([-inf, 0, ln 3]) = [0, 1/4, 3/4]; d logsumexp / dx = softmax
    const x = f64([-Infinity, 0, Math.log(3)]).requiresGrad_();
    expectAllClose(x.softmax(0), [0, 0.25, 0.75], { atol: 1e-15, rtol: 0 });
    x.logsumexp(0).backward();
    expectAllClose(x.grad!, [0, 0.25, 0.75], { atol: 1e-15, rtol: 0 });
    // logSoftmax keeps -inf where the input is -inf; the gradient of sum(c * logSoftmax) is c - p * sum(c)
    const y = f64([-Infinity, 0, Math.log(3)]).requiresGrad_();
    const ls = y.logSoftmax(0);
    expect((ls.tolistSync() as number[])[0]).toBe(-Infinity);
    ls.mul(f64([0, 1, 1]))
      .sum()
      .backward();
    expectAllClose(y.grad!, [0, 1 - 0.25 * 2, 1 - 0.75 * 2], { atol: 1e-15, rtol: 0 });
    // crossEntropy over a causal-masked row: target 1 of [-inf, 0, ln 3] -> -log(1/4); grad p - onehot
    const z = f64([-Infinity, 0, Math.log(3)], [1, 3]).requiresGrad_();
    const loss = crossEntropy(z, tensor([1]));
    expectAllClose(loss, [2 * LN2], { atol: 1e-15, rtol: 0 });
    loss.backward();
    expectAllClose(z.grad!, [0, 0.25 - 1, 0.75], { atol: 1e-15, rtol: 0 });
  });

  it("zero-size dims: empty sums are 0, empty logsumexp is -inf, softmax of an empty dim is empty", () => {
    const e = zeros([2, 0], { dtype: "float64" });
    expect(e.sum(-1).tolistSync()).toEqual([0, 0]);
    expect(e.mean(-1).tolistSync()).toEqual([Number.NaN, Number.NaN]); // 0 / 0, as torch
    expect(e.logsumexp(-1).tolistSync()).toEqual([-Infinity, -Infinity]); // log(0)
    expect(e.softmax(-1).shape).toEqual([2, 0]);
    expect(e.logSoftmax(1).shape).toEqual([2, 0]);
    expect(e.matmul(zeros([0, 3], { dtype: "float64" })).tolistSync()).toEqual([
      [0, 0, 0],
      [0, 0, 0],
    ]); // an empty inner sum
    expect(cat([e, zeros([2, 1], { dtype: "float64" })], 1).shape).toEqual([2, 1]);
  });

  it("crossEntropy ignores -100 targets and averages over the kept ones", () => {
    // row 0: logits [0, 0], target 0 -> -log(1/2) = ln 2
    // row 1: logits [ln 3, 0], softmax [3/4, 1/4], target 1 -> -log(1/4) = 2 ln 2
    // row 2: ignored. mean over the 2 kept rows = (ln 2 + 2 ln 2) / 2 = 1.5 ln 2; sum = 3 ln 2
    const logits = f64([0, 0, Math.log(3), 0, 5, -5], [3, 2]);
    const target = tensor([0, 1, -100], { dtype: "int32" });
    expectAllClose(crossEntropy(logits, target), [1.5 * LN2], { atol: 1e-14, rtol: 0 });
    expectAllClose(crossEntropy(logits, target, { reduction: "sum" }), [3 * LN2], { atol: 1e-14, rtol: 0 });
    expectAllClose(crossEntropy(logits, target, { reduction: "none" }), [LN2, 2 * LN2, 0], {
      atol: 1e-14,
      rtol: 0,
    });
    // the same as dropping the ignored row
    expectAllClose(
      crossEntropy(logits, target),
      crossEntropy(logits.narrow(0, 0, 2), target.narrow(0, 0, 2)),
      { atol: 1e-15, rtol: 0 },
    );
    // all targets ignored: 0/0 = NaN, as in PyTorch
    expect(crossEntropy(logits, tensor([-100, -100, -100], { dtype: "int32" })).itemSync()).toBeNaN();
  });

  it("crossEntropy with label smoothing mixes in the uniform target", () => {
    // eps = 0.2, C = 2: loss = (1 - eps) nll + eps * mean_c(-log p_c)
    // row [ln 3, 0] target 1: nll = 2 ln 2, -log p = [ln(4/3), 2 ln 2]
    const eps = 0.2;
    const expected = (1 - eps) * 2 * LN2 + (eps * (Math.log(4 / 3) + 2 * LN2)) / 2;
    const loss = crossEntropy(f64([Math.log(3), 0], [1, 2]), tensor([1], { dtype: "int32" }), {
      label_smoothing: eps,
    });
    expectAllClose(loss, [expected], { atol: 1e-14, rtol: 0 });
  });

  it("where, maskedFill, tril and triu", () => {
    const c = tensor([true, false, true]);
    expect(where(c, f64([1, 2, 3]), f64([-1, -2, -3])).tolistSync()).toEqual([1, -2, 3]);
    expect(f64([1, 2, 3]).maskedFill(c, 0).tolistSync()).toEqual([0, 2, 0]);
    // a [2,1] mask broadcast over the columns of a 2x2
    expect(
      f64([1, 2, 3, 4], [2, 2])
        .maskedFill(tensor([[true], [false]]), -1)
        .tolistSync(),
    ).toEqual([
      [-1, -1],
      [3, 4],
    ]);
    const o = ones([3, 3], { dtype: "float64" });
    expect(o.tril().tolistSync()).toEqual([
      [1, 0, 0],
      [1, 1, 0],
      [1, 1, 1],
    ]);
    expect(o.triu(1).tolistSync()).toEqual([
      [0, 1, 1],
      [0, 0, 1],
      [0, 0, 0],
    ]);
    expect(o.tril(-1).tolistSync()).toEqual([
      [0, 0, 0],
      [1, 0, 0],
      [1, 1, 0],
    ]);
  });

  it("gather, indexSelect and embedding", () => {
    // torch.gather docs: t = [[1,2],[3,4]], gather(1, [[0,0],[1,0]]) = [[1,1],[4,3]]
    const t = f64([1, 2, 3, 4], [2, 2]);
    expect(
      t
        .gather(
          1,
          tensor([
            [0, 0],
            [1, 0],
          ]),
        )
        .tolistSync(),
    ).toEqual([
      [1, 1],
      [4, 3],
    ]);
    // along dim 0: out[i][j] = t[index[i][j]][j]
    expect(t.gather(0, tensor([[1, 0]])).tolistSync()).toEqual([[3, 2]]);
    expect(t.indexSelect(0, tensor([1, 1, 0])).tolistSync()).toEqual([
      [3, 4],
      [3, 4],
      [1, 2],
    ]);
    expect(t.indexSelect(1, tensor([1])).tolistSync()).toEqual([[2], [4]]);
    const w = f64([0, 0, 1, 1, 2, 2], [3, 2]); // row v is [v, v]
    const e = embedding(
      tensor([
        [2, 0],
        [1, 1],
      ]),
      w,
    );
    expect(e.shape).toEqual([2, 2, 2]);
    expect(e.tolistSync()).toEqual([
      [
        [2, 2],
        [0, 0],
      ],
      [
        [1, 1],
        [1, 1],
      ],
    ]);
  });
});

describe("dtype promotion", () => {
  it("infers int32, float32 and bool from nested arrays", () => {
    expect(tensor([1, 2]).dtype).toBe("int32");
    expect(tensor([1, 2.5]).dtype).toBe("float32");
    expect(tensor([true, false]).dtype).toBe("bool");
    expect(tensor(new Float64Array(2)).dtype).toBe("float64");
    // an empty list is float32, as torch.tensor([])
    expect(tensor([]).dtype).toBe("float32");
    expect(tensor([]).shape).toEqual([0]);
  });

  it("int with float gives float; a float scalar turns an int tensor into float32", () => {
    const i = tensor([1, 2]);
    expect(i.add(tensor([0.5, 0.5])).dtype).toBe("float32");
    expect(i.add(tensor([0.5, 0.5], { dtype: "float64" })).dtype).toBe("float64");
    expect(i.add(2).dtype).toBe("int32");
    expect(i.add(2).tolistSync()).toEqual([3, 4]);
    expect(i.mul(2.5).dtype).toBe("float32");
    expect(i.mul(2.5).tolistSync()).toEqual([2.5, 5]);
    // alpha scales a number operand as a number: 5 - 2 * 2 = 1 stays int32
    expect(tensor([5]).sub(2, 2).dtype).toBe("int32");
    expect(tensor([5]).sub(2, 2).tolistSync()).toEqual([1]);
    // a scalar never widens a float tensor
    expect(tensor([1], { dtype: "float32" }).add(1e-3).dtype).toBe("float32");
    expect(tensor([1], { dtype: "float32" }).add(tensor([1], { dtype: "float64" })).dtype).toBe("float64");
    expect(tensor(new Uint8Array([3])).add(tensor([1])).dtype).toBe("int32");
  });

  it("int / int is true division in float32", () => {
    const q = tensor([7, -7, 1]).div(tensor([2, 2, 4]));
    expect(q.dtype).toBe("float32");
    expect(q.tolistSync()).toEqual([3.5, -3.5, 0.25]);
    expect(tensor([3]).div(2).tolistSync()).toEqual([1.5]);
  });

  it("comparisons give bool; summing bool gives int32", () => {
    const m = tensor([1, 5, 3]).gt(2);
    expect(m.dtype).toBe("bool");
    expect(m.tolistSync()).toEqual([false, true, true]);
    expect(tensor([1, 2]).eq(1.5).tolistSync()).toEqual([false, false]);
    const n = m.sum();
    expect(n.dtype).toBe("int32");
    expect(n.itemSync()).toBe(2);
    expect(tensor([1, 2, 3]).mean().dtype).toBe("float32");
    expect(tensor([1, 2, 3]).mean().itemSync()).toBe(2);
  });

  it("bool tensors hold only 0 and 1, however they are made", () => {
    // a bool is x != 0: the Uint8Array values 2 and 5 are both true, so two elements are set
    const fromBytes = tensor(new Uint8Array([0, 2, 5]), { dtype: "bool" });
    expect(fromBytes.sum().itemSync()).toBe(2);
    expect(fromBytes.eq(tensor([false, true, true])).tolistSync()).toEqual([true, true, true]);
    expect(full([3], 2, { dtype: "bool" }).sum().itemSync()).toBe(3);
    expect(full([2], Number.NaN, { dtype: "bool" }).tolistSync()).toEqual([true, true]); // NaN != 0
    const filled = zeros([3], { dtype: "bool" }).maskedFill(tensor([true, false, true]), 5);
    expect(filled.sum().itemSync()).toBe(2);
  });

  it("casts: float to int truncates toward zero, to bool is x != 0", () => {
    expect(tensor([1.7, -1.7, 0.2]).int().tolistSync()).toEqual([1, -1, 0]);
    expect(tensor([0, -2, 0.5]).bool().tolistSync()).toEqual([false, true, true]);
    expect(tensor([true, false]).float().tolistSync()).toEqual([1, 0]);
  });
});

describe("views share storage and do not copy", () => {
  it("transpose, permute, narrow, expand, unsqueeze and reshape of contiguous input are views", () => {
    const x = arange(12, undefined, 1, { dtype: "float64" }).reshape(3, 4);
    const before = getBackend().liveBytes();
    const t = x.transpose(0, 1);
    expect(t.shape).toEqual([4, 3]);
    expect(t.strides).toEqual([1, 4]);
    expect(t.isContiguous).toBe(false);
    const n = x.narrow(1, 1, 2);
    expect(n.strides).toEqual([4, 1]);
    expect(n.offset).toBe(1);
    expect(n.tolistSync()).toEqual([
      [1, 2],
      [5, 6],
      [9, 10],
    ]);
    const r = x.narrow(0, 2, 1);
    expect(r.offset).toBe(8);
    const e = x.narrow(0, 0, 1).expand(5, 4);
    expect(e.strides).toEqual([0, 1]);
    const u = x.unsqueeze(1);
    expect(u.shape).toEqual([3, 1, 4]);
    const p = x.reshape(2, 6).permute(1, 0);
    expect(p.strides).toEqual([1, 6]);
    const v = x.view(-1);
    const s = x.slice(1, -2);
    expect(s.offset).toBe(2);
    expect(s.shape).toEqual([3, 2]);
    const [a, b] = x.split(2, 0);
    expect(b!.offset).toBe(8);
    expect(getBackend().liveBytes()).toBe(before); // none of the above allocated
    for (const view of [t, n, r, e, u, p, v, s, a!, b!]) expect(view._store).toBe(x._store);
    expect(x.contiguous()).toBe(x);
  });

  it("reshape of a non-contiguous view copies; view refuses", () => {
    const x = arange(6, undefined, 1, { dtype: "float64" }).reshape(2, 3);
    const before = getBackend().liveBytes();
    const flat = x.transpose(0, 1).reshape(-1);
    // x^T = [[0,3],[1,4],[2,5]] read row by row
    expect(flat.tolistSync()).toEqual([0, 3, 1, 4, 2, 5]);
    expect(getBackend().liveBytes() - before).toBe(6 * 8);
    expect(flat._store).not.toBe(x._store);
    expect(() => x.transpose(0, 1).view(-1)).toThrow(/view: tensor of shape \[3, 2\] is not contiguous/);
  });

  it("values read through strided views are right", () => {
    const x = arange(24, undefined, 1, { dtype: "float64" }).reshape(2, 3, 4);
    // permute(2, 0, 1)[k][i][j] = x[i][j][k] = 12 i + 4 j + k
    const p = x.permute(2, 0, 1);
    expect(p.narrow(0, 3, 1).tolistSync()).toEqual([
      [
        [3, 7, 11],
        [15, 19, 23],
      ],
    ]);
    expect(p.contiguous().isContiguous).toBe(true);
    expect(p.sum(0).tolistSync()).toEqual(x.sum(2).tolistSync());
  });
});

describe("kernels read strided views correctly (property)", () => {
  // op(view) must equal op(view.contiguous()) exactly: the same kernel arithmetic on the same values, only
  // the addressing differs. Views: transpose, narrow (offset), expand (stride 0), permute.
  type ViewFn = (t: Tensor) => Tensor;
  const arbView: fc.Arbitrary<{ x: Tensor; view: ViewFn; name: string }> = arbShape({
    minRank: 2,
    maxRank: 3,
    minDim: 2,
    maxDim: 4,
  }).chain((s) =>
    fc
      .record({
        x: arbTensor(s, { dtype: "float64" }),
        name: fc.constantFrom("transpose", "narrow", "expand", "permute", "narrow+transpose"),
      })
      .map(({ x, name }) => {
        const views: Record<string, ViewFn> = {
          transpose: (t) => t.transpose(0, -1),
          narrow: (t) => t.narrow(-1, 1, t.shape.at(-1)! - 1),
          expand: (t) => t.narrow(0, 1, 1).expand(3, ...t.shape.slice(1)),
          permute: (t) => t.permute(...t.shape.map((_, i) => t.ndim - 1 - i)),
          "narrow+transpose": (t) => t.narrow(0, 1, 1).transpose(0, -1),
        };
        return { x, view: views[name]!, name };
      }),
  );
  const ops: Record<string, (t: Tensor) => Tensor> = {
    exp: (t) => t.exp(),
    "add broadcast row": (t) => t.add(t.narrow(0, 0, 1)),
    "mul by itself": (t) => t.mul(t),
    "sum dim 0": (t) => t.sum(0),
    "sum dim -1 keepdim": (t) => t.sum(-1, true),
    "max dim 1": (t) => t.max(1),
    "argmin dim -1": (t) => t.argmin(-1),
    "matmul with its transpose": (t) => t.matmul(t.mT),
    "gather dim -1": (t) => t.gather(-1, zeros(t.shape, { dtype: "int32" }).add(t.shape.at(-1)! - 1)),
    "indexSelect dim 0": (t) => t.indexSelect(0, tensor([1, 0, 1])),
    "cat with itself": (t) => cat([t, t], 1),
    softmax: (t) => t.softmax(-1),
    "where gt 0": (t) => where(t.gt(0), t, t.neg()),
    "cast to float32": (t) => t.float(),
  };
  for (const [opName, op] of Object.entries(ops)) {
    it(opName, () => {
      fc.assert(
        fc.property(arbView, ({ x, view }) => {
          const v = view(x);
          expect(op(v).tolistSync()).toEqual(op(v.contiguous()).tolistSync());
        }),
        { numRuns: 25 },
      );
    });
  }
});

describe("float32 results match float64 within the f32 tolerance (property)", () => {
  // The float64 result of the same op is the reference; float32 may differ by input and output rounding.
  const ops: Record<string, [(t: Tensor) => Tensor, { min?: number; max?: number }]> = {
    exp: [(t) => t.exp(), {}],
    log: [(t) => t.log(), { min: 0.1, max: 4 }],
    sqrt: [(t) => t.sqrt(), { min: 0, max: 4 }],
    rsqrt: [(t) => t.rsqrt(), { min: 0.1, max: 4 }],
    sigmoid: [(t) => t.sigmoid(), { min: -20, max: 20 }],
    tanh: [(t) => t.tanh(), {}],
    erf: [(t) => t.erf(), {}],
    gelu: [(t) => t.gelu(), {}],
    "gelu tanh": [(t) => t.gelu("tanh"), {}],
    silu: [(t) => t.silu(), {}],
    softmax: [(t) => t.softmax(-1), { min: -30, max: 30 }],
    logSoftmax: [(t) => t.logSoftmax(-1), { min: -30, max: 30 }],
    logsumexp: [(t) => t.logsumexp(-1), { min: -30, max: 30 }],
    matmul: [(t) => t.matmul(t.mT), {}],
    sum: [(t) => t.sum(0), {}],
    mean: [(t) => t.mean(-1), {}],
    var: [(t) => t.var(-1), {}],
    crossEntropy: [(t) => crossEntropy(t, zeros([t.shape[0]!], { dtype: "int32" })), { min: -10, max: 10 }],
  };
  for (const [name, [op, range]] of Object.entries(ops)) {
    it(name, () => {
      fc.assert(
        fc.property(arbTensor(arbShape({ minRank: 2, maxRank: 2, minDim: 2, maxDim: 6 }), range), (x) => {
          expectAllClose(op(x.float()), op(x).dataSync(), TOLERANCES.f32);
        }),
        { numRuns: 20 },
      );
    });
  }
});

describe("cat, stack, split and chunk", () => {
  it("shapes and values", () => {
    const a = f64([1, 2, 3, 4], [2, 2]);
    const b = f64([5, 6], [1, 2]);
    expect(cat([a, b]).tolistSync()).toEqual([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    expect(cat([a, a], 1).shape).toEqual([2, 4]);
    expect(cat([a, a], -1).tolistSync()).toEqual([
      [1, 2, 1, 2],
      [3, 4, 3, 4],
    ]);
    expect(stack([a, a]).shape).toEqual([2, 2, 2]);
    expect(stack([a, a], 2).shape).toEqual([2, 2, 2]);
    expect(stack([a, a.mul(10)], -1).tolistSync()).toEqual([
      [
        [1, 10],
        [2, 20],
      ],
      [
        [3, 30],
        [4, 40],
      ],
    ]);
    // cat promotes: int32 with float64 gives float64
    expect(cat([tensor([1]), f64([0.5])]).dtype).toBe("float64");
  });

  it("split by size leaves a smaller last piece; by sections uses the sizes given", () => {
    const x = arange(5);
    expect(split(x, 2).map((p) => p.tolistSync())).toEqual([[0, 1], [2, 3], [4]]);
    expect(split(x, [1, 4]).map((p) => p.shape[0])).toEqual([1, 4]);
    expect(x.split(5).length).toBe(1);
  });

  it("chunk uses pieces of ceil(n / chunks), as torch.chunk", () => {
    // 5 in 3 chunks: ceil(5/3) = 2 -> [2, 2, 1]; 6 in 4 chunks: ceil(6/4) = 2 -> 3 pieces of 2
    expect(chunk(arange(5), 3).map((p) => p.shape[0])).toEqual([2, 2, 1]);
    expect(chunk(arange(6), 4).map((p) => p.shape[0])).toEqual([2, 2, 2]);
    expect(chunk(zeros([2, 7]), 2, 1).map((p) => p.shape)).toEqual([
      [2, 4],
      [2, 3],
    ]);
  });
});

describe("random numbers", () => {
  it("manualSeed reproduces randn, rand and dropout", () => {
    manualSeed(42);
    const a = [randn([5]).tolistSync(), rand([3]).tolistSync(), dropout(ones([8])).tolistSync()];
    manualSeed(42);
    const b = [randn([5]).tolistSync(), rand([3]).tolistSync(), dropout(ones([8])).tolistSync()];
    expect(b).toEqual(a);
    manualSeed(43);
    expect(randn([5]).tolistSync()).not.toEqual(a[0]);
  });

  it("getRngState / setRngState round-trip, including the spare normal", () => {
    manualSeed(5);
    randn([3]); // an odd count leaves a spare Box-Muller value
    const state = getRngState();
    expect(state.spare).not.toBeNull();
    const first = randn([7], { dtype: "float64" }).tolistSync();
    setRngState(JSON.parse(JSON.stringify(state)));
    expect(randn([7], { dtype: "float64" }).tolistSync()).toEqual(first);
  });

  it("float32 rand stays below 1 even when the 53-bit draw rounds up to 1.0 in float32", () => {
    // xoshiro128** outputs rotl(s1 * 5, 7) * 9. Pick s1 so the first output is 0xffffffff: then the
    // uniform's top 27 bits are all set, u >= 1 - 2^-27, and Math.fround(u) would be exactly 1.
    const inverse = (a: number) => {
      let x = a; // Newton's iteration for the inverse of an odd number mod 2^32
      for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(a, x));
      return x >>> 0;
    };
    const rotr = (v: number, k: number) => ((v >>> k) | (v << (32 - k))) >>> 0;
    const s1 = Math.imul(rotr(Math.imul(0xffffffff, inverse(9)) >>> 0, 7), inverse(5)) >>> 0;
    const state = { s: [1, s1, 2, 3] as [number, number, number, number], spare: null };
    setRngState(state);
    const u64 = rand([1], { dtype: "float64" }).itemSync();
    expect(u64).toBeGreaterThanOrEqual(1 - 2 ** -27);
    expect(Math.fround(u64)).toBe(1); // the case being guarded
    setRngState(state);
    const u32 = rand([1]).itemSync();
    expect(u32).toBeLessThan(1);
    expect(u32).toBe(1 - 2 ** -24);
  });

  it("rand is in [0, 1) and randn has mean ~0 and variance ~1", () => {
    manualSeed(9);
    const u = rand([10000], { dtype: "float64" });
    expect(u.min().itemSync()).toBeGreaterThanOrEqual(0);
    expect(u.max().itemSync()).toBeLessThan(1);
    // the mean of 10^4 uniforms has sd 0.29/100: 0.5 +- 0.015 is over 5 sd
    expect(Math.abs(u.mean().itemSync() - 0.5)).toBeLessThan(0.015);
    const z = randn([10000], { dtype: "float64" });
    expect(Math.abs(z.mean().itemSync())).toBeLessThan(0.05);
    expect(Math.abs(z.var().itemSync() - 1)).toBeLessThan(0.08);
  });
});

describe("memory: tidy, keep, dispose", () => {
  it("liveBytes is flat over 10 steps of a small training loop", () => {
    manualSeed(3);
    const backend = getBackend();
    const x = keep(randn([8, 4], { dtype: "float64" }));
    // targets from a fixed linear map, so the loss can go down
    const y = keep(noGrad(() => x.matmul(f64([1, -2, 0.5, 3], [4, 1]))));
    let w = keep(zeros([4, 1], { dtype: "float64", requiresGrad: true }));
    const live: number[] = [];
    const losses: number[] = [];
    for (let step = 0; step < 10; step++) {
      const { loss, next } = tidy(() => {
        const l = x.matmul(w).sub(y).square().mean();
        l.backward();
        const n = noGrad(() => w.sub(w.grad!.mul(0.1)));
        return { loss: l.itemSync(), next: keep(n) };
      });
      w.grad!.dispose();
      w.dispose();
      w = next;
      w.requiresGrad = true;
      losses.push(loss);
      live.push(backend.liveBytes());
    }
    expect(new Set(live).size).toBe(1);
    expect(losses[9]!).toBeLessThan(losses[0]!);
  });

  it("gradient accumulation over micro-batches keeps liveBytes flat", () => {
    const backend = getBackend();
    const c = keep(f64([5, 6]));
    const w = keep(f64([1, 2]).requiresGrad_());
    const live: number[] = [];
    for (let step = 0; step < 10; step++) {
      tidy(() => {
        for (let micro = 0; micro < 3; micro++) w.mul(c).sum().backward(); // accumulates into w.grad
      });
      expect(w.grad!.tolistSync()).toEqual([15, 18]); // 3 * c
      w.grad!.dispose();
      w.grad = null;
      live.push(backend.liveBytes());
    }
    expect(new Set(live).size).toBe(1);
  });

  it("a leaf's .grad has the leaf's dtype, even from a float64 gradient passed to backward", () => {
    const x = tensor([1, 2], { dtype: "float32", requiresGrad: true });
    x.backward(f64([0.5, 0.25]));
    expect(x.grad!.dtype).toBe("float32");
    expect(x.grad!.tolistSync()).toEqual([0.5, 0.25]);
    const y = tensor([1, 2], { dtype: "float32", requiresGrad: true });
    y.double().mul(3).sum().backward(); // d/dy = 3, cast back to float32
    expect(y.grad!.dtype).toBe("float32");
    expect(y.grad!.tolistSync()).toEqual([3, 3]);
  });

  it("two leaves never share one gradient tensor", () => {
    // d/da and d/db of sum((a + b) * c) are both c: the same dy, but each leaf owns its .grad
    const a = f64([1, 2]).requiresGrad_();
    const b = f64([3, 4]).requiresGrad_();
    a.add(b)
      .mul(f64([5, 6]))
      .sum()
      .backward();
    expect(a.grad).not.toBe(b.grad);
    a.grad!.dispose();
    expect(b.grad!.tolistSync()).toEqual([5, 6]);
  });

  it("disposing a leaf's .grad frees its memory", () => {
    const w = f64([1, 2]).requiresGrad_();
    w.mul(f64([3, 4]))
      .sum()
      .backward();
    const before = getBackend().liveBytes();
    w.grad!.dispose();
    expect(before - getBackend().liveBytes()).toBe(2 * 8);
  });

  it("tidy disposes intermediates and returns the result and nested results", () => {
    let inner: Tensor | undefined;
    const out = tidy(() => {
      inner = ones([3]).mul(2);
      return { a: inner.add(1), list: [inner.sub(1)] };
    });
    expect(inner!.isDisposed).toBe(true);
    expect(out.a.tolistSync()).toEqual([3, 3, 3]);
    expect(out.list[0]!.tolistSync()).toEqual([1, 1, 1]);
    expect(() => tidy(() => Promise.resolve(1) as unknown as number)).toThrow(/tidy: fn must be synchronous/);
  });

  it("tidy frees what it made when fn throws", () => {
    const backend = getBackend();
    const before = backend.liveBytes();
    const kept = tidy(() => {
      expect(() =>
        tidy(() => {
          ones([100]).add(1);
          throw new Error("boom");
        }),
      ).toThrow("boom");
      return ones([1]);
    });
    expect(backend.liveBytes() - before).toBe(4); // only the returned float32 [1]
    kept.dispose();
  });

  it("a view keeps the storage alive; memory is freed with the last reference", () => {
    const backend = getBackend();
    const x = f64([1, 1, 1, 1]);
    const before = backend.liveBytes();
    const v = x.narrow(0, 1, 2);
    x.dispose();
    expect(backend.liveBytes()).toBe(before); // v still holds the storage
    expect(v.tolistSync()).toEqual([1, 1]);
    v.dispose();
    expect(before - backend.liveBytes()).toBe(4 * 8);
  });

  it("using a disposed tensor throws, naming shape and dtype", () => {
    const x = full([2, 3], 1.5);
    x.dispose();
    expect(x.isDisposed).toBe(true);
    expect(() => x.dataSync()).toThrow(/Tensor \[2, 3\] float32 was used after dispose\(\)/);
    expect(() => x.add(1)).toThrow(/used after dispose/);
    // views and detach too: they must not read freed memory or free it a second time
    const before = getBackend().liveBytes();
    for (const view of [
      () => x.reshape(3, 2),
      () => x.transpose(0, 1),
      () => x.unsqueeze(0),
      () => x.detach(),
    ])
      expect(view).toThrow(/Tensor \[2, 3\] float32 was used after dispose\(\)/);
    expect(getBackend().liveBytes()).toBe(before);
    x.dispose(); // a second dispose is a no-op
  });
});

describe("16-bit storage conversions", () => {
  const bf16 = (v: number) => float32ToBfloat16Bits([v])[0];
  const f16 = (v: number) => float32ToFloat16Bits([v])[0];
  const fromBf16 = (b: number) => bfloat16BitsToFloat32(Uint16Array.of(b))[0];
  const fromF16 = (b: number) => float16BitsToFloat32(Uint16Array.of(b))[0];

  it("bfloat16: known bit patterns and round to nearest even", () => {
    // bf16 is the top half of float32: 1.0 = 0x3f800000 -> 0x3f80, -2 = 0xc0000000 -> 0xc000
    expect(bf16(1)).toBe(0x3f80);
    expect(bf16(-2)).toBe(0xc000);
    expect(bf16(0)).toBe(0);
    expect(bf16(-0)).toBe(0x8000);
    expect(bf16(Infinity)).toBe(0x7f80);
    // pi = 0x40490fdb: the low half 0x0fdb is below 0x8000, so it rounds down to 0x4049
    expect(bf16(Math.PI)).toBe(0x4049);
    // 1 + 2^-8 is halfway between 0x3f80 and 0x3f81: ties go to the even 0x3f80
    expect(bf16(1 + 2 ** -8)).toBe(0x3f80);
    // 1 + 3 * 2^-8 is halfway between 0x3f81 and 0x3f82: ties go to the even 0x3f82
    expect(bf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    // just above the halfway point rounds up
    expect(bf16(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    const nan = bf16(Number.NaN)!;
    expect(nan & 0x7f80).toBe(0x7f80);
    expect(nan & 0x7f).not.toBe(0);
    expect(fromBf16(0x3f80)).toBe(1);
    expect(fromBf16(0x4049)).toBe(3.140625); // 1.5703125 * 2
    expect(fromBf16(0xff80)).toBe(-Infinity);
  });

  it("float16: known bit patterns, the largest half 65504, overflow and round to nearest even", () => {
    expect(f16(1)).toBe(0x3c00);
    expect(f16(-2)).toBe(0xc000);
    expect(f16(-0)).toBe(0x8000);
    expect(f16(65504)).toBe(0x7bff); // (2 - 2^-10) * 2^15, the largest finite half
    expect(f16(65519)).toBe(0x7bff); // below the halfway point to 65536
    expect(f16(65520)).toBe(0x7c00); // the halfway point rounds to even, which is 2^16 = infinity
    expect(f16(1e6)).toBe(0x7c00);
    expect(f16(-Infinity)).toBe(0xfc00);
    expect(f16(0.1)).toBe(0x2e66); // 0.0999755859375
    expect(f16(1 / 3)).toBe(0x3555); // 0.333251953125
    // 1 + 2^-11 is halfway between 0x3c00 and 0x3c01: even 0x3c00; 1 + 3 * 2^-11: even 0x3c02
    expect(f16(1 + 2 ** -11)).toBe(0x3c00);
    expect(f16(1 + 3 * 2 ** -11)).toBe(0x3c02);
    // 2 - 2^-11 is halfway between 0x3bff and 0x4000: the mantissa carry lands on the even 0x4000
    expect(f16(2 - 2 ** -11)).toBe(0x4000);
    const nan = f16(Number.NaN)!;
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x3ff).not.toBe(0);
  });

  it("float16 subnormals", () => {
    expect(f16(2 ** -24)).toBe(0x0001); // the smallest subnormal
    expect(f16(2 ** -14)).toBe(0x0400); // the smallest normal
    expect(f16(1023 * 2 ** -24)).toBe(0x03ff); // the largest subnormal
    expect(f16(2 ** -25)).toBe(0); // halfway between 0 and 2^-24: even is 0
    expect(f16(1.5 * 2 ** -25)).toBe(0x0001); // above halfway
    expect(f16(3 * 2 ** -25)).toBe(0x0002); // 1.5 * 2^-24: halfway between 1 and 2, even is 2
    expect(f16(1023.5 * 2 ** -24)).toBe(0x0400); // rounds up out of the subnormals into 2^-14
    expect(f16(2 ** -26)).toBe(0);
    expect(f16(-(2 ** -24))).toBe(0x8001);
    expect(fromF16(0x0001)).toBe(2 ** -24);
    expect(fromF16(0x03ff)).toBe(1023 * 2 ** -24);
    expect(fromF16(0x8001)).toBe(-(2 ** -24));
  });

  it("float16 decodes and round-trips every finite half exactly", () => {
    expect(fromF16(0x3c00)).toBe(1);
    expect(fromF16(0x7bff)).toBe(65504);
    expect(fromF16(0x3555)).toBe(0.333251953125);
    expect(fromF16(0xfc00)).toBe(-Infinity);
    expect(fromF16(0x7e00)).toBeNaN();
    const all = Uint16Array.from({ length: 0x7c00 }, (_, i) => i);
    const back = float32ToFloat16Bits(float16BitsToFloat32(all));
    expect(back).toEqual(all);
    const bfAll = Uint16Array.from({ length: 0x7f80 }, (_, i) => i);
    expect(float32ToBfloat16Bits(bfloat16BitsToFloat32(bfAll))).toEqual(bfAll);
  });
});

describe("async reads", () => {
  it("data, item and tolist resolve to the values", async () => {
    const x = f64([1.5, -2], [2]);
    const d = await x.data();
    expect(d).toBeInstanceOf(Float64Array);
    expect([...d]).toEqual([1.5, -2]);
    expect(await x.sum().item()).toBe(-0.5);
    expect(await tensor([[true], [false]]).tolist()).toEqual([[true], [false]]);
    await expect(x.item()).rejects.toThrow(/item: expected a tensor with one element, got shape \[2\]/);
  });
});
