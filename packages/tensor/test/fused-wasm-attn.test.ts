// The wasm backend's float32 SIMD kernels of fused-attn.ts against the TypeScript kernels: the scaled,
// masked softmax of attention (odd shapes, the mask shared over groups, -inf masks, fully masked rows, the
// dtype-min mask of the attention layer) and its backward, and the AdamW update (float32 arithmetic, the
// TS kernel double; a large lr makes the update itself, not the parameter, set the tolerance); and that
// splitting them over worker threads changes nothing.

import { cpuFusedKernels } from "@tsgrad/tensor";
import { describe, expect, it } from "vitest";
import { wasmFusedCounters } from "../src/backend-wasm/fused.js";
import type { FusedKernelTable } from "../src/fused/signatures.js";
import { fusedHarness, rng } from "./fused-wasm-harness.js";

const { backends, view, zeros, read, compare, threadedTable } = fusedHarness("fwa");
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Scores and a causal mask with left padding: -inf or dtype-min where masked; row 0 of batch 1 fully masked. */
function scores(B: number, G: number, T: number, C: number, min: number, seed: number) {
  const u = rng(seed);
  const x = Array.from({ length: B * G * T * C }, () => u() * 30);
  const mask: number[] = [];
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let c = 0; c < C; c++) {
        const visible = c <= t + C - T && !(b === 1 && (c < 2 || t === 0));
        mask.push(visible ? 0 : min);
      }
  return { x, mask };
}
const SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 1],
  [2, 3, 5, 7],
  [2, 2, 3, 16],
  [3, 1, 9, 33],
  [2, 4, 1, 129],
  [2, 2, 17, 256],
];

describe.each(["js", "wasm"] as const)("wasm attention and AdamW kernels (%s storage) vs TS", (which) => {
  it("maskedSoftmax: odd shapes, -inf and dtype-min masks, fully masked rows, offsets", () => {
    for (const [B, G, T, C] of SHAPES)
      for (const min of [Number.NEGATIVE_INFINITY, -3.4028234663852886e38]) {
        const { x, mask } = scores(B, G, T, C, min, B * 100 + C);
        compare(
          which,
          { name: "maskedSoftmax", attrs: { scale: 0.125 }, outs: [[B, G, T, C]] },
          [
            [x, [B, G, T, C]],
            [mask, [B, 1, T, C]],
          ],
          C % 3,
        );
      }
  });

  it("maskedSoftmax: a fully -inf row gives NaN, a dtype-min one a uniform row", () => {
    for (const [min, want] of [
      [Number.NEGATIVE_INFINITY, Number.NaN],
      [-3.4028234663852886e38, 0.2],
    ] as const) {
      const table = backends[which].fused as FusedKernelTable;
      const y = zeros(which, [1, 2, 1, 5]);
      table.maskedSoftmax(
        [
          view(which, [1, 2, 3, 4, 5, 5, 4, 3, 2, 1], [1, 2, 1, 5]),
          view(which, new Array(5).fill(min), [1, 1, 1, 5]),
        ],
        { scale: 1 },
        [y],
      );
      for (const v of read(which, y))
        Number.isNaN(want) ? expect(v).toBeNaN() : expect(v).toBeCloseTo(want, 6);
    }
  });

  it("maskedSoftmaxBackward: odd shapes, offsets", () => {
    for (const [B, G, T, C] of SHAPES) {
      const shape = [B, G, T, C];
      const { x, mask } = scores(B, G, T, C, -3.4028234663852886e38, C);
      const yv = zeros("js", shape);
      cpuFusedKernels.maskedSoftmax([view("js", x, shape), view("js", mask, [B, 1, T, C])], { scale: 0.3 }, [
        yv,
      ]);
      const u = rng(C + 1);
      const dy = Array.from({ length: numel(shape) }, () => u());
      compare(
        which,
        { name: "maskedSoftmaxBackward", attrs: { scale: 0.3 }, outs: [shape] },
        [
          [dy, shape],
          [read("js", yv), shape],
        ],
        1,
      );
    }
  });

  it("adamw: odd sizes, offsets", () => {
    for (const n of [1, 3, 4, 17, 1001, 4096])
      for (const lr of [1e-3, 0.5]) {
        const u = rng(n);
        const [p, g, m] = [0, 1, 2].map(() => Array.from({ length: n }, () => u() * 0.1));
        const v = Array.from({ length: n }, () => (u() * 0.01) ** 2);
        g![0] = 0;
        v[0] = 0;
        const attrs = {
          lr,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weight_decay: 0.01,
          bc1: 1 - 0.9 ** 7,
          bc2Sqrt: Math.sqrt(1 - 0.999 ** 7),
        };
        const ins = [p!, g!, m!, v].map((d) => [d, [n]] as [number[], number[]]);
        compare(which, { name: "adamw", attrs, outs: [[n], [n], [n]] }, ins, n % 3);
      }
  });
});

describe("wasm attention and AdamW kernels split over worker threads", () => {
  const { threaded, same } = threadedTable();

  it("maskedSoftmax (blocks across groups and batches), its backward and adamw give what one thread gives", async () => {
    expect(await wasmFusedCounters(threaded)!.start()).toBe(true);
    const [B, G, T, C] = [3, 2, 7, 37];
    const { x, mask } = scores(B, G, T, C, Number.NEGATIVE_INFINITY, 5);
    const xv = view("js", x, [B, G, T, C], "float32", 1);
    same("maskedSoftmax", { scale: 0.5 }, [xv, view("js", mask, [B, 1, T, C])], [[B, G, T, C]]);
    same("maskedSoftmaxBackward", { scale: 0.5 }, [xv, xv], [[B, G, T, C]]);
    const n = 1001;
    const ins = [1, 2, 3, 4].map((k) =>
      view(
        "js",
        Array.from({ length: n }, rng(k)).map((v) => (k === 4 ? v * v : v)),
        [n],
      ),
    );
    const attrs = {
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weight_decay: 0.1,
      bc1: 0.1,
      bc2Sqrt: 0.05,
    };
    same("adamw", attrs, ins, [[n], [n], [n]]);
  });
});
