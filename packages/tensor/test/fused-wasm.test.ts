// The wasm backend's float32 SIMD fused kernels (backend-wasm/fused-simd.ts) against the TypeScript
// kernels they replace: odd shapes, extreme values, masked (-inf) softmax rows, ignore_index and label
// smoothing, inputs at a nonzero offset, both storages; that they run at all (the counters, a threshold of
// 0) and that small or float64 tensors stay on the TypeScript kernels; and that splitting rows over worker
// threads changes nothing. The fast exp alone is tested in fused-wasm-exp.test.ts.

import { cpuFusedKernels, createWasmBackend, type DType, type View } from "@tsgrad/tensor";
import { describe, expect, it } from "vitest";
import { DEFAULT_MIN_FUSED, wasmFusedCounters } from "../src/backend-wasm/fused.js";
import type { FusedKernelTable } from "../src/fused/signatures.js";
import { fusedHarness, type Inputs, rng } from "./fused-wasm-harness.js";

const { backends, view, zeros: zerosView, read, compare, threadedTable } = fusedHarness("fw");

const ROWS = [1, 3, 17];
const COLS = [1, 3, 5, 17, 65, 257, 4096];

/** Row data of a kind: normal values of a scale, or extremes. */
function rowsData(R: number, C: number, kind: string, seed: number): number[] {
  const u = rng(seed);
  const out: number[] = [];
  for (let r = 0; r < R; r++)
    for (let c = 0; c < C; c++) {
      const v = u();
      if (kind === "normal") out.push(v * 4);
      else if (kind === "large") out.push(v * 3e4);
      else if (kind === "equal") out.push(r - 5.5);
      else if (kind === "masked")
        out.push(c % 3 === 1 || (r === 1 && c > 0) ? Number.NEGATIVE_INFINITY : v * 8);
      else out.push(r % 2 === 0 ? v * 200 - 100 : v * 1e-3);
    }
  return out;
}
const KINDS = ["normal", "large", "equal", "masked", "mixed"];

describe.each(["js", "wasm"] as const)(
  "wasm fused kernels (%s storage) vs the TypeScript kernels",
  (which) => {
    for (const name of ["softmax", "logSoftmax"] as const)
      it(`${name}: odd shapes, extremes, -inf masks, offsets`, () => {
        for (const R of ROWS)
          for (const C of COLS)
            for (const kind of KINDS) {
              // logSoftmax of a masked row is -inf where masked; both kernels agree on the infinities
              const x = rowsData(R, C, kind, R * 1000 + C);
              compare(which, { name, attrs: {}, outs: [[R, C]] }, [[x, [R, C]]], C % 2);
            }
      });

    it("NaN and +inf entries propagate like the TS kernels (softmax, logSoftmax, crossEntropy)", () => {
      const C = 9;
      const x = rowsData(4, C, "normal", 5);
      x[2] = Number.NaN; // row 0
      x[C + 4] = Number.POSITIVE_INFINITY; // row 1
      x[2 * C + 8] = Number.NaN; // row 2, in the scalar tail
      for (const name of ["softmax", "logSoftmax"] as const)
        compare(which, { name, attrs: {}, outs: [[4, C]] }, [[x, [4, C]]], 2);
      const attrs = { ignore_index: -100, label_smoothing: 0.1 };
      compare(
        which,
        { name: "crossEntropy", attrs, outs: [[4], [4]] },
        [
          [x, [4, C]],
          [[1, 2, 3, 4], [4], "int32"],
        ],
        0,
      );
    });

    it("softmax and logSoftmax: an all -inf row gives NaN like the TS kernel", () => {
      const x = [Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY, 1, 2, 3];
      for (const name of ["softmax", "logSoftmax"] as const)
        compare(which, { name, attrs: {}, outs: [[2, 3]] }, [[x, [2, 3]]], 1);
    });

    for (const name of ["softmaxBackward", "logSoftmaxBackward"] as const)
      it(`${name}: odd shapes, offsets`, () => {
        for (const R of ROWS)
          for (const C of COLS) {
            const dy = rowsData(R, C, "normal", C + 7);
            // y as the forward would give it (a softmax, or a log-softmax of values in a usual range)
            const x = rowsData(R, C, KINDS[(R + C) % 4]!, C + 9);
            const fwd = name === "softmaxBackward" ? "softmax" : "logSoftmax";
            const yv = zerosView("js", [R, C]);
            cpuFusedKernels[fwd]([view("js", x, [R, C])], {}, [yv]);
            const y = read("js", yv).map((v) => (Number.isFinite(v) ? v : -1e30));
            compare(
              which,
              { name, attrs: {}, outs: [[R, C]] },
              [
                [dy, [R, C]],
                [y, [R, C]],
              ],
              3,
            );
          }
      });

    it("crossEntropy forward and backward: ignore_index, label smoothing, extremes, offsets", () => {
      for (const R of ROWS)
        for (const C of COLS)
          for (const kind of ["normal", "large", "equal", "mixed"])
            for (const [ignore_index, label_smoothing] of [
              [-100, 0],
              [-100, 0.1],
              [2, 0.25],
            ] as const) {
              const logits = rowsData(R, C, kind, R * 31 + C);
              const target = Array.from({ length: R }, (_, r) => (r % 3 === 1 ? ignore_index : (r * 7) % C));
              const attrs = { ignore_index, label_smoothing };
              const ins: Inputs = [
                [logits, [R, C]],
                [target, [R], "int32"],
              ];
              compare(which, { name: "crossEntropy", attrs, outs: [[R], [R]] }, ins, 1);
              const nll = zerosView("js", [R]);
              const lse = zerosView("js", [R]);
              cpuFusedKernels.crossEntropy(
                [view("js", logits, [R, C]), view("js", target, [R], "int32")],
                attrs,
                [nll, lse],
              );
              const dnll = rowsData(1, R, "normal", C);
              compare(
                which,
                { name: "crossEntropyBackward", attrs, outs: [[R, C]] },
                [
                  [dnll, [R]],
                  [logits, [R, C]],
                  [target, [R], "int32"],
                  [read("js", lse), [R]],
                ],
                2,
              );
            }
    });

    it("crossEntropy: a bad target throws the TS kernel's error", () => {
      const table = backends[which].fused as FusedKernelTable;
      const run = (t: FusedKernelTable) => () =>
        t.crossEntropy(
          [view(which, new Float32Array(12), [3, 4]), view(which, [0, 4, 1], [3], "int32")],
          { ignore_index: -100, label_smoothing: 0 },
          [zerosView(which, [3]), zerosView(which, [3])],
        );
      expect(run(table)).toThrow(
        "crossEntropy: every target must be in [0, 4) or equal ignore_index -100 (logits [3, 4]); target[1] is 4",
      );
      expect(run(table)).toThrow(new RegExp(errorOf(run(cpuFusedKernels)).replace(/[[\]()]/g, "\\$&")));
    });

    it("swiglu forward and backward: odd sizes, large gates, offsets", () => {
      for (const n of [1, 3, 5, 17, 65, 257, 4099])
        for (const kind of ["normal", "large", "mixed"]) {
          const g = rowsData(1, n, kind, n);
          const u = rowsData(1, n, "normal", n + 1);
          const dy = rowsData(1, n, "normal", n + 2);
          compare(
            which,
            { name: "swiglu", attrs: {}, outs: [[n]] },
            [
              [g, [n]],
              [u, [n]],
            ],
            n % 3,
          );
          compare(
            which,
            { name: "swigluBackward", attrs: {}, outs: [[n], [n]] },
            [
              [dy, [n]],
              [g, [n]],
              [u, [n]],
            ],
            1,
          );
        }
    });

    it("rmsNorm forward and backward: odd shapes, large and tiny rows, offsets", () => {
      for (const R of ROWS)
        for (const C of COLS)
          for (const kind of ["normal", "large", "mixed", "equal"]) {
            const x = rowsData(R, C, kind, R + C);
            const w = rowsData(1, C, "normal", C);
            const attrs = { eps: 1e-6 };
            compare(
              which,
              { name: "rmsNorm", attrs, outs: [[R, C], [R]] },
              [
                [x, [R, C]],
                [w, [C]],
              ],
              1,
            );
            const rstd = zerosView("js", [R]);
            const ref = [zerosView("js", [R, C]), rstd];
            cpuFusedKernels.rmsNorm([view("js", x, [R, C]), view("js", w, [C])], attrs, ref as [View, View]);
            const dy = rowsData(R, C, "normal", R * C);
            compare(
              which,
              { name: "rmsNormBackward", attrs: {}, outs: [[R, C], [C]] },
              [
                [dy, [R, C]],
                [x, [R, C]],
                [w, [C]],
                [read("js", rstd), [R]],
              ],
              2,
            );
          }
    });

    it("rope and its transpose: head dims with and without a vector tail, offsets, [B, T, H, D] operands", () => {
      for (const [B, H, T, D] of [
        [1, 1, 1, 2],
        [2, 3, 5, 6],
        [1, 2, 3, 8],
        [2, 1, 4, 10],
        [2, 4, 17, 64],
        [1, 3, 7, 130],
      ] as const) {
        const x = rowsData(B * H * T, D, "normal", D);
        const cs = rowsData(B * T, D, "normal", D + 1);
        const sn = rowsData(B * T, D, "normal", D + 2);
        for (const transpose of [false, true])
          for (const [xBTHD, yBTHD] of [
            [false, false],
            [true, false],
            [false, true],
            [true, true],
          ])
            compare(
              which,
              {
                name: "rope",
                attrs: { transpose, xBTHD, yBTHD },
                outs: [yBTHD ? [B, T, H, D] : [B, H, T, D]],
              },
              [
                [x, xBTHD ? [B, T, H, D] : [B, H, T, D]],
                [cs, [B, T, D]],
                [sn, [B, T, D]],
              ],
              D % 3,
            );
      }
    });
  },
);

function errorOf(fn: () => void): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return "";
}

describe("wasm fused kernels: routing", () => {
  it("small tensors and float64 run the TypeScript kernels; big float32 ones WebAssembly", () => {
    const b = createWasmBackend({ name: "fw-default", threads: 1, storage: "js" });
    const table = b.fused as FusedKernelTable;
    const counters = wasmFusedCounters(table)!;
    const x = (n: number, dtype: DType) => ({
      storage: b.alloc(dtype, n),
      layout: { shape: [n / 64, 64], strides: [64, 1], offset: 0 },
      dtype,
    });
    table.softmax([x(64, "float32")], {}, [x(64, "float32")]);
    table.softmax([x(DEFAULT_MIN_FUSED, "float64")], {}, [x(DEFAULT_MIN_FUSED, "float64")]);
    expect([counters.wasm, counters.ts]).toEqual([0, 2]);
    table.softmax([x(DEFAULT_MIN_FUSED, "float32")], {}, [x(DEFAULT_MIN_FUSED, "float32")]);
    expect([counters.wasm, counters.ts]).toEqual([1, 2]);
  });
});

describe("wasm fused kernels split over worker threads", () => {
  const { threaded, same } = threadedTable();

  it("softmax, logSoftmax, cross-entropy, SwiGLU and RMSNorm give what one thread gives", async () => {
    expect(await wasmFusedCounters(threaded)!.start()).toBe(true);
    const [R, C] = [37, 129];
    const x = view("js", rowsData(R, C, "masked", 3), [R, C], "float32", 1);
    const dy = view("js", rowsData(R, C, "normal", 4), [R, C]);
    for (const name of ["softmax", "logSoftmax"] as const) same(name, {}, [x], [[R, C]]);
    for (const name of ["softmaxBackward", "logSoftmaxBackward"] as const) same(name, {}, [dy, dy], [[R, C]]);
    const logits = view("js", rowsData(R, C, "normal", 5), [R, C]);
    const target = view(
      "js",
      Array.from({ length: R }, (_, r) => (r % 5 === 0 ? -100 : r)),
      [R],
      "int32",
    );
    const attrs = { ignore_index: -100, label_smoothing: 0.1 };
    same("crossEntropy", attrs, [logits, target], [[R], [R]]);
    const lse = zerosView("js", [R]);
    cpuFusedKernels.crossEntropy([logits, target], attrs, [zerosView("js", [R]), lse]);
    const g = view("js", rowsData(1, R, "normal", 6), [R]);
    same("crossEntropyBackward", attrs, [g, logits, target, lse], [[R, C]]);
    const n = 1001; // not a multiple of the 16-element blocks
    const [gate, up, d] = [7, 8, 9].map((k) => view("js", rowsData(1, n, "normal", k), [n]));
    same("swiglu", {}, [gate!, up!], [[n]]);
    same("swigluBackward", {}, [d!, gate!, up!], [[n], [n]]);
    same("rmsNorm", { eps: 1e-6 }, [x, view("js", rowsData(1, C, "normal", 10), [C])], [[R, C], [R]]);
  });
});
