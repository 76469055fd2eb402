// The register tile of the wasm sgemm (gemm.ts): the micro-kernel that runs down a column panel of whole
// MR x 8 tiles, and the copy of a partial tile out of its scratch block.
//
// Two tiles (GemmTile), one per module. V8 gives wasm 15 xmm registers and schedules every load of a k
// step before the arithmetic, so what fits is decided by how many values a step keeps live:
// - 4 x 8 with f32x4 mul + add: eight accumulators, two B vectors, four broadcast A scalars and a product;
//   4 x 12, 6 x 8 or a k loop unrolled in the wasm spill and run at half speed.
// - 5 x 8 with fused multiply-add (relaxed SIMD, see relaxed.ts), where the runtime has it: ten
//   accumulators, two B vectors, one vector of rows 0-3 whose lanes are splatted by shuffles (computed
//   next to their use, so one register serves all four) and row 4's broadcast. 21 instructions per k
//   step instead of 27, for 80 flops instead of 64: 62 against 58 GFLOP/s at 1024 on one Zen 5 core.
//   Broadcast loads for all five rows spill (26 GFLOP/s), and 4 x 8 with FMA has too few accumulators
//   to cover the FMA latency (54-56).

import {
  add,
  type Code,
  cat,
  doWhile,
  Func,
  f32add,
  f32c,
  f32load,
  f32store,
  f32x4add,
  f32x4madd,
  f32x4mul,
  forRange,
  get,
  i32c,
  ifThen,
  inc,
  lane32,
  load32splat,
  mul,
  ne,
  select,
  set,
  v128load,
  v128store,
  v128zero,
} from "./emit.js";
import { NR } from "./gemm-pack.js";

/** The register tile a gemm module is built for: MR rows by NR columns, with FMA or mul + add. */
export interface GemmTile {
  readonly mr: 4 | 5;
  readonly fma: boolean;
}
export const MUL_ADD_TILE: GemmTile = { mr: 4, fma: false };
export const FMA_TILE: GemmTile = { mr: 5, fma: true };

/**
 * panel(a, b, kc, aStep, bStep, aRow, tiles, cp, ldc, first): `tiles` MR x 8 tiles down one column panel:
 * tile i of C at `cp + MR i ldc` (row stride ldc) += the product of kc steps, or = it when `first` is 1.
 * A's MR values of step k of tile i are at `a + aRow MR i + aStep k`, B's 8 at `b + bStep k`. Only whole
 * tiles, with no edge handling: with that in the same function V8 kept fewer values in registers around
 * the k loop, and a function of one tile had its k loop left unrolled (59-60 against 62 GFLOP/s for the
 * 5 x 8 tile).
 */
export function panelFn(tile: GemmTile, suffix = ""): Func {
  const MR = tile.mr;
  const f = new Func(`panel${suffix}`, 10);
  const [a0, b0p, kc, aStep, bStep, aRow, tiles, cp, ldc, first] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const [i, a, b, bEnd, cRow] = Array.from({ length: 5 }, () => f.local());
  const acc = Array.from({ length: 2 * MR }, () => f.local("v128"));
  const [v0, v1, s, a4] = [f.local("v128"), f.local("v128"), f.local("v128"), f.local("v128")];
  // One k step. Not unrolled here: TurboFan unrolls this loop by two itself, and unrolling further in the
  // wasm makes it hoist every load of the group and spill accumulators.
  const step: Code[] = [set(v0, v128load(get(b))), set(v1, v128load(get(b), 16))];
  if (tile.fma) step.push(set(a4, v128load(get(a))));
  for (let r = 0; r < MR; r++) {
    step.push(set(s, tile.fma && r < 4 ? lane32(get(a4), r) : load32splat(get(a), 4 * r)));
    for (let h = 0; h < 2; h++) {
      const [v, bv] = [acc[2 * r + h]!, get(h === 0 ? v0 : v1)];
      step.push(set(v, tile.fma ? f32x4madd(get(s), bv, get(v)) : f32x4add(get(v), f32x4mul(get(s), bv))));
    }
  }
  step.push(inc(a, get(aStep)), inc(b, get(bStep)));
  const store = (accumulate: boolean): Code => {
    const out: Code[] = [];
    for (let r = 0; r < MR; r++) {
      if (r > 0) out.push(inc(cRow, get(ldc)));
      for (let h = 0; h < 2; h++) {
        const v = get(acc[2 * r + h]!);
        out.push(v128store(get(cRow), accumulate ? f32x4add(v128load(get(cRow), 16 * h), v) : v, 16 * h));
      }
    }
    return cat(...out);
  };
  f.body = forRange(
    i,
    i32c(0),
    get(tiles),
    1,
    set(a, add(get(a0), mul(get(i), mul(get(aRow), i32c(MR))))),
    set(b, get(b0p)),
    set(cRow, add(get(cp), mul(get(i), mul(get(ldc), i32c(MR))))),
    ...acc.map((v) => set(v, v128zero())),
    // do ... while (b != bEnd): no k counter, which V8 kept on the stack
    set(bEnd, add(get(b), mul(get(kc), get(bStep)))),
    doWhile(ne(get(b), get(bEnd)), ...step),
    ifThen(get(first), store(false), store(true)),
  );
  return f;
}

/**
 * tile_edge(c, ldc, scratch, jp, rows, cols, first): rows x cols of the tile in `scratch` (rows of NR) into
 * C at row `c` (the tile's first row) and column jp, added to it unless `first`.
 */
export function tileEdge(): Func {
  const f = new Func("tile_edge", 7);
  const [c, ldc, scratch, jp, rows, cols, first] = [0, 1, 2, 3, 4, 5, 6];
  const [r, j, cp] = [f.local(), f.local(), f.local()];
  f.body = forRange(
    r,
    i32c(0),
    get(rows),
    1,
    forRange(
      j,
      i32c(0),
      get(cols),
      1,
      set(cp, add(add(get(c), mul(get(r), get(ldc))), mul(add(get(jp), get(j)), i32c(4)))),
      f32store(
        get(cp),
        f32add(
          select(f32c(0), f32load(get(cp)), get(first)),
          f32load(add(get(scratch), add(mul(get(r), i32c(4 * NR)), mul(get(j), i32c(4))))),
        ),
      ),
    ),
  );
  return f;
}
