// The wasm backend's matmul entry points over the sgemm runner (gemm-run.ts): the matmul kernel, c += a b,
// and matmulPair. Operands outside the WebAssembly memory are staged in (stage.ts), and products too small
// to pay for that, or of other dtypes, run on the TypeScript kernel.

import type { Storage, View } from "../backend/backend.js";
import { cpuKernels } from "../backend-cpu/index.js";
import { CpuStorage, dataOf } from "../backend-cpu/storage.js";
import { typedArrayFor } from "../dtype.js";
import { PAIR_MAX_N2 } from "./gemm-pair.js";
import { type Gemm, productDims, transposedView } from "./gemm-run.js";
import type { Heap } from "./heap.js";
import { staged } from "./stage.js";

/** matmulPair's optional third product: out = scale a^T d. */
export interface PairThirdViews {
  d: View;
  scale: number;
  out: View;
}

/**
 * The wasm backend's matmulPair: out = a b and out2 = a b2, and with `third` its out = scale a^T d, in one
 * pass over a where sgemm_pair applies (float32, b2 narrow, enough work), else as separate products.
 */
export function wasmPair(deps: {
  gemm: Gemm;
  heap: Heap;
  inHeap: (s: Storage) => s is Storage & { addr: number };
  minWork: number;
  product: (a: View, b: View, out: View, accumulate: boolean) => void;
}): (a: View, b: View, b2: View, out: View, out2: View, third?: PairThirdViews) => void {
  const { gemm, heap, inHeap, minWork, product } = deps;
  return (a, b, b2, out, out2, third) => {
    const { M, N, K, T } = productDims(a, b);
    const N2 = b2.layout.shape.at(-1)!;
    const N3 = third ? third.d.layout.shape.at(-1)! : 0;
    // the third apart: a product with a transposed in place, then scaled in place (out3 is contiguous)
    const thirdApart = (t: PairThirdViews): void => {
      product(transposedView(a), t.d, t.out, false);
      const o = dataOf(t.out) as Float32Array;
      const at = t.out.layout.offset;
      for (let i = at; i < at + T * K * N3; i++) o[i]! *= t.scale;
    };
    const f32 = [a, b, b2, ...(third ? [third.d] : [])].every((v) => v.dtype === "float32");
    if (!f32 || N2 > PAIR_MAX_N2 || T * M * N * K < minWork || T * M * N * N2 * K === 0) {
      product(a, b, out, false);
      product(a, b2, out2, false);
      if (third) thirdApart(third);
      return;
    }
    let thirdDone = false;
    staged(
      heap,
      (st) => {
        const [aa, ab, ab2] = [st.base(a), st.base(b), st.base(b2)];
        const addresses = { a: aa, b: ab, b2: ab2, c: st.out(out, T * M * N), c2: st.out(out2, T * M * N2) };
        // C3 is added to: it comes zeroed (matmulPair allocates it so)
        const t = third && {
          view: third.d,
          d: st.base(third.d),
          c3: st.out(third.out, T * K * N3, true),
          scale: third.scale,
        };
        thirdDone = gemm.runPair(a, b, b2, addresses, t);
      },
      (v) => inHeap(v.storage),
    );
    if (third && !thirdDone) thirdApart(third);
  };
}

/**
 * The matmul kernel of the wasm backend: out = a b, or out += a b with `accumulate` (out contiguous), with
 * float32 products from `minWork` multiply-adds in WebAssembly (operands outside its memory staged in, the
 * product staged out) and the rest on the TypeScript kernel.
 */
export function wasmProduct(deps: {
  gemm: Gemm;
  heap: Heap;
  inHeap: (s: Storage) => s is Storage & { addr: number };
  minWork: number;
  counters: { matmulTs: number };
}): (a: View, b: View, out: View, accumulate: boolean) => void {
  const { gemm, heap, inHeap, minWork, counters } = deps;
  // NOTE: a function of its own rather than a closure made per call: tiny products are a few hundred ns
  const ts = (a: View, b: View, out: View, accumulate: boolean): void => {
    counters.matmulTs++;
    if (!accumulate) {
      cpuKernels.matmul([a, b], {}, out);
      return;
    }
    const n = out.layout.shape.reduce((x, y) => x * y, 1);
    const tmp: View = {
      ...out,
      storage: new CpuStorage(out.dtype, typedArrayFor(out.dtype, n)),
      layout: { ...out.layout, offset: 0 },
    };
    cpuKernels.matmul([a, b], {}, tmp);
    cpuKernels.add([out, tmp], {}, out);
  };
  return (a, b, out, accumulate) => {
    if (a.dtype !== "float32") {
      ts(a, b, out, accumulate);
      return;
    }
    const { M, N, K, T } = productDims(a, b);
    const flops = T * M * N * K;
    if (flops < minWork) {
      ts(a, b, out, accumulate);
      return;
    }
    if (flops === 0) {
      // K = 0: a sum of nothing (outputs need not come zero-filled)
      if (!accumulate)
        (dataOf(out) as Float32Array).fill(0, out.layout.offset, out.layout.offset + T * M * N);
      return;
    }
    // Operands outside this memory: copy the span each view covers in (keeping its strides), and the
    // product out (sgemm writes every element of C without reading it, so no zero fill; to add into C it
    // reads the staged copy); operands inside are read in place.
    staged(
      heap,
      (st) => {
        const [aAddr, bAddr] = [st.base(a), st.base(b)];
        gemm.run(a, b, aAddr, bAddr, st.out(out, T * M * N, accumulate), accumulate);
      },
      (v) => inHeap(v.storage),
    );
  };
}
