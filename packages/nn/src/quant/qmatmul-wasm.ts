// A fused 4-bit dequantize-and-matmul kernel in WebAssembly SIMD: y = x W^T and dx = dy W for a packed
// NF4/FP4 weight W [O, I], dequantizing one row of W at a time into an I-float scratch row (code-book
// lookup times block absmax) and running f32x4 dot products / axpys against it, so the float weight is
// never materialised. The module is emitted from TypeScript here (self-contained, its own memory); the
// tensor backend is not involved beyond copying x in and y out. float32 compute only.

import { type Tensor, tensor } from "@tsgrad/tensor";
import { absmaxOf, type QuantState4bit } from "./functional.js";

type Code = number[];

function uleb(n: number): Code {
  const out: Code = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}
function sleb(n: number): Code {
  const out: Code = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}
const vec = (items: Code[]): Code => [...uleb(items.length), ...items.flat()];
const str = (s: string): Code => vec([...new TextEncoder().encode(s)].map((b) => [b]));
const section = (id: number, body: Code): Code => [id, ...uleb(body.length), ...body];

// Instructions as expressions: operands first.
const get = (l: number): Code => [0x20, ...uleb(l)];
const set = (l: number, e: Code): Code => [...e, 0x21, ...uleb(l)];
const i32 = (n: number): Code => [0x41, ...sleb(n)];
const bin =
  (op: number) =>
  (a: Code, b: Code): Code => [...a, ...b, op];
const add = bin(0x6a);
const mul = bin(0x6c);
const and = bin(0x71);
const xor = bin(0x73);
const shl = bin(0x74);
const shrU = bin(0x76);
const fadd = bin(0x92);
const fmul = bin(0x94);
const load8u = (a: Code): Code => [...a, 0x2d, 0, 0];
const fload = (a: Code): Code => [...a, 0x2a, 2, 0];
const fstore = (a: Code, v: Code): Code => [...a, ...v, 0x38, 2, 0];
const SIMD = 0xfd;
const vload = (a: Code): Code => [...a, SIMD, 0x00, 0, 0];
const vstore = (a: Code, v: Code): Code => [...a, ...v, SIMD, 0x0b, 0, 0];
const vzero = (): Code => [SIMD, 0x0c, ...new Array<number>(16).fill(0)];
const vsplat = (f: Code): Code => [...f, SIMD, 0x13];
const vlane = (v: Code, lane: number): Code => [...v, SIMD, 0x1f, lane];
const vadd = (a: Code, b: Code): Code => [...a, ...b, SIMD, ...uleb(0xe4)];
const vmul = (a: Code, b: Code): Code => [...a, ...b, SIMD, ...uleb(0xe6)];
/** for (i = start; i < end; i += step) body  (signed compare; end re-evaluated each time) */
function loop(i: number, start: Code, end: Code, step: number, body: Code): Code {
  return [
    ...set(i, start),
    0x02,
    0x40,
    0x03,
    0x40,
    ...get(i),
    ...end,
    0x4e, // i32.ge_s
    0x0d,
    1,
    ...body,
    ...set(i, add(get(i), i32(step))),
    0x0c,
    0,
    0x0b,
    0x0b,
  ];
}

// Parameters (all i32 byte addresses or counts).
const [N, O, I, SHIFT, LUT, ABSMAX, PACKED, SRC, DST, WROW] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const NPARAMS = 10;

interface Locals {
  o: number;
  j: number;
  n: number;
  g: number;
  i4: number;
  p: number;
  n4: number;
  rb: number;
  s: number; // f32
  acc: number[]; // v128 x 4
  wv: number; // v128
}

/** wrow[j] = lut[q(o*I + j)] * absmax[(o*I + j) >> shift] for j < I. */
function dequantRow(L: Locals): Code {
  const g = get(L.g);
  // nibble: high for even g, low for odd g -> shift (1 - (g & 1)) * 4
  const q = and(
    shrU(load8u(add(get(PACKED), shrU(g, i32(1)))), shl(xor(and(g, i32(1)), i32(1)), i32(2))),
    i32(15),
  );
  return loop(L.j, i32(0), get(I), 1, [
    ...set(L.g, add(mul(get(L.o), get(I)), get(L.j))),
    ...fstore(
      add(get(WROW), shl(get(L.j), i32(2))),
      fmul(fload(add(get(LUT), shl(q, i32(2)))), fload(add(get(ABSMAX), shl(shrU(g, get(SHIFT)), i32(2))))),
    ),
  ]);
}

function funcBody(kind: "gemm" | "gemmT"): Code {
  let next = NPARAMS;
  const L: Locals = {
    o: next++,
    j: next++,
    n: next++,
    g: next++,
    i4: next++,
    p: next++,
    n4: next++,
    rb: next++,
    s: next++,
    acc: [next++, next++, next++, next++],
    wv: next++,
  };
  const locals: Code[] = [
    [8, 0x7f],
    [1, 0x7d],
    [5, 0x7b],
  ];
  const wj = (j: Code) => add(get(WROW), shl(j, i32(2)));
  const pj = (j: Code) => add(get(L.p), shl(j, i32(2)));
  /** pointer to x[n + k, j] given p = &x[n, 0] and rb = I * 4 */
  const pkj = (k: number, j: Code) => add(add(get(L.p), mul(get(L.rb), i32(k))), shl(j, i32(2)));
  const hsum = (v: number) =>
    fadd(fadd(fadd(vlane(get(v), 0), vlane(get(v), 1)), vlane(get(v), 2)), vlane(get(v), 3));
  /** y[n + k, o] = hsum(acc[k]) + the scalar tail of row n + k */
  const finishRow = (k: number): Code => [
    ...set(L.s, hsum(L.acc[k]!)),
    ...loop(
      L.j,
      get(L.i4),
      get(I),
      1,
      set(L.s, fadd(get(L.s), fmul(fload(pkj(k, get(L.j))), fload(wj(get(L.j)))))),
    ),
    ...fstore(add(get(DST), shl(add(mul(add(get(L.n), i32(k)), get(O)), get(L.o)), i32(2))), get(L.s)),
  ];
  let perRow: Code;
  if (kind === "gemm") {
    // y[n, o] = sum_j x[n, j] * wrow[j]: four rows of x per pass share each load of wrow, then the rest.
    const four = [0, 1, 2, 3];
    perRow = [
      ...loop(L.n, i32(0), get(L.n4), 4, [
        ...set(L.p, add(get(SRC), mul(get(L.n), get(L.rb)))),
        ...four.flatMap((k) => set(L.acc[k]!, vzero())),
        ...loop(L.j, i32(0), get(L.i4), 4, [
          ...set(L.wv, vload(wj(get(L.j)))),
          ...four.flatMap((k) =>
            set(L.acc[k]!, vadd(get(L.acc[k]!), vmul(vload(pkj(k, get(L.j))), get(L.wv)))),
          ),
        ]),
        ...four.flatMap(finishRow),
      ]),
      ...loop(L.n, get(L.n4), get(N), 1, [
        ...set(L.p, add(get(SRC), mul(get(L.n), get(L.rb)))),
        ...set(L.acc[0]!, vzero()),
        ...loop(
          L.j,
          i32(0),
          get(L.i4),
          4,
          set(L.acc[0]!, vadd(get(L.acc[0]!), vmul(vload(pj(get(L.j))), vload(wj(get(L.j)))))),
        ),
        ...finishRow(0),
      ]),
    ];
  } else {
    // dx[n, :] += dy[n, o] * wrow
    perRow = loop(L.n, i32(0), get(N), 1, [
      ...set(L.p, add(get(DST), shl(mul(get(L.n), get(I)), i32(2)))),
      ...set(L.s, fload(add(get(SRC), shl(add(mul(get(L.n), get(O)), get(L.o)), i32(2))))),
      ...set(L.acc[0]!, vsplat(get(L.s))),
      ...loop(
        L.j,
        i32(0),
        get(L.i4),
        4,
        vstore(pj(get(L.j)), vadd(vload(pj(get(L.j))), vmul(get(L.acc[0]!), vload(wj(get(L.j)))))),
      ),
      ...loop(
        L.j,
        get(L.i4),
        get(I),
        1,
        fstore(pj(get(L.j)), fadd(fload(pj(get(L.j))), fmul(get(L.s), fload(wj(get(L.j)))))),
      ),
    ]);
  }
  const body = [
    ...set(L.i4, and(get(I), i32(-4))),
    ...set(L.n4, and(get(N), i32(-4))),
    ...set(L.rb, shl(get(I), i32(2))),
    ...loop(L.o, i32(0), get(O), 1, [...dequantRow(L), ...perRow]),
  ];
  const code = [...vec(locals), ...body, 0x0b];
  return [...uleb(code.length), ...code];
}

/** The module: imports env.memory, exports qgemm and qgemmT. */
export function qmatmulModuleBytes(): Uint8Array {
  const type = [0x60, ...vec(new Array<Code>(NPARAMS).fill([0x7f])), 0];
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([type])),
    ...section(2, vec([[...str("env"), ...str("memory"), 0x02, 0x00, ...uleb(1)]])),
    ...section(3, vec([uleb(0), uleb(0)])),
    ...section(
      7,
      vec([
        [...str("qgemm"), 0x00, 0],
        [...str("qgemmT"), 0x00, 1],
      ]),
    ),
    ...section(10, vec([funcBody("gemm"), funcBody("gemmT")])),
  ];
  return Uint8Array.from(bytes);
}

interface WasmMemoryLike {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmLike {
  Memory: new (d: { initial: number }) => WasmMemoryLike;
  Module: new (b: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}
type Kernel = (...a: number[]) => void;

let instance: { memory: WasmMemoryLike; qgemm: Kernel; qgemmT: Kernel } | null | undefined;

function kernels(): typeof instance {
  if (instance !== undefined) return instance;
  try {
    const W = (globalThis as unknown as { WebAssembly?: WasmLike }).WebAssembly;
    if (!W) {
      instance = null;
      return instance;
    }
    const memory = new W.Memory({ initial: 1 });
    const inst = new W.Instance(new W.Module(qmatmulModuleBytes()), { env: { memory } });
    instance = { memory, qgemm: inst.exports.qgemm as Kernel, qgemmT: inst.exports.qgemmT as Kernel };
  } catch {
    instance = null;
  }
  return instance;
}

/** WebAssembly with SIMD is available, so the fused kernel can run. */
export function fusedQmatmulAvailable(): boolean {
  return kernels() !== null;
}

const MAX_BYTES = 2 ** 31 - 2 ** 16;

/** Whether the fused kernel handles this state (float32 source dtype, power-of-two blocks, fits in memory). */
export function fusedQmatmulSupports(state: QuantState4bit, rows: number): boolean {
  if (state.dtype !== "float32" || state.shape.length !== 2) return false;
  const [O, I] = state.shape as [number, number];
  return layoutBytes(state, rows, O, I).total <= MAX_BYTES && O * I < 2 ** 31;
}

const up16 = (n: number) => Math.ceil(n / 16) * 16;

function layoutBytes(state: QuantState4bit, rows: number, O: number, I: number) {
  const lut = 0;
  const absmax = 64;
  const packed = absmax + up16(Math.ceil((O * I) / state.blocksize) * 4);
  const src = packed + up16(Math.ceil((O * I) / 2));
  const dst = src + up16(rows * Math.max(I, O) * 4);
  const wrow = dst + up16(rows * Math.max(I, O) * 4);
  return { lut, absmax, packed, src, dst, wrow, total: wrow + up16(I * 4) };
}

function run(kind: "qgemm" | "qgemmT", a: Tensor, packed: Uint8Array, state: QuantState4bit): Tensor {
  const k = kernels();
  if (!k) throw new Error("qmatmul4Fused: WebAssembly SIMD is not available");
  const [O, I] = state.shape as [number, number];
  const rows = a.shape[0]!;
  const lay = layoutBytes(state, rows, O, I);
  const need = Math.ceil(lay.total / 65536) - k.memory.buffer.byteLength / 65536;
  if (need > 0) k.memory.grow(need);
  const buf = k.memory.buffer;
  new Float32Array(buf, lay.lut, 16).set(state.code);
  const absmax = absmaxOf(state);
  new Float32Array(buf, lay.absmax, absmax.length).set(absmax);
  new Uint8Array(buf, lay.packed, packed.length).set(packed);
  const src = a.contiguous().dataSync() as Float32Array;
  new Float32Array(buf, lay.src, src.length).set(src);
  const outCols = kind === "qgemm" ? O : I;
  const out = new Float32Array(buf, lay.dst, rows * outCols);
  if (kind === "qgemmT") out.fill(0);
  const shift = Math.log2(state.blocksize);
  (kind === "qgemm" ? k.qgemm : k.qgemmT)(
    rows,
    O,
    I,
    shift,
    lay.lut,
    lay.absmax,
    lay.packed,
    lay.src,
    lay.dst,
    lay.wrow,
  );
  return tensor(out.slice(), { shape: [rows, outCols], dtype: "float32" });
}

/** y = x W^T for x [N, I] (float32) with the fused kernel. */
export function qmatmul4Fused(x: Tensor, packed: Uint8Array, state: QuantState4bit): Tensor {
  const x32 = x.dtype === "float32" ? x : x.to("float32");
  return run("qgemm", x32, packed, state);
}

/** dx = dy W for dy [N, O] (float32) with the fused kernel. */
export function qmatmul4TFused(dy: Tensor, packed: Uint8Array, state: QuantState4bit): Tensor {
  const d32 = dy.dtype === "float32" ? dy : dy.to("float32");
  return run("qgemmT", d32, packed, state);
}
