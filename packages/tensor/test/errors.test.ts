// Bad input throws an error that names the op, the shapes involved and what was expected.

import {
  arange,
  cat,
  createCpuBackend,
  crossEntropy,
  defineOp,
  dropout,
  embedding,
  getBackend,
  matmul,
  ones,
  randint,
  scatterAdd,
  setBackend,
  stack,
  type Tensor,
  tensor,
  where,
  withFusedKernels,
  zeros,
} from "@tsgrad/tensor";
import { describe, expect, it } from "vitest";

const x23 = () => zeros([2, 3]);

describe("shape errors name the op, the shapes and what was expected", () => {
  it("mismatched broadcast shapes", () => {
    expect(() => x23().add(zeros([4]))).toThrow(
      /add: shapes \[2, 3\] and \[4\] cannot be broadcast together: dim -1 is 3 vs 4/,
    );
    expect(() => x23().mul(zeros([3, 3]))).toThrow(/mul: shapes \[2, 3\] and \[3, 3\] cannot be broadcast/);
    expect(() => where(tensor([true, false, true]), x23(), zeros([2, 2]))).toThrow(
      /where: shapes .*\[2, 3\].*\[2, 2\]/,
    );
    expect(() => x23().maskedFill(tensor([[true], [false], [true]]), 0)).toThrow(
      /maskedFill: shapes \[3, 1\] and \[2, 3\] cannot be broadcast together/,
    );
    expect(() => zeros([3]).maskedFill(tensor([[true], [false]]), 0)).toThrow(
      /maskedFill: mask shape \[2, 1\] must broadcast to the input's shape \[3\]/,
    );
    expect(() => zeros([3]).expand(-1, 3)).toThrow(/expand: invalid shape \[-1, 3\]/); // -1 only for existing dims
    expect(() => x23().expand(4, 3)).toThrow(
      /expand: cannot expand \[2, 3\] to \[4, 3\]: dim 0 is 2, expected 1 or 4/,
    );
  });

  it("matmul inner dimensions and batch dimensions", () => {
    expect(() => zeros([2, 3]).matmul(zeros([4, 5]))).toThrow(
      /matmul: shapes \[2, 3\] and \[4, 5\] cannot be multiplied \(3 vs 4\); expected \[\.\.\., M, K\] x \[\.\.\., K, N\]/,
    );
    expect(() => zeros([3]).matmul(zeros([4]))).toThrow(
      /matmul: shapes \[3\] and \[4\] cannot be multiplied/,
    );
    // the batch dims 2 and 3 do not broadcast; the message shows the full operand shapes
    expect(() => zeros([2, 2, 3]).matmul(zeros([3, 3, 4]))).toThrow(
      /matmul.*\[2, 2, 3\].*\[3, 3, 4\].*cannot be broadcast/,
    );
    expect(() => matmul(zeros([]), zeros([3]))).toThrow(
      /matmul: both arguments need at least 1 dim, got \[\] and \[3\]/,
    );
  });

  it("dims out of range", () => {
    expect(() => x23().sum(2)).toThrow(/sum: dim 2 is out of range for a tensor of rank 2; expected -2\.\.1/);
    expect(() => x23().mean(-3)).toThrow(/mean: dim -3 is out of range/);
    expect(() => x23().max(5)).toThrow(/max: dim 5 is out of range/);
    expect(() => x23().argmax(2)).toThrow(/argmax: dim 2 is out of range/);
    expect(() => x23().softmax(2)).toThrow(/softmax: dim 2 is out of range/);
    expect(() => x23().transpose(0, 2)).toThrow(/transpose: dim 2 is out of range/);
    expect(() => x23().unsqueeze(3)).toThrow(
      /unsqueeze: dim 3 is out of range for a tensor of rank 3; expected -3\.\.2/,
    );
    expect(() => x23().size(2)).toThrow(/size: dim 2 is out of range for a tensor of rank 2/);
    expect(x23().size(-1)).toBe(3);
    expect(() => zeros([2, 0]).max(1)).toThrow(/max: cannot reduce over the empty dim 1 of shape \[2, 0\]/);
    expect(() => zeros([0]).argmax()).toThrow(/argmax: cannot reduce over the empty dim 0 of shape \[0\]/);
    expect(() => x23().sum([1, -1])).toThrow(/sum: dim \[1,-1\] repeats a dimension/);
    expect(() => x23().permute(0, 0)).toThrow(
      /permute: dims \[0, 0\] are not a permutation of the 2 dims of \[2, 3\]/,
    );
    expect(() => x23().narrow(1, 2, 2)).toThrow(
      /narrow: \[2, 4\) is out of range for dim 1 of size 3 in \[2, 3\]/,
    );
    expect(() => x23().flatten(1, 0)).toThrow(/flatten: startDim 1 comes after endDim 0/);
    expect(() => zeros([3]).tril()).toThrow(/tril: expected a tensor with at least 2 dims, got \[3\]/);
    expect(() => x23().split([1, 1], 1)).toThrow(
      /split: sections \[1, 1\] do not add up to 3 \(dim 1 of \[2, 3\]\)/,
    );
    expect(() => x23().chunk(0)).toThrow(/chunk: chunks must be >= 1, got 0/);
  });

  it("cat and stack with mismatched shapes", () => {
    expect(() => cat([x23(), zeros([2, 4])])).toThrow(/cat: shapes \[2, 3\], \[2, 4\] differ outside dim 0/);
    expect(() => cat([])).toThrow(/cat: expected a non-empty list/);
    expect(() => cat([tensor(1.5), tensor(2.5)])).toThrow(
      /cat: zero-dimensional tensors cannot be concatenated; use stack/,
    );
    expect(() => stack([x23(), zeros([3, 2])])).toThrow(/stack: shapes differ: \[2, 3\], \[3, 2\]/);
  });

  it("reshape to the wrong size and view on a non-contiguous tensor", () => {
    expect(() => x23().reshape(4, 2)).toThrow(
      /reshape: shape \[4, 2\] is invalid for a tensor of shape \[2, 3\] \(6 elements\)/,
    );
    expect(() => x23().reshape(-1, 4)).toThrow(
      /reshape: shape \[-1, 4\] is invalid for a tensor of shape \[2, 3\]/,
    );
    expect(() => x23().reshape(-1, -1)).toThrow(/reshape: only one dimension can be -1, got \[-1, -1\]/);
    expect(() => x23().view(5)).toThrow(/shape \[5\] is invalid for a tensor of shape \[2, 3\]/);
    expect(() => x23().transpose(0, 1).view(6)).toThrow(
      /view: tensor of shape \[3, 2\] is not contiguous; use reshape\(\) or contiguous\(\)/,
    );
  });

  it("creation with ragged nested arrays or bad shapes", () => {
    expect(() => tensor([[1, 2], [3]])).toThrow(
      /tensor: ragged nested array at dim 1: expected length 2, got 1/,
    );
    expect(() => tensor([[1, 2], 3] as never)).toThrow(
      /tensor: ragged nested array at dim 1: expected length 2, got number/,
    );
    expect(() => tensor([1, [2]] as never)).toThrow(
      /tensor: expected a number or boolean at depth 1, got \[2\]/,
    );
    expect(() => tensor(["a"] as never)).toThrow(/tensor: expected a number or boolean at depth 1, got "a"/);
    expect(() => tensor(new Float32Array(5), { shape: [2, 3] })).toThrow(
      /tensor: 5 values do not fill shape \[2, 3\] \(6 elements\)/,
    );
    // an inferred int32 (or an explicit integer dtype) must not wrap silently: 2^31 would read as -2^31
    expect(() => tensor([1, 2 ** 31])).toThrow(/tensor: 2147483648 does not fit in int32/);
    expect(() => tensor([300], { dtype: "uint8" })).toThrow(/tensor: 300 does not fit in uint8 \[0, 255\]/);
    expect(() => tensor([-1], { dtype: "uint8" })).toThrow(/does not fit in uint8/);
    expect(tensor([2 ** 31], { dtype: "float64" }).itemSync()).toBe(2 ** 31);
    expect(tensor([-(2 ** 31), 2 ** 31 - 1]).tolistSync()).toEqual([-(2 ** 31), 2 ** 31 - 1]);
    expect(() => zeros([2, -1])).toThrow(/full: invalid shape \[2, -1\]; dims must be integers >= 0/);
    expect(() => tensor([1], { dtype: "float16" as never })).toThrow(
      /tensor: unknown dtype "float16"; expected one of/,
    );
  });
});

describe("dtype misuse", () => {
  it("math that bool cannot do, and float-only ops on bool or int promote as in PyTorch", () => {
    const b = tensor([true, false]);
    expect(() => b.neg()).toThrow(/neg: expected a numeric tensor, got bool/);
    expect(() => b.add(b)).toThrow(/add: not defined on bool tensors/);
    expect(() => b.matmul(b)).toThrow(/matmul: not defined on bool tensors/);
    expect(() => b.logicalAnd(tensor([1, 0]))).toThrow(/logicalAnd: .*got bool and int32/);
    // torch.exp(bool) and torch.exp(int) compute in the default float dtype rather than throwing
    expect(b.exp().dtype).toBe("float32");
    expect(b.exp().tolistSync()).toEqual([Math.fround(Math.E), 1]);
  });

  it("where and maskedFill need a bool condition", () => {
    expect(() => where(tensor([1, 0]), zeros([2]), ones([2]))).toThrow(
      /where: condition must be a bool tensor, got int32/,
    );
    expect(() => zeros([2]).maskedFill(tensor([1, 0]), 1)).toThrow(
      /maskedFill: mask must be bool, got int32/,
    );
  });

  it("indices must be int32", () => {
    const x = x23();
    expect(() => x.gather(1, zeros([2, 1]))).toThrow(/gather: index must be an int32 tensor, got float32/);
    expect(() => x.indexSelect(0, tensor([true]))).toThrow(
      /indexSelect: index must be an int32 tensor, got bool/,
    );
    expect(() => embedding(tensor([0.5]), x)).toThrow(
      /indexSelect: index must be an int32 tensor, got float32/,
    );
    expect(() => crossEntropy(x, zeros([2]))).toThrow(
      /crossEntropy: target must be int32 class indices, got float32/,
    );
  });

  it("only floating-point tensors can require grad", () => {
    expect(() => tensor([1, 2], { requiresGrad: true })).toThrow(
      /tensor: only floating-point tensors can require grad, got int32/,
    );
    expect(() => zeros([2], { dtype: "bool", requiresGrad: true })).toThrow(
      /full: only floating-point tensors/,
    );
    expect(() => arange(3).requiresGrad_()).toThrow(
      /requiresGrad_: only floating-point tensors can require grad, got int32/,
    );
    expect(() => randint(0, 3, [2]).requiresGrad_()).toThrow(/got int32/);
    expect(arange(3).requiresGrad_(false).requiresGrad).toBe(false);
  });
});

describe("autograd misuse", () => {
  it("backward on a non-scalar needs a gradient of its shape", () => {
    const x = tensor([1, 2], { dtype: "float64", requiresGrad: true });
    expect(() => x.mul(2).backward()).toThrow(
      /backward: a gradient can be created implicitly only for scalar outputs, got shape \[2\]; pass a gradient of that shape/,
    );
    expect(() => x.mul(2).backward(ones([3], { dtype: "float64" }))).toThrow(
      /backward: gradient shape \[3\] does not match the tensor's shape \[2\]/,
    );
    expect(() => zeros([1]).sum().backward()).toThrow(/backward: the tensor \[\] does not require grad/);
  });

  it("a cast to int or bool cuts the graph, as in PyTorch", () => {
    const x = tensor([1.5, 2.5], { requiresGrad: true });
    const i = x.int();
    expect(i.requiresGrad).toBe(false);
    expect(x.bool().requiresGrad).toBe(false);
    expect(() => i.float().mul(3).sum().backward()).toThrow(
      /backward: the tensor \[\] does not require grad/,
    );
    expect(x.grad).toBeNull();
    // the same for a custom op with an integer result
    const firstIndex = defineOp({
      name: "firstIndex",
      forward: (t: Tensor) => t.argmax(),
      backward: () => [null],
    });
    expect(firstIndex(x).requiresGrad).toBe(false);
  });

  it("requiresGrad_ on a non-leaf", () => {
    const x = tensor([1.5], { requiresGrad: true });
    expect(() => x.mul(2).requiresGrad_()).toThrow(
      /requiresGrad_: only leaf tensors can change requiresGrad/,
    );
  });
});

describe("out-of-range indices", () => {
  it("gather, indexSelect and embedding name the index and the dim size", () => {
    const x = x23();
    expect(() => x.gather(1, tensor([[0], [3]]))).toThrow(
      /gather: index 3 is out of range for dim 1 of size 3/,
    );
    expect(() => x.indexSelect(0, tensor([2]))).toThrow(
      /indexSelect: index 2 is out of range for dim 0 of size 2/,
    );
    expect(() => embedding(tensor([[0, 7]]), zeros([5, 4]))).toThrow(
      /indexSelect: index 7 is out of range for dim 0 of size 5/,
    );
    // negative ids are an error, as in PyTorch: a stray -100 label must not read a row from the end
    expect(() => embedding(tensor([-100]), zeros([200, 4]))).toThrow(
      /index -100 is out of range for dim 0 of size 200/,
    );
    expect(() => x.gather(0, tensor([[-1, 0, 0]]))).toThrow(/gather: index -1 is out of range/);
    expect(() => x.indexSelect(1, tensor([-1]))).toThrow(/indexSelect: index -1 is out of range/);
  });

  it("a kernel that throws frees the output it was given", () => {
    const x = x23();
    const index = tensor([[0], [9]]);
    const before = getBackend().liveBytes();
    expect(() => x.gather(1, index)).toThrow(/gather: index 9 is out of range/);
    expect(getBackend().liveBytes()).toBe(before);
  });

  it("gather index larger than the input and indexSelect with a 2-D index", () => {
    expect(() => x23().gather(1, tensor([[0], [0], [0]]))).toThrow(
      /gather: index \[3, 1\] is larger than input \[2, 3\] at dim 0/,
    );
    // scatterAdd's index may not be larger than the output outside dim, or rows would spill into each other
    expect(() => scatterAdd(tensor([[0, 0, 0]]), ones([1, 3]), 0, [2, 2])).toThrow(
      /scatterAdd: index \[1, 3\] is larger than the output \[2, 2\] at dim 1/,
    );
    expect(() => x23().gather(1, tensor([0, 1]))).toThrow(/gather: index rank 1 must equal input rank 2/);
    expect(() => x23().indexSelect(0, tensor([[0]]))).toThrow(/indexSelect: index must be 1-D, got \[1, 1\]/);
  });

  it("crossEntropy with mismatched shapes", () => {
    expect(() => crossEntropy(zeros([2, 3, 4]), tensor([0, 1]))).toThrow(
      /crossEntropy: expected logits \[N, C\] and target \[N\], got \[2, 3, 4\] and \[2\]/,
    );
    expect(() => crossEntropy(x23(), tensor([0, 1, 2]))).toThrow(/got \[2, 3\] and \[3\]/);
    // a target outside the classes (here 3 with C = 3, or -1 which is not ignore_index)
    expect(() => crossEntropy(x23(), tensor([0, 3]))).toThrow(
      /crossEntropy: every target must be in \[0, 3\) or equal ignore_index -100 \(logits \[2, 3\]\); target\[1\] is 3/,
    );
    // the composition (no fused kernel) says the same, with gather's own words
    expect(() => withFusedKernels(false, () => crossEntropy(x23(), tensor([0, 3])))).toThrow(
      /crossEntropy: every target must be in \[0, 3\) or equal ignore_index -100 \(logits \[2, 3\]\); gather: index 3 is out of range/,
    );
    expect(() => crossEntropy(x23(), tensor([-1, 0]))).toThrow(
      /crossEntropy: every target must be in \[0, 3\)/,
    );
  });
});

describe("other arguments", () => {
  it("reads, random ops and options", () => {
    expect(() => x23().itemSync()).toThrow(/item: expected a tensor with one element, got shape \[2, 3\]/);
    expect(() => dropout(x23(), 1.5)).toThrow(/dropout: p must be in \[0, 1\], got 1.5/);
    expect(() => x23().clamp()).toThrow(/clamp: at least one of min and max must be given/);
    expect(() => arange(0, 3, 0)).toThrow(/arange: step must be non-zero/);
    expect(() => randint(3, 3, [2])).toThrow(/randint: expected low < high, got 3 and 3/);
    expect(() => setBackend("nope")).toThrow(/setBackend: no backend named "nope"/);
  });

  it("inputs on different backends", () => {
    const other = createCpuBackend("other-cpu");
    const a = zeros([2]);
    setBackend(other);
    try {
      const b = zeros([2]);
      expect(b.device).toBe("other-cpu");
      expect(() => a.add(b)).toThrow(
        /add: inputs live on different backends \(cpu, other-cpu\); move them with toDevice\(\)/,
      );
    } finally {
      setBackend("cpu");
    }
  });
});
