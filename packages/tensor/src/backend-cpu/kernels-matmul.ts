// Reference matmul over strided views: batch loop, then i-k-j with a float64 row accumulator (or dot
// products when B is stored transposed, as a Linear weight [out, in] is). Simple on purpose: the fast
// kernels live in the WebAssembly backend and are tested against this one.

import type { Kernel } from "../ops/signatures.js";
import { dataOf, stridedOffsets } from "./storage.js";

export const matmul: Kernel<"matmul"> = ([a, b], _attrs, out) => {
  const A = dataOf(a);
  const B = dataOf(b);
  const C = dataOf(out);
  const r = a.layout.shape.length;
  const [M, K] = [a.layout.shape[r - 2]!, a.layout.shape[r - 1]!];
  const N = b.layout.shape[r - 1]!;
  const batchShape = a.layout.shape.slice(0, -2);
  const aBatch = stridedOffsets(batchShape, a.layout.strides.slice(0, -2), a.layout.offset);
  const bBatch = stridedOffsets(batchShape, b.layout.strides.slice(0, -2), b.layout.offset);
  const [aM, aK] = [a.layout.strides[r - 2]!, a.layout.strides[r - 1]!];
  const [bK, bN] = [b.layout.strides[r - 2]!, b.layout.strides[r - 1]!];
  const acc = new Float64Array(N);
  let c = out.layout.offset;
  for (let t = 0; t < aBatch.length; t++) {
    const a0 = aBatch[t]!;
    const b0 = bBatch[t]!;
    if (bK === 1 && aK === 1 && bN !== 1) {
      // B is [N, K] row-major seen as [K, N]: each output is a dot product of two contiguous rows.
      for (let i = 0; i < M; i++) {
        const ai = a0 + i * aM;
        for (let j = 0; j < N; j++) {
          const bj = b0 + j * bN;
          let s = 0;
          for (let k = 0; k < K; k++) s += A[ai + k]! * B[bj + k]!;
          C[c++] = s;
        }
      }
      continue;
    }
    for (let i = 0; i < M; i++) {
      acc.fill(0);
      const ai = a0 + i * aM;
      for (let k = 0; k < K; k++) {
        const v = A[ai + k * aK]!;
        if (v === 0) continue;
        const bk = b0 + k * bK;
        for (let j = 0; j < N; j++) acc[j] += v * B[bk + j * bN]!;
      }
      for (let j = 0; j < N; j++) C[c++] = acc[j]!;
    }
  }
};
