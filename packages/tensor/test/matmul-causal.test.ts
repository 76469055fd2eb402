// causalMatmul against the whole product: on the wasm backend (one and two threads, both register tiles), for the three kinds,
// with GQA groups of rows and with an offset (a KV cache), operands zero where the causal mask makes them
// zero; skipped "cols" entries are 0 there, and some entries above the diagonal are skipped. On the TS backend (no matmulCausal) it is the whole product.
import {
  type Backend,
  type CausalSpec,
  causalMatmul,
  causalWork,
  createCpuBackend,
  createWasmBackend,
  registerBackend,
  type Tensor,
  tensor,
} from "@tsgrad/tensor";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const two = createWasmBackend({ name: "causal-two", threads: 2, minThreadedWork: 0 });
const backends: Backend[] = [
  createWasmBackend({ name: "causal-one", threads: 1, minMatmulWork: 0 }),
  two,
  // the 4 x 8 mul + add tile: blocks of 32 rows instead of 40
  createWasmBackend({ name: "causal-mul-add", threads: 1, minMatmulWork: 0, fma: false }),
  createCpuBackend("causal-ts"),
];
for (const b of backends) registerBackend(b);
beforeAll(async () => {
  expect(await two.startThreads()).toBe(true);
});
afterAll(() => two.stopThreads());

let seed = 7;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648 - 0.5;
};
/** [B, G rows of T, C] values, zero where `zero(t, c)`. */
function rows(
  B: number,
  G: number,
  T: number,
  C: number,
  zero: (t: number, c: number) => boolean,
): Float32Array {
  const out = new Float32Array(B * G * T * C);
  for (let i = 0; i < out.length; i++) {
    const t = Math.floor(i / C) % T;
    out[i] = zero(t, i % C) ? 0 : rnd();
  }
  return out;
}

describe("causalMatmul", () => {
  for (const backend of backends) {
    const device = backend.name;
    const t = (data: Float32Array, shape: number[]): Tensor => tensor(data, { shape, device });
    for (const [g, T, off, D] of [
      [1, 48, 0, 8],
      [2, 64, 0, 12],
      [2, 45, 5, 16], // a KV cache: S = T + 5
      [1, 300, 0, 20], // k deeper than a K block (256), rows past an A block (160 or 128 rows)
      [2, 170, 3, 9], // partial column panels, several blocks of A's rows
    ])
      it(`cols, k and kT equal the whole product where it counts (${device}, g ${g}, T ${T}, offset ${off})`, () => {
        const B = 3;
        const S = T + off;
        const above = (tt: number, s: number) => s > tt + off;
        // cols: Q [B, gT, D] K^T [B, D, S]
        const q = t(
          rows(B, g, T, D, () => false),
          [B, g * T, D],
        );
        const k = t(
          rows(B, 1, S, D, () => false),
          [B, S, D],
        );
        const spec = (kind: CausalSpec["kind"]): CausalSpec => ({ period: T, offset: off, kind });
        const scores = causalMatmul(q, k.mT, spec("cols")).dataSync();
        if (backend.matmulCausal) expect(scores.filter((x) => x === 0).length).toBeGreaterThan(0);
        const dense = q.matmul(k.mT).dataSync();
        for (let i = 0; i < dense.length; i++) {
          const [row, s] = [Math.floor(i / S), i % S];
          // above the diagonal: 0 where skipped, else (a register tile's rows share a reach) the true value
          const ok = Math.abs(scores[i]! - dense[i]!) < 1e-5 || (above(row % T, s) && scores[i] === 0);
          if (!ok) expect([row, s, scores[i], dense[i]]).toBe("the product or, above the diagonal, 0");
        }
        // k: P [B, gT, S] zero above the diagonal, V [B, S, D]
        const p = t(rows(B, g, T, S, above), [B, g * T, S]);
        const v = t(
          rows(B, 1, S, D, () => false),
          [B, S, D],
        );
        expectAllClose(causalMatmul(p, v, spec("k")).dataSync(), p.matmul(v).dataSync(), TOLERANCES.f32);
        // kT: P^T [B, S, gT] (P as above), dO [B, gT, D]
        const dO = t(
          rows(B, g, T, D, () => false),
          [B, g * T, D],
        );
        expectAllClose(
          causalMatmul(p.mT, dO, spec("kT")).dataSync(),
          p.mT.matmul(dO).dataSync(),
          TOLERANCES.f32,
        );
      });
  }

  it("skips about half of a square causal product, tile by tile (causalWork)", () => {
    const whole = 128 * 128 * 64;
    for (const kind of ["cols", "k", "kT"] as const)
      for (const mr of [4, 5]) {
        const share =
          causalWork(
            { period: 128, offset: 0, kind },
            128,
            kind === "cols" ? 128 : 64,
            kind === "cols" ? 64 : 128,
            mr,
          ) / whole;
        expect(share).toBeGreaterThan(0.5);
        expect(share).toBeLessThan(0.56);
      }
  });

  it("splits over two threads, and rejects rows that are not whole groups", () => {
    const before = two.counters.matmulThreaded;
    const q = tensor(
      rows(2, 2, 64, 16, () => false),
      { shape: [2, 128, 16], device: "causal-two" },
    );
    causalMatmul(q, q.mT, { period: 64, offset: 0, kind: "cols" });
    expect(two.counters.matmulThreaded).toBe(before + 1);
    expect(() => causalMatmul(q, q.mT, { period: 48, offset: 0, kind: "cols" })).toThrow(/whole groups/);
  });
});
