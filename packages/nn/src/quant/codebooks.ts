// The code books of bitsandbytes (trl-peft-spec 3.2, 3.4) and the scalar quantizers that pick a code:
// NF4's and FP4's decision trees (the CUDA kernels dQuantizeNF4 / dQuantizeFP4) and the 8-bit dynamic
// map's binary search (dQuantize<0>). Every step is float32 arithmetic (Math.fround), as on the device.

const f = Math.fround;

/** NF4 (get_4bit_type("nf4")): index = 4-bit code, ascending. */
export const NF4_CODE: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** FP4 (get_4bit_type("fp4")): raw e2m1 values in bit-pattern order, divided by their max 12. */
export const FP4_CODE: Float32Array = (() => {
  const raw = [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3];
  return Float32Array.from(raw, (v) => f(v / 12));
})();

/** NF4 decision boundaries: float32 midpoints of consecutive code values (the CUDA tree's constants). */
export const NF4_THRESHOLDS: Float32Array = (() => {
  const t = new Float32Array(15);
  for (let i = 0; i < 15; i++) t[i] = f(f(NF4_CODE[i]! + NF4_CODE[i + 1]!) * 0.5);
  return t;
})();

/** Code of one scaled value in [-1, 1]; a value exactly on a boundary takes the lower code (x > t tests). */
export function quantizeNF4(x: number): number {
  // Binary search equivalent to the CUDA decision tree: count the boundaries strictly below x.
  let lo = 0;
  let hi = 15;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x > NF4_THRESHOLDS[mid]!) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const FP4_T = [0.29166667, 0.583333, 0.8333333, 0.4166667, 0.0859375, 0.20833333, 0.00260417].map(f);

/** CUDA dQuantizeFP4: sign bit 8 for x < 0, then a tree on |x| over the sorted-magnitude midpoints. */
export function quantizeFP4(x: number): number {
  const sign = x < 0 ? 8 : 0;
  const a = Math.abs(x);
  let c: number;
  if (a > FP4_T[0]!) {
    if (a > FP4_T[1]!) c = a > FP4_T[2]! ? 3 : 2;
    else c = a > FP4_T[3]! ? 5 : 4;
  } else if (a > FP4_T[4]!) c = a > FP4_T[5]! ? 7 : 6;
  else c = a > FP4_T[6]! ? 1 : 0;
  return c + sign;
}

/** torch.linspace(start, end, n, dtype=float32) on the CPU: from both ends towards the middle. */
export function linspaceF32(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  const s = f(start);
  const e = f(end);
  if (n === 1) {
    out[0] = s;
    return out;
  }
  const step = f(f(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) out[i] = i < half ? f(s + f(step * i)) : f(e - f(step * (n - 1 - i)));
  return out;
}

/**
 * create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for i = 0..6 the midpoints of
 * linspace(0.1, 1, 2^i + 1) times +-10^(i-6), plus 0 and 1.0, sorted. 256 values, no -1.0.
 */
export function createDynamicMap(): Float32Array {
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = linspaceF32(0.1, 1, 2 ** i + 1);
    const scale = f(10 ** (i - 6));
    for (let k = 0; k + 1 < b.length; k++) {
      const mean = f(f(b[k]! + b[k + 1]!) / 2);
      data.push(f(scale * mean), f(-scale * mean));
    }
  }
  data.push(0, 1.0);
  return Float32Array.from(data.sort((a, b) => a - b));
}

/** The default code of quantize_blockwise (and of double quantization's nested statistics). */
export const DYNAMIC_MAP: Float32Array = createDynamicMap();

/**
 * CUDA dQuantize<0>: a 7-step binary search over a sorted 256-entry code, then the nearer neighbour by
 * float32 midpoints; a value exactly on a midpoint stays on the search's (even) pivot.
 */
export function quantizeDynamic(code: Float32Array, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1.0;
  let upper = 1.0;
  let val = code[pivot]!;
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot]!;
  }
  if (upperPivot === 255) upper = code[upperPivot]!;
  if (lowerPivot === 0) lower = code[lowerPivot]!;
  if (x > val) {
    const midpoint = f(f(upper + val) * 0.5);
    return x > midpoint ? upperPivot : pivot;
  }
  const midpoint = f(f(lower + val) * 0.5);
  return x < midpoint ? lowerPivot : pivot;
}
