// The float32 matmul kernel of the wasm backend, written with the emitter: C = A B over strided A and B
// (any strides, so all four transpose cases and broadcast views need no copy), C row-major. Goto/BLIS
// structure: B is packed into KC x 8 column panels, A into 4 x KC row panels (gemm-pack.ts), and a 4 x 8
// register tile of eight f32x4 accumulators runs over each pair (two B vectors and four broadcast A
// scalars per k step). The tile is the largest V8 keeps in registers: it has 15 xmm registers for wasm
// and schedules every splat load of a k step before the arithmetic, so 4 x 12, 6 x 8 or a k loop unrolled
// in the wasm spill and run at half speed. Edges are zero-padded in the packs, so the micro-kernel always
// runs the full tile; partial tiles go through a small scratch block. The first K block writes C, later
// ones add to it, so C need not be zeroed. All addresses and strides are in bytes.

import {
  add,
  and,
  type Code,
  call,
  cat,
  encodeModule,
  eq,
  Func,
  f32add,
  f32c,
  f32load,
  f32store,
  f32x4add,
  f32x4mul,
  forRange,
  get,
  i32c,
  ifThen,
  inc,
  load32splat,
  lt,
  minI,
  mul,
  ne,
  select,
  set,
  sub,
  v128load,
  v128store,
  v128zero,
} from "./emit.js";
import { MR, NR, packA, packB } from "./gemm-pack.js";

export { MR, NR };

export const KC = 256;
export const MC = 32 * MR;
export const NC = 2048;
/** Bytes of the per-thread workspace: the A pack, the B pack and a tile scratch. */
export const PACK_A_BYTES = MC * KC * 4;
export const PACK_B_BYTES = NC * KC * 4;
export const SCRATCH_BYTES = MR * NR * 4;
export const WORKSPACE_BYTES = PACK_A_BYTES + PACK_B_BYTES + SCRATCH_BYTES;

/**
 * gebp(mc, nc, kc, pa, pb, c, ldc, scratch, first, aStep, aRow, bStep, bCol): C[mc, nc] += A B with the
 * MR x 8 tile, or C = A B when `first` is 1 (the first K block: C is never read, so it need not be zeroed).
 * A's MR values of step k are at `a + aStep k` (a = pa + aRow i for row block i) and B's 8 at
 * `b + bStep k` (b = pb + bCol j): packed panels (aStep 16, aRow 4 kc; bStep 32, bCol 4 kc), or, with no
 * pack, A stored column-major (aStep = its column stride, aRow 4) and B row-major (bStep = its row
 * stride, bCol 4).
 */
function gebp(): Func {
  const f = new Func("gebp", 13);
  const [mc, nc, kc, pa, pb, c, ldc, scratch, first] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [aStep, aRow, bStep, bCol] = [9, 10, 11, 12];
  const [jp, ip, cols, rows, a, b, bEnd, cp, r, j, t1, t2] = Array.from({ length: 12 }, () => f.local());
  const acc = Array.from({ length: 2 * MR }, () => f.local("v128"));
  const [b0, b1, s] = [f.local("v128"), f.local("v128"), f.local("v128")];
  // One k step. Not unrolled here: TurboFan unrolls this loop by two itself, and unrolling further in the
  // wasm makes it hoist every load of the group and spill accumulators.
  const step: Code[] = [set(b0, v128load(get(b))), set(b1, v128load(get(b), 16))];
  for (let i = 0; i < MR; i++) {
    step.push(set(s, load32splat(get(a), 4 * i)));
    step.push(set(acc[2 * i]!, f32x4add(get(acc[2 * i]!), f32x4mul(get(s), get(b0)))));
    step.push(set(acc[2 * i + 1]!, f32x4add(get(acc[2 * i + 1]!), f32x4mul(get(s), get(b1)))));
  }
  step.push(inc(a, get(aStep)), inc(b, get(bStep)));
  const storeTile = (accumulate: boolean): Code => {
    const out: Code[] = [set(cp, add(add(get(c), mul(get(ip), get(ldc))), mul(get(jp), i32c(4))))];
    for (let i = 0; i < MR; i++) {
      if (i > 0) out.push(inc(cp, get(ldc)));
      for (let h = 0; h < 2; h++) {
        const v = get(acc[2 * i + h]!);
        out.push(v128store(get(cp), accumulate ? f32x4add(v128load(get(cp), 16 * h), v) : v, 16 * h));
      }
    }
    return cat(...out);
  };
  const storeFull = ifThen(get(first), storeTile(false), storeTile(true));
  const storePartial: Code[] = acc.map((v, i) => v128store(get(scratch), get(v), 16 * i));
  storePartial.push(
    forRange(
      r,
      i32c(0),
      get(rows),
      1,
      forRange(
        j,
        i32c(0),
        get(cols),
        1,
        set(cp, add(add(get(c), mul(add(get(ip), get(r)), get(ldc))), mul(add(get(jp), get(j)), i32c(4)))),
        f32store(
          get(cp),
          f32add(
            select(f32c(0), f32load(get(cp)), get(first)),
            f32load(add(get(scratch), add(mul(get(r), i32c(4 * NR)), mul(get(j), i32c(4))))),
          ),
        ),
      ),
    ),
  );
  f.body = forRange(
    jp,
    i32c(0),
    get(nc),
    NR,
    set(cols, minI(sub(get(nc), get(jp)), i32c(NR), t1, t2)),
    forRange(
      ip,
      i32c(0),
      get(mc),
      MR,
      set(rows, minI(sub(get(mc), get(ip)), i32c(MR), t1, t2)),
      set(a, add(get(pa), mul(get(ip), get(aRow)))),
      set(b, add(get(pb), mul(get(jp), get(bCol)))),
      ...acc.map((v) => set(v, v128zero())),
      // do ... while (b != bEnd): no k counter, which V8 kept on the stack
      set(bEnd, add(get(b), mul(get(kc), get(bStep)))),
      [0x03, 0x40, ...step.flat(), ...ne(get(b), get(bEnd)), 0x0d, 0, 0x0b],
      ifThen(and(eq(get(rows), i32c(MR)), eq(get(cols), i32c(NR))), storeFull, cat(...storePartial)),
    ),
  );
  return f;
}

/**
 * The loop both drivers end in: for each MC block of A's rows [ic, ic + mc) in K block pc (kc deep), pack
 * it (unless `directA`: A is read in place, see gebp) and multiply by the B panel at `pb` (nc columns;
 * `bStep`, `bCol` as in gebp) into C at `c` (the block's first row is `c + ic ldc`). Locals and
 * parameters are the caller's, by index.
 */
function rowBlocks(
  v: Record<
    | "M"
    | "a"
    | "ars"
    | "acs"
    | "ldc"
    | "ic"
    | "mc"
    | "pa"
    | "pc"
    | "kc"
    | "scratch"
    | "t1"
    | "t2"
    | "directA"
    | "ap"
    | "acc",
    number
  >,
  nc: Code,
  pb: Code,
  c: Code,
  bStep: Code,
  bCol: Code,
): Code {
  const src = add(get(v.a), add(mul(get(v.ic), get(v.ars)), mul(get(v.pc), get(v.acs))));
  return forRange(
    v.ic,
    i32c(0),
    get(v.M),
    MC,
    set(v.mc, minI(sub(get(v.M), get(v.ic)), i32c(MC), v.t1, v.t2)),
    ifThen(
      get(v.directA),
      set(v.ap, src),
      cat(
        call(FN.pack_a, get(v.pa), src, get(v.ars), get(v.acs), get(v.mc), get(v.kc)),
        set(v.ap, get(v.pa)),
      ),
    ),
    call(
      FN.gebp,
      get(v.mc),
      nc,
      get(v.kc),
      get(v.ap),
      pb,
      add(c, mul(get(v.ic), get(v.ldc))),
      get(v.ldc),
      get(v.scratch),
      and(eq(get(v.pc), i32c(0)), eq(get(v.acc), i32c(0))),
      select(get(v.acs), i32c(4 * MR), get(v.directA)),
      select(i32c(4), mul(get(v.kc), i32c(4)), get(v.directA)),
      bStep,
      bCol,
    ),
  );
}

/**
 * Whether a skinny product reads an operand in place instead of packing it: A when it is stored
 * column-major with whole row panels and C has at most 16 columns (each A element then meets at most two
 * B panels, and packing it cost as much as the multiply), B when it is row-major with whole 8-column
 * panels and C has at most 16 rows. These are the LoRA products: dA = dH^T X (M = r), dB^T (N = r).
 */
const readsInPlace = (stride: Code, rest: Code, other: Code): Code =>
  and(and(eq(stride, i32c(4)), eq(rest, i32c(0))), lt(other, i32c(17)));

/**
 * sgemm(M, N, K, a, ars, acs, b, brs, bcs, c, ldc, acc, work): C[M, N] = A[M, K] B[K, N] (K > 0; C is only
 * written, so it need not be zeroed), or C += A B when `acc` is 1; `work` is a WORKSPACE_BYTES block
 * owned by the calling thread.
 */
function sgemm(): Func {
  const f = new Func("sgemm", 13);
  const [M, N, K, a, ars, acs, b, brs, bcs, c, ldc, acc, work] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
  const [jc, pc, ic, nc, kc, mc, pa, pb, scratch, t1, t2, directA, directB, ap, bp] = Array.from(
    { length: 15 },
    () => f.local(),
  );
  f.body = cat(
    set(pa, get(work)),
    set(pb, add(get(work), i32c(PACK_A_BYTES))),
    set(scratch, add(get(work), i32c(PACK_A_BYTES + PACK_B_BYTES))),
    set(directA, readsInPlace(get(ars), and(get(M), i32c(MR - 1)), get(N))),
    set(directB, readsInPlace(get(bcs), and(get(N), i32c(NR - 1)), get(M))),
    forRange(
      jc,
      i32c(0),
      get(N),
      NC,
      set(nc, minI(sub(get(N), get(jc)), i32c(NC), t1, t2)),
      forRange(
        pc,
        i32c(0),
        get(K),
        KC,
        set(kc, minI(sub(get(K), get(pc)), i32c(KC), t1, t2)),
        set(bp, add(get(b), add(mul(get(pc), get(brs)), mul(get(jc), get(bcs))))),
        ifThen(
          get(directB),
          [],
          cat(call(FN.pack_b, get(pb), get(bp), get(brs), get(bcs), get(kc), get(nc)), set(bp, get(pb))),
        ),
        rowBlocks(
          { M, a, ars, acs, ldc, ic, mc, pa, pc, kc, scratch, t1, t2, directA, ap, acc },
          get(nc),
          get(bp),
          add(get(c), mul(get(jc), i32c(4))),
          select(get(brs), i32c(4 * NR), get(directB)),
          select(i32c(4), mul(get(kc), i32c(4)), get(directB)),
        ),
      ),
    ),
  );
  return f;
}

/**
 * sgemm_packed(M, N, K, a, ars, acs, pb, npad, n0, c, ldc, acc, work): C[M, N] (+)= A[M, K] B[K, n0 : n0 + N]
 * (as sgemm) with B already packed (pack_b) at pb: K blocks of KC rows one after another, each of npad columns (N of
 * the whole B rounded up to NR), so block pc starts at pb + 4 pc npad. n0 is a multiple of NR. The worker
 * threads share one packed B this way instead of each packing it again.
 */
function sgemmPacked(): Func {
  const f = new Func("sgemm_packed", 13);
  const [M, N, K, a, ars, acs, pb, npad, n0, c, ldc, acc, work] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
  const [pc, ic, kc, mc, pa, scratch, t1, t2, directA, ap] = Array.from({ length: 10 }, () => f.local());
  f.body = cat(
    set(pa, get(work)),
    set(scratch, add(get(work), i32c(PACK_A_BYTES + PACK_B_BYTES))),
    set(directA, readsInPlace(get(ars), and(get(M), i32c(MR - 1)), get(N))),
    forRange(
      pc,
      i32c(0),
      get(K),
      KC,
      set(kc, minI(sub(get(K), get(pc)), i32c(KC), t1, t2)),
      rowBlocks(
        { M, a, ars, acs, ldc, ic, mc, pa, pc, kc, scratch, t1, t2, directA, ap, acc },
        get(N),
        add(get(pb), mul(add(mul(get(pc), get(npad)), mul(get(n0), get(kc))), i32c(4))),
        get(c),
        i32c(4 * NR),
        mul(get(kc), i32c(4)),
      ),
    ),
  );
  return f;
}

const FN = { pack_b: 0, pack_a: 1, gebp: 2, sgemm: 3, sgemm_packed: 4 } as const;

export const MEMORY_LIMITS = { initial: 64, maximum: 65536 } as const;

/** The module's bytes; deterministic, built from this file alone. */
export function gemmModuleBytes(): Uint8Array {
  return encodeModule([packB(), packA(), gebp(), sgemm(), sgemmPacked()], MEMORY_LIMITS);
}
