// A small WebAssembly binary emitter: enough of the module format and of the instruction set (i32, f32,
// 128-bit SIMD, structured control flow) to write the kernels of the wasm backend in TypeScript. Code is a
// flat byte array; the helpers below compose instructions as expressions (operands first, stack order).

export type Code = number[];
export type ValType = "i32" | "i64" | "f32" | "f64" | "v128";

const VALTYPE: Record<ValType, number> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b };

export function uleb(n: number): Code {
  const out: Code = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): Code {
  const out: Code = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function str(s: string): Code {
  const bytes = [...new TextEncoder().encode(s)];
  return [...uleb(bytes.length), ...bytes];
}

function vec(items: Code[]): Code {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, body: Code): Code {
  return [id, ...uleb(body.length), ...body];
}

export const cat = (...parts: Code[]): Code => parts.flat();

// ---- locals and constants ----
export const get = (l: number): Code => [0x20, ...uleb(l)];
export const set = (l: number, ...e: Code[]): Code => [...e.flat(), 0x21, ...uleb(l)];
export const tee = (l: number, ...e: Code[]): Code => [...e.flat(), 0x22, ...uleb(l)];
export const i32c = (n: number): Code => [0x41, ...sleb(n | 0)];
export const f32c = (x: number): Code => {
  const b = new Uint8Array(new Float32Array([x]).buffer);
  return [0x43, ...b];
};

// ---- i32 arithmetic and comparisons (signed) ----
const bin =
  (op: number) =>
  (a: Code, b: Code): Code => [...a, ...b, op];
export const add = bin(0x6a);
export const sub = bin(0x6b);
export const mul = bin(0x6c);
export const and = bin(0x71);
export const eq = bin(0x46);
export const ne = bin(0x47);
export const lt = bin(0x48);
export const gt = bin(0x4a);
export const ge = bin(0x4e);
/** min of two i32 expressions (each evaluated once). */
export const minI = (a: Code, b: Code, tmpA: number, tmpB: number): Code => [
  ...tee(tmpA, a),
  ...tee(tmpB, b),
  ...get(tmpA),
  ...get(tmpB),
  0x48,
  0x1b, // select: a if a < b else b
];
/** max of two i32 expressions (each evaluated once). */
export const maxI = (a: Code, b: Code, tmpA: number, tmpB: number): Code => [
  ...tee(tmpA, a),
  ...tee(tmpB, b),
  ...get(tmpA),
  ...get(tmpB),
  0x4a,
  0x1b, // select: a if a > b else b
];
/** `l += n`. */
export const inc = (l: number, n: Code | number): Code =>
  set(l, add(get(l), typeof n === "number" ? i32c(n) : n));

// ---- memory (byte addresses; `off` is the constant offset immediate) ----
const memarg = (align: number, off: number): Code => [align, ...uleb(off)];
export const f32load = (addr: Code, off = 0): Code => [...addr, 0x2a, ...memarg(2, off)];
export const i32load = (addr: Code, off = 0): Code => [...addr, 0x28, ...memarg(2, off)];
export const i32store = (addr: Code, v: Code, off = 0): Code => [...addr, ...v, 0x36, ...memarg(2, off)];
export const f32store = (addr: Code, v: Code, off = 0): Code => [...addr, ...v, 0x38, ...memarg(2, off)];
export const f32add = bin(0x92);
const simd = (op: number): Code => [0xfd, ...uleb(op)];
export const v128load = (addr: Code, off = 0): Code => [...addr, ...simd(0x00), ...memarg(4, off)];
export const v128store = (addr: Code, v: Code, off = 0): Code => [
  ...addr,
  ...v,
  ...simd(0x0b),
  ...memarg(4, off),
];
export const load32splat = (addr: Code, off = 0): Code => [...addr, ...simd(0x09), ...memarg(2, off)];
export const v128zero = (): Code => [...simd(0x0c), ...new Array<number>(16).fill(0)];
export const f32x4add = (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe4)];
export const f32x4mul = (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe6)];
export const f32x4sub = (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe5)];
export const f32x4div = (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe7)];
export const f32x4neg = (a: Code): Code => [...a, ...simd(0xe1)];
/** a b + c, fused where the hardware has FMA (relaxed SIMD f32x4.relaxed_madd; see relaxed.ts). */
export const f32x4madd = (a: Code, b: Code, c: Code): Code => [...a, ...b, ...c, ...simd(0x105)];
/** c - a b, fused where the hardware has FMA (f32x4.relaxed_nmadd). */
export const f32x4nmadd = (a: Code, b: Code, c: Code): Code => [...a, ...b, ...c, ...simd(0x106)];
export const f32sub = bin(0x93);
export const f32mul = bin(0x94);
export const f32div = bin(0x95);
export const f32neg = (a: Code): Code => [...a, 0x8c];

// ---- f64, i64 and conversions (for scalar double-precision code) ----
export const f64c = (x: number): Code => [0x44, ...new Uint8Array(new Float64Array([x]).buffer)];
export const i64c = (n: number): Code => [0x42, ...sleb(n)];
export const f64add = bin(0xa0);
export const f64sub = bin(0xa1);
export const f64mul = bin(0xa2);
export const f64div = bin(0xa3);
export const f64eq = bin(0x61);
export const f64lt = bin(0x63);
export const f64gt = bin(0x64);
export const f64ge = bin(0x66);
export const f64neg = (a: Code): Code => [...a, 0x9a];
export const i32or = bin(0x72);
export const remU = bin(0x70);
export const divU = bin(0x6e);
export const i32shl = bin(0x74);
export const i32shrU = bin(0x76);
export const i64shl = bin(0x86);
export const i64shrU = bin(0x88);
export const f64FromI32 = (a: Code): Code => [...a, 0xb7]; // f64.convert_i32_s
export const i32TruncF64 = (a: Code): Code => [...a, 0xaa]; // i32.trunc_f64_s (toward zero)
export const f64FromF32 = (a: Code): Code => [...a, 0xbb]; // f64.promote_f32
export const f32FromF64 = (a: Code): Code => [...a, 0xb6]; // f32.demote_f64 (round to nearest even)
export const i64Bits = (a: Code): Code => [...a, 0xbd]; // i64.reinterpret_f64
export const f64Bits = (a: Code): Code => [...a, 0xbf]; // f64.reinterpret_i64
export const i32FromI64 = (a: Code): Code => [...a, 0xa7]; // i32.wrap_i64
export const i64FromI32U = (a: Code): Code => [...a, 0xad]; // i64.extend_i32_u
/** `cond ? a : b` with both evaluated (select). */
export const select = (a: Code, b: Code, cond: Code): Code => [...a, ...b, ...cond, 0x1b];
export const ret = (v: Code): Code => [...v, 0x0f];
export const call = (fn: number, ...argsCode: Code[]): Code => [...argsCode.flat(), 0x10, ...uleb(fn)];

// ---- f64x2 and lane conversions ----
const sop =
  (op: number, ...imm: number[]) =>
  (...a: Code[]): Code => [...a.flat(), ...simd(op), ...imm];
/** v128.const of two equal f64 lanes. */
export const f64x2c = (x: number): Code => [
  ...simd(0x0c),
  ...new Uint8Array(new Float64Array([x, x]).buffer),
];
export const load64zero = (addr: Code, off = 0): Code => [...addr, ...simd(0x5d), ...memarg(3, off)];
export const store64lane0 = (addr: Code, v: Code, off = 0): Code => [
  ...addr,
  ...v,
  ...simd(0x5b),
  ...memarg(3, off),
  0,
];
export const f64x2PromoteLow = sop(0x5f);
export const f32x4DemoteZero = sop(0x5e);
export const f64x2abs = sop(0xec);
export const f64x2neg = sop(0xed);
export const f64x2add = sop(0xf0);
export const f64x2sub = sop(0xf1);
export const f64x2mul = sop(0xf2);
export const f64x2div = sop(0xf3);
export const f64x2eq = sop(0x47);
export const f64x2ne = sop(0x48);
export const f64x2lt = sop(0x49);
export const f64x2ge = sop(0x4c);
export const v128or = sop(0x50);
/** (a & mask) | (b & ~mask) */
export const bitselect = sop(0x52);
export const anyTrue = sop(0x53);
export const i32x4TruncSatF64x2 = sop(0xfc); // i32x4.trunc_sat_f64x2_s_zero
export const f64x2FromI32x4Low = sop(0xfe); // f64x2.convert_low_i32x4_s
export const i64x2FromI32x4Low = sop(0xc7); // i64x2.extend_low_i32x4_s
export const i64x2add = sop(0xce);
export const i64x2shl = sop(0xcb); // (v128, i32 shift)
export const f64x2extract = (v: Code, lane: number): Code => [...v, ...simd(0x21), lane];
export const f64x2replace = (v: Code, lane: number, x: Code): Code => [...v, ...x, ...simd(0x22), lane];
export const i64x2c = (n: number): Code => [
  ...simd(0x0c),
  ...new Uint8Array(new BigInt64Array([BigInt(n), BigInt(n)]).buffer),
];

// ---- control flow ----
/** `for (i = start; i < end; i += step) body` (end is re-evaluated each iteration; keep it a local). */
export function forRange(i: number, start: Code, end: Code, step: Code | number, ...body: Code[]): Code {
  return [
    ...set(i, start),
    0x02,
    0x40, // block
    0x03,
    0x40, // loop
    ...ge(get(i), end),
    0x0d,
    1, // br_if out of the block
    ...body.flat(),
    ...inc(i, step),
    0x0c,
    0, // br to the loop head
    0x0b,
    0x0b,
  ];
}

/** `do body while (cond)`: the body runs at least once, and no counter is compared on entry. */
export function doWhile(cond: Code, ...body: Code[]): Code {
  return [0x03, 0x40, ...body.flat(), ...cond, 0x0d, 0, 0x0b];
}

/** `do body while (--n !== 0)`: n must be positive on entry. */
export function countDown(n: number, ...body: Code[]): Code {
  return doWhile(tee(n, sub(get(n), i32c(1))), ...body);
}

export function ifThen(cond: Code, then: Code, otherwise?: Code): Code {
  return [...cond, 0x04, 0x40, ...then, ...(otherwise ? [0x05, ...otherwise] : []), 0x0b];
}

// ---- functions and modules ----
export class Func {
  readonly params: ValType[] = [];
  readonly locals: ValType[] = [];
  body: Code = [];
  /** `params`: a count of i32 parameters, or their types; `result`: the one result type, if any. */
  constructor(
    readonly name: string,
    params: number | ValType[],
    readonly result?: ValType,
  ) {
    if (typeof params === "number") for (let i = 0; i < params; i++) this.params.push("i32");
    else this.params.push(...params);
  }
  /** A new local of `type`; its index. */
  local(type: ValType = "i32"): number {
    this.locals.push(type);
    return this.params.length + this.locals.length - 1;
  }
  encode(): Code {
    const groups: Code[] = this.locals.map((t) => [1, VALTYPE[t]]);
    const code = [...vec(groups), ...this.body, 0x0b];
    return [...uleb(code.length), ...code];
  }
}

/** A module importing one shared memory `env.memory` and exporting `funcs` (function i is funcs[i]). */
export function encodeModule(
  funcs: readonly Func[],
  memory: { initial: number; maximum: number },
): Uint8Array {
  const types = funcs.map((f) => [
    0x60,
    ...vec(f.params.map((t) => [VALTYPE[t]])),
    ...(f.result ? [1, VALTYPE[f.result]] : [0]),
  ]);
  const imports = vec([
    [...str("env"), ...str("memory"), 0x02, 0x03, ...uleb(memory.initial), ...uleb(memory.maximum)],
  ]);
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(types)),
    ...section(2, imports),
    ...section(3, vec(funcs.map((_, i) => uleb(i)))),
    ...section(7, vec(funcs.map((f, i) => [...str(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vec(funcs.map((f) => f.encode()))),
  ];
  return Uint8Array.from(bytes);
}

/** Lane `i` of a in all four lanes (a shuffle: V8 computes it in a register, next to its use). */
export const lane32 = (a: Code, i: number): Code => shuffle32(a, a, [i, i, i, i]);

/**
 * i8x16.shuffle by 32-bit lanes: lane i of the result is lane `lanes[i]` of a (0-3) or of b (4-7).
 * Four of them transpose a 4 x 4 block (see transpose4).
 */
export const shuffle32 = (a: Code, b: Code, lanes: readonly [number, number, number, number]): Code => [
  ...a,
  ...b,
  ...simd(0x0d),
  ...lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]),
];

/**
 * Transposes the 4 x 4 block held in the v128 locals `rows` (row i = lane group of rows[i]) into the
 * locals `out`, using `tmp` (four v128 locals) as scratch; `out` may be `rows`.
 */
export function transpose4(rows: readonly number[], out: readonly number[], tmp: readonly number[]): Code {
  const [r0, r1, r2, r3] = rows as [number, number, number, number];
  const [t0, t1, t2, t3] = tmp as [number, number, number, number];
  return cat(
    set(t0, shuffle32(get(r0), get(r1), [0, 4, 1, 5])),
    set(t1, shuffle32(get(r2), get(r3), [0, 4, 1, 5])),
    set(t2, shuffle32(get(r0), get(r1), [2, 6, 3, 7])),
    set(t3, shuffle32(get(r2), get(r3), [2, 6, 3, 7])),
    set(out[0]!, shuffle32(get(t0), get(t1), [0, 1, 4, 5])),
    set(out[1]!, shuffle32(get(t0), get(t1), [2, 3, 6, 7])),
    set(out[2]!, shuffle32(get(t2), get(t3), [0, 1, 4, 5])),
    set(out[3]!, shuffle32(get(t2), get(t3), [2, 3, 6, 7])),
  );
}
