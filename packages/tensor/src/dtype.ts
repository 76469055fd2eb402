// Data types, their typed-array storage, PyTorch-style type promotion, and the 16-bit storage conversions.

export type DType = "float32" | "float64" | "int32" | "uint8" | "bool";
export type FloatDType = "float32" | "float64";
export type TypedArray = Float32Array | Float64Array | Int32Array | Uint8Array;

export const DTYPES: readonly DType[] = ["float32", "float64", "int32", "uint8", "bool"];

const ARRAY_CTORS = {
  float32: Float32Array,
  float64: Float64Array,
  int32: Int32Array,
  uint8: Uint8Array,
  bool: Uint8Array,
} as const;

export function typedArrayFor(dtype: DType, size: number): TypedArray {
  return new ARRAY_CTORS[dtype](size);
}

export function bytesPerElement(dtype: DType): number {
  return ARRAY_CTORS[dtype].BYTES_PER_ELEMENT;
}

export function isFloat(dtype: DType): dtype is FloatDType {
  return dtype === "float32" || dtype === "float64";
}

export function assertDType(dtype: unknown, where: string): asserts dtype is DType {
  if (!DTYPES.includes(dtype as DType)) {
    throw new TypeError(
      `${where}: unknown dtype ${JSON.stringify(dtype)}; expected one of ${DTYPES.join(", ")}`,
    );
  }
}

/** The dtype a typed array stores by default (Uint8Array reads as uint8, never bool). */
export function dtypeOfArray(a: TypedArray): DType {
  if (a instanceof Float32Array) return "float32";
  if (a instanceof Float64Array) return "float64";
  if (a instanceof Int32Array) return "int32";
  return "uint8";
}

// PyTorch's ordering for promotion among the kinds we have: bool < uint8 < int32 < float32 < float64.
const RANK: Record<DType, number> = { bool: 0, uint8: 1, int32: 2, float32: 3, float64: 4 };

/** Result dtype of a binary op on two tensors (torch.promote_types restricted to our dtypes). */
export function promoteTypes(a: DType, b: DType): DType {
  return RANK[a] >= RANK[b] ? a : b;
}

/**
 * Result dtype when a tensor meets a JS number. As in PyTorch, a scalar never widens a float
 * tensor; a non-integer scalar turns an integer tensor into float32 (the default float dtype).
 */
export function promoteWithScalar(t: DType, v: number | boolean): DType {
  if (typeof v === "boolean") return t;
  if (isFloat(t)) return t;
  if (!Number.isInteger(v)) return "float32";
  return t === "bool" ? "int32" : t;
}

// ---- 16-bit storage formats: conversions only, never computed in ----

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> bfloat16 bits, round to nearest even (what torch's .to(torch.bfloat16) does). NaN stays NaN. */
export function float32ToBfloat16Bits(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    f32[0] = src[i]!;
    const bits = u32[0]!;
    if ((bits & 0x7fffffff) > 0x7f800000) {
      out[i] = (bits >>> 16) | 0x40; // quiet NaN
      continue;
    }
    const rounding = 0x7fff + ((bits >>> 16) & 1);
    out[i] = ((bits + rounding) >>> 16) & 0xffff;
  }
  return out;
}

export function bfloat16BitsToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) outBits[i] = src[i]! << 16;
  return out;
}

/** float32 -> IEEE half bits, round to nearest even, with subnormals and overflow to infinity. */
export function float32ToFloat16Bits(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    f32[0] = src[i]!;
    const x = u32[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      const half = 1 << (shift - 1);
      const rest = mant & ((1 << shift) - 1);
      let m = mant >>> shift;
      if (rest > half || (rest === half && (m & 1) === 1)) m++;
      out[i] = sign | m;
      continue;
    }
    const rest = mant & 0x1fff;
    let h = (e << 10) | (mant >>> 13);
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
    e = h; // carry may roll into the exponent, which is the correct rounding
    out[i] = sign | e;
  }
  return out;
}

export function float16BitsToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) out[i] = sign * mant * 2 ** -24;
    else if (exp === 0x1f) out[i] = mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else out[i] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return out;
}
