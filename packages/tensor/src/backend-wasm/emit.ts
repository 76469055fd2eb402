// A small WebAssembly binary emitter: enough of the module format and of the instruction set (i32, f32,
// 128-bit SIMD, structured control flow) to write the kernels of the wasm backend in TypeScript. Code is a
// flat byte array; the helpers below compose instructions as expressions (operands first, stack order).

export type Code = number[];
export type ValType = "i32" | "f32" | "v128";

const VALTYPE: Record<ValType, number> = { i32: 0x7f, f32: 0x7d, v128: 0x7b };

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
/** `l += n`. */
export const inc = (l: number, n: Code | number): Code =>
  set(l, add(get(l), typeof n === "number" ? i32c(n) : n));

// ---- memory (byte addresses; `off` is the constant offset immediate) ----
const memarg = (align: number, off: number): Code => [align, ...uleb(off)];
export const f32load = (addr: Code, off = 0): Code => [...addr, 0x2a, ...memarg(2, off)];
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
export const f32sub = bin(0x93);
export const f32mul = bin(0x94);
export const f32div = bin(0x95);
export const f32neg = (a: Code): Code => [...a, 0x8c];

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

/** `do body while (--n !== 0)`: n must be positive on entry. */
export function countDown(n: number, ...body: Code[]): Code {
  return [0x03, 0x40, ...body.flat(), ...tee(n, sub(get(n), i32c(1))), 0x0d, 0, 0x0b];
}

export function ifThen(cond: Code, then: Code, otherwise?: Code): Code {
  return [...cond, 0x04, 0x40, ...then, ...(otherwise ? [0x05, ...otherwise] : []), 0x0b];
}

// ---- functions and modules ----
export class Func {
  readonly params: ValType[] = [];
  readonly locals: ValType[] = [];
  body: Code = [];
  constructor(
    readonly name: string,
    paramCount: number,
  ) {
    for (let i = 0; i < paramCount; i++) this.params.push("i32");
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

/** A module importing one shared memory `env.memory` and exporting `funcs` (all i32 params, no results). */
export function encodeModule(
  funcs: readonly Func[],
  memory: { initial: number; maximum: number },
): Uint8Array {
  const types = funcs.map((f) => [0x60, ...vec(f.params.map((t) => [VALTYPE[t]])), 0]);
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
