// The float32 matmul kernel of the wasm backend, written with the emitter: C = A B over strided A and B
// (any strides, so all four transpose cases and broadcast views need no copy), C row-major. Goto/BLIS
// structure: B is packed into KC x 8 column panels, A into MR x KC row panels (gemm-pack.ts), and an
// MR x 8 register tile of f32x4 accumulators runs over each pair (gemm-tile.ts: 4 x 8, or 5 x 8 with
// FMA). Edges are zero-padded in the packs, so the micro-kernel always runs the full tile; partial tiles
// go through a small scratch block. The first K block writes C, later ones add to it, so C need not be
// zeroed. All addresses and strides are in bytes.

import {
  add,
  and,
  type Code,
  call,
  cat,
  divU,
  encodeModule,
  eq,
  Func,
  forRange,
  get,
  i32c,
  ifThen,
  lt,
  minI,
  mul,
  remU,
  select,
  set,
  sub,
} from "./emit.js";
import { causalFuncs } from "./gemm-causal.js";
import { blockLoops, NR, packA, packB, rowBlockLoops } from "./gemm-pack.js";
import { PAIR_MAX_N2, pairT, sgemmPair } from "./gemm-pair.js";
import { FMA_TILE, type GemmTile, MUL_ADD_TILE, panelFn, tileEdge } from "./gemm-tile.js";

export { FMA_TILE, type GemmTile, MUL_ADD_TILE, NR };

export const KC = 256;
/** Rows of A packed at a time: 32 row panels. */
const mcOf = (tile: GemmTile): number => 32 * tile.mr;
export const NC = 2048;
/** Bytes of the per-thread workspace (for either tile): the A pack, the B pack and a tile scratch. */
export const PACK_A_BYTES = mcOf(FMA_TILE) * KC * 4;
export const PACK_B_BYTES = NC * KC * 4;
export const SCRATCH_BYTES = FMA_TILE.mr * NR * 4;
/** sgemm_pair's pack of its narrow second B (gemm-pair.ts). */
const PACK_B2_BYTES = KC * PAIR_MAX_N2 * 4;
export const WORKSPACE_BYTES = PACK_A_BYTES + PACK_B_BYTES + SCRATCH_BYTES + PACK_B2_BYTES;

/**
 * gebp(mc, nc, kc, pa, pb, c, ldc, scratch, first, aStep, aRow, bStep, bCol): C[mc, nc] += A B with the
 * MR x 8 tile, or C = A B when `first` is 1 (the first K block: C is never read, so it need not be zeroed).
 * A's MR values of step k are at `a + aStep k` (a = pa + aRow i for row block i) and B's 8 at
 * `b + bStep k` (b = pb + bCol j): packed panels (aStep 4 MR, aRow 4 kc; bStep 32, bCol 4 kc), or, with
 * no pack, A stored column-major (aStep = its column stride, aRow 4) and B row-major (bStep = its row
 * stride, bCol 4). A partial tile is computed into `scratch` and its rows and columns copied from there.
 */
function gebp(tile: GemmTile, fn: TileFns, suffix: string): Func {
  const MR = tile.mr;
  const f = new Func(`gebp${suffix}`, 13);
  const [mc, nc, kc, pa, pb, c, ldc, scratch, first] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [aStep, aRow, bStep, bCol] = [9, 10, 11, 12];
  const [jp, ip, cols, rows, b, whole, tiles, t1, t2] = Array.from({ length: 9 }, () => f.local());
  const at = (row: Code): Code => add(get(pa), mul(row, get(aRow)));
  // the tile at rows [ip, ip + rows), columns [jp, jp + cols): into scratch, then copied
  const edge = cat(
    set(rows, minI(sub(get(mc), get(ip)), i32c(MR), t1, t2)),
    call(
      fn.panel,
      at(get(ip)),
      get(b),
      get(kc),
      get(aStep),
      get(bStep),
      get(aRow),
      i32c(1),
      get(scratch),
      i32c(4 * NR),
      i32c(1),
    ),
    call(
      TILE_EDGE,
      add(get(c), mul(get(ip), get(ldc))),
      get(ldc),
      get(scratch),
      get(jp),
      get(rows),
      get(cols),
      get(first),
    ),
  );
  f.body = cat(
    set(tiles, divU(get(mc), i32c(MR))),
    set(whole, mul(get(tiles), i32c(MR))),
    forRange(
      jp,
      i32c(0),
      get(nc),
      NR,
      set(cols, minI(sub(get(nc), get(jp)), i32c(NR), t1, t2)),
      set(b, add(get(pb), mul(get(jp), get(bCol)))),
      ifThen(
        eq(get(cols), i32c(NR)),
        cat(
          call(
            fn.panel,
            get(pa),
            get(b),
            get(kc),
            get(aStep),
            get(bStep),
            get(aRow),
            get(tiles),
            add(get(c), mul(get(jp), i32c(4))),
            get(ldc),
            get(first),
          ),
          forRange(ip, get(whole), get(mc), MR, edge),
        ),
        forRange(ip, i32c(0), get(mc), MR, edge),
      ),
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
  tile: GemmTile,
  fn: TileFns,
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
  return rowBlockLoops(
    v,
    mcOf(tile),
    fn.pack_a,
    get(v.pa),
    (src, packCall) => ifThen(get(v.directA), set(v.ap, src), cat(packCall, set(v.ap, get(v.pa)))),
    call(
      fn.gebp,
      get(v.mc),
      nc,
      get(v.kc),
      get(v.ap),
      pb,
      add(c, mul(get(v.ic), get(v.ldc))),
      get(v.ldc),
      get(v.scratch),
      and(eq(get(v.pc), i32c(0)), eq(get(v.acc), i32c(0))),
      select(get(v.acs), i32c(4 * tile.mr), get(v.directA)),
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
function sgemm(tile: GemmTile, fn: TileFns, suffix: string): Func {
  const f = new Func(`sgemm${suffix}`, 13);
  const [M, N, K, a, ars, acs, b, brs, bcs, c, ldc, acc, work] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
  const [jc, pc, ic, nc, kc, mc, pa, pb, scratch, t1, t2, directA, directB, ap, bp] = Array.from(
    { length: 15 },
    () => f.local(),
  );
  f.body = cat(
    set(pa, get(work)),
    set(pb, add(get(work), i32c(PACK_A_BYTES))),
    set(scratch, add(get(work), i32c(PACK_A_BYTES + PACK_B_BYTES))),
    set(directA, readsInPlace(get(ars), remU(get(M), i32c(tile.mr)), get(N))),
    set(directB, readsInPlace(get(bcs), and(get(N), i32c(NR - 1)), get(M))),
    blockLoops(
      { jc, pc, nc, kc, N, K, t1, t2 },
      NC,
      KC,
      set(bp, add(get(b), add(mul(get(pc), get(brs)), mul(get(jc), get(bcs))))),
      ifThen(
        get(directB),
        [],
        cat(call(PACK_B, get(pb), get(bp), get(brs), get(bcs), get(kc), get(nc)), set(bp, get(pb))),
      ),
      rowBlocks(
        tile,
        fn,
        { M, a, ars, acs, ldc, ic, mc, pa, pc, kc, scratch, t1, t2, directA, ap, acc },
        get(nc),
        get(bp),
        add(get(c), mul(get(jc), i32c(4))),
        select(get(brs), i32c(4 * NR), get(directB)),
        select(i32c(4), mul(get(kc), i32c(4)), get(directB)),
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
function sgemmPacked(tile: GemmTile, fn: TileFns, suffix: string): Func {
  const f = new Func(`sgemm_packed${suffix}`, 13);
  const [M, N, K, a, ars, acs, pb, npad, n0, c, ldc, acc, work] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
  const [pc, ic, kc, mc, pa, scratch, t1, t2, directA, ap] = Array.from({ length: 10 }, () => f.local());
  f.body = cat(
    set(pa, get(work)),
    set(scratch, add(get(work), i32c(PACK_A_BYTES + PACK_B_BYTES))),
    set(directA, readsInPlace(get(ars), remU(get(M), i32c(tile.mr)), get(N))),
    forRange(
      pc,
      i32c(0),
      get(K),
      KC,
      set(kc, minI(sub(get(K), get(pc)), i32c(KC), t1, t2)),
      rowBlocks(
        tile,
        fn,
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

/**
 * Function indices in the module: pack_b and tile_edge, then each tile's set (pack_a, panel, gebp, sgemm,
 * sgemm_packed). A module of the FMA tile also has a set for the 4 x 8 mul + add tile, suffixed "_narrow":
 * products with at most 16 rows or columns (the LoRA products of rank 8 or 16) run faster on it. Four
 * rows waste less of a tile there, its A panels pack faster, and it reads A in place where M is a
 * multiple of 4 (688 x 1024 x 8: 1.9 against 3.1 ms).
 */
const [PACK_B, TILE_EDGE] = [0, 1];
interface TileFns {
  pack_a: number;
  panel: number;
  gebp: number;
}
const setAt = (base: number): TileFns => ({ pack_a: base, panel: base + 1, gebp: base + 2 });
const MAIN = setAt(2);
const NARROW = setAt(7);

function tileSet(tile: GemmTile, fn: TileFns, suffix: string): Func[] {
  return [
    packA(tile.mr, suffix),
    panelFn(tile, suffix),
    gebp(tile, fn, suffix),
    sgemm(tile, fn, suffix),
    sgemmPacked(tile, fn, suffix),
  ];
}

/** Whether a module of `tile` has the "_narrow" set (else its own tile is the narrow one). */
export const hasNarrowSet = (tile: GemmTile): boolean => tile !== MUL_ADD_TILE;

/** The tile a product runs on: the narrow one when it has at most 16 rows or columns. */
export const tileFor = (tile: GemmTile, M: number, N: number): GemmTile =>
  hasNarrowSet(tile) && (M <= 16 || N <= 16) ? MUL_ADD_TILE : tile;

export const MEMORY_LIMITS = { initial: 64, maximum: 65536 } as const;

/** The module's bytes for `tile`; deterministic, built from this file alone. */
export function gemmModuleBytes(tile: GemmTile = MUL_ADD_TILE): Uint8Array {
  const funcs = [packB(), tileEdge(), ...tileSet(tile, MAIN, "")];
  if (hasNarrowSet(tile)) funcs.push(...tileSet(MUL_ADD_TILE, NARROW, "_narrow"));
  // the causal products (gemm-causal.ts) and two products of one A (gemm-pair.ts), on the main tile
  const blocks = {
    mr: tile.mr,
    mc: mcOf(tile),
    kc: KC,
    nc: NC,
    packBAt: PACK_A_BYTES,
    scratchAt: PACK_A_BYTES + PACK_B_BYTES,
  };
  const fn = { packA: MAIN.pack_a, packB: PACK_B, panel: MAIN.panel, tileEdge: TILE_EDGE, gebp: MAIN.gebp };
  funcs.push(...causalFuncs({ ...blocks, fn: { ...fn, gebpCausal: funcs.length } }));
  funcs.push(pairT(tile));
  funcs.push(
    sgemmPair({
      ...blocks,
      packB2At: PACK_A_BYTES + PACK_B_BYTES + SCRATCH_BYTES,
      fn: { ...fn, pairT: funcs.length - 1 },
    }),
  );
  return encodeModule(funcs, MEMORY_LIMITS);
}
