// Reductions over any set of dims of a strided view. The offsets of the reduced block are the same for
// every output position, so they are computed once per call and the inner loops stay simple.

import type { View } from "../backend/backend.js";
import type { Kernel } from "../ops/signatures.js";
import { dataOf, stridedOffsets } from "./storage.js";

function split(x: View, dims: readonly number[]) {
  const { shape, strides, offset } = x.layout;
  const keep = shape.map((_, i) => i).filter((i) => !dims.includes(i));
  const outer = stridedOffsets(
    keep.map((d) => shape[d]!),
    keep.map((d) => strides[d]!),
    offset,
  );
  const inner = stridedOffsets(
    dims.map((d) => shape[d]!),
    dims.map((d) => strides[d]!),
    0,
  );
  return { outer, inner };
}

export const sum: Kernel<"sum"> = ([x], { dims }, out) => {
  const src = dataOf(x);
  const dst = dataOf(out);
  const { outer, inner } = split(x, dims);
  const o0 = out.layout.offset;
  for (let o = 0; o < outer.length; o++) {
    const base = outer[o]!;
    let acc = 0;
    for (let j = 0; j < inner.length; j++) acc += src[base + inner[j]!]!;
    dst[o0 + o] = acc;
  }
};

function extreme(sign: 1 | -1): Kernel<"max"> {
  return ([x], { dims }, out) => {
    const src = dataOf(x);
    const dst = dataOf(out);
    const { outer, inner } = split(x, dims);
    const o0 = out.layout.offset;
    for (let o = 0; o < outer.length; o++) {
      const base = outer[o]!;
      let acc = -sign * Number.POSITIVE_INFINITY;
      for (let j = 0; j < inner.length; j++) {
        const v = src[base + inner[j]!]!;
        if (sign * v > sign * acc || Number.isNaN(v)) acc = v; // NaN wins and then stays, as in PyTorch
      }
      dst[o0 + o] = acc;
    }
  };
}

function argExtreme(sign: 1 | -1): Kernel<"argmax"> {
  return ([x], { dim }, out) => {
    const src = dataOf(x);
    const dst = dataOf(out);
    const { outer, inner } = split(x, [dim]);
    const o0 = out.layout.offset;
    for (let o = 0; o < outer.length; o++) {
      const base = outer[o]!;
      let best = src[base]!;
      let at = 0;
      for (let j = 1; j < inner.length && !Number.isNaN(best); j++) {
        const v = src[base + inner[j]!]!;
        if (sign * v > sign * best || Number.isNaN(v)) {
          best = v;
          at = j;
        }
      }
      dst[o0 + o] = at;
    }
  };
}

export const reduceKernels = {
  sum,
  max: extreme(1),
  min: extreme(-1),
  argmax: argExtreme(1),
  argmin: argExtreme(-1),
};
