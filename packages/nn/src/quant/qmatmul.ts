// Matmuls against a 4-bit weight W [O, I] without a float copy of the whole of W: rows of W are dequantized
// a chunk at a time into one scratch buffer and multiplied with the backend's matmul. With one chunk this is
// the reference composition (dequantize_4bit, then x W^T) that bitsandbytes' Linear4bit.forward runs.

import {
  bfloat16BitsToFloat32,
  cat,
  float32ToBfloat16Bits,
  noGrad,
  type Tensor,
  tensor,
} from "@tsgrad/tensor";
import type { ComputeDType } from "./config.js";
import { absmaxOf, dequantize4bitArray, dequantize4bitRange, type QuantState4bit } from "./functional.js";

/** Elements of W dequantized at once (4 MiB of float32). */
export const QMATMUL_CHUNK_ELEMENTS = 1 << 20;

/** x rounded to bfloat16 (nearest even) and back, as a cast to torch.bfloat16 and back does. */
export function roundBf16(x: Tensor): Tensor {
  const d = x.dataSync();
  return tensor(bfloat16BitsToFloat32(float32ToBfloat16Bits(d)), { shape: x.shape, dtype: "float32" });
}

function toCompute(x: Tensor, computeDtype: ComputeDType): Tensor {
  const x32 = x.dtype === "float32" ? x : x.to("float32");
  return computeDtype === "bfloat16" ? roundBf16(x32) : x32;
}

function rowsTensor(
  packed: Uint8Array,
  state: QuantState4bit,
  absmax: Float32Array,
  r0: number,
  r1: number,
  computeDtype: ComputeDType,
): Tensor {
  const I = state.shape[1]!;
  const buf = new Float32Array((r1 - r0) * I);
  dequantize4bitRange(packed, state, absmax, r0 * I, r1 * I, buf);
  if (computeDtype === "bfloat16") buf.set(bfloat16BitsToFloat32(float32ToBfloat16Bits(buf)));
  return tensor(buf, { shape: [r1 - r0, I], dtype: "float32" });
}

export interface QMatmulOptions {
  computeDtype?: ComputeDType;
  /** Rows of W per chunk; default QMATMUL_CHUNK_ELEMENTS / I. */
  chunkRows?: number;
}

function chunkRowsOf(state: QuantState4bit, options: QMatmulOptions): number {
  const I = state.shape[1]!;
  return Math.max(1, options.chunkRows ?? Math.floor(QMATMUL_CHUNK_ELEMENTS / I));
}

function check2d(state: QuantState4bit, where: string): [number, number] {
  if (state.shape.length !== 2)
    throw new RangeError(`${where}: the weight must be 2-D, got [${state.shape.join(", ")}]`);
  return state.shape as [number, number];
}

/** y = x W^T for x [N, I] -> [N, O] (float32, rounded to bfloat16 when computeDtype is bfloat16). No autograd. */
export function qmatmul4(
  x: Tensor,
  packed: Uint8Array,
  state: QuantState4bit,
  options: QMatmulOptions = {},
): Tensor {
  const [O, I] = check2d(state, "qmatmul4");
  if (x.ndim !== 2 || x.shape[1] !== I)
    throw new RangeError(`qmatmul4: expected x of shape [N, ${I}], got [${x.shape.join(", ")}]`);
  const cd = options.computeDtype ?? "float32";
  return noGrad(() => {
    const xc = toCompute(x, cd);
    const absmax = absmaxOf(state);
    const step = chunkRowsOf(state, options);
    const parts: Tensor[] = [];
    for (let r0 = 0; r0 < O; r0 += step) {
      const r1 = Math.min(O, r0 + step);
      const w = rowsTensor(packed, state, absmax, r0, r1, cd);
      parts.push(xc.matmul(w.mT));
      w.dispose();
    }
    const y = parts.length === 1 ? parts[0]! : cat(parts, 1);
    if (parts.length > 1) for (const p of parts) p.dispose();
    if (xc !== x) xc.dispose();
    return cd === "bfloat16" ? roundBf16(y) : y;
  });
}

/** dx = dy W for dy [N, O] -> [N, I]: the input gradient of qmatmul4, W dequantized a chunk at a time. */
export function qmatmul4T(
  dy: Tensor,
  packed: Uint8Array,
  state: QuantState4bit,
  options: QMatmulOptions = {},
): Tensor {
  const [O] = check2d(state, "qmatmul4T");
  if (dy.ndim !== 2 || dy.shape[1] !== O)
    throw new RangeError(`qmatmul4T: expected dy of shape [N, ${O}], got [${dy.shape.join(", ")}]`);
  const cd = options.computeDtype ?? "float32";
  return noGrad(() => {
    const dyc = toCompute(dy, cd);
    const absmax = absmaxOf(state);
    const step = chunkRowsOf(state, options);
    let acc: Tensor | null = null;
    for (let r0 = 0; r0 < O; r0 += step) {
      const r1 = Math.min(O, r0 + step);
      const w = rowsTensor(packed, state, absmax, r0, r1, cd);
      const part = dyc.narrow(1, r0, r1 - r0).matmul(w);
      w.dispose();
      if (acc === null) acc = part;
      else {
        const next: Tensor = acc.add(part);
        acc.dispose();
        part.dispose();
        acc = next;
      }
    }
    if (dyc !== dy) dyc.dispose();
    return cd === "bfloat16" ? roundBf16(acc!) : acc!;
  });
}

/** The reference composition: dequantize all of W, then x W^T. */
export function qmatmul4Reference(
  x: Tensor,
  packed: Uint8Array,
  state: QuantState4bit,
  computeDtype: ComputeDType = "float32",
): Tensor {
  return noGrad(() => {
    const [O, I] = check2d(state, "qmatmul4Reference");
    let w = tensor(dequantize4bitArray(packed, state), { shape: [O, I], dtype: "float32" });
    let xc = x.dtype === "float32" ? x : x.to("float32");
    if (computeDtype === "bfloat16") {
      w = roundBf16(w);
      xc = roundBf16(xc);
    }
    const y = xc.matmul(w.mT);
    return computeDtype === "bfloat16" ? roundBf16(y) : y;
  });
}
