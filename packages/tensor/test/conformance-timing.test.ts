// timeConformance: times the backend's own kernels against the TS reference's, and skips ops the backend
// leaves to the reference kernels (the same function on both sides).

import { cpuKernels, createCpuBackend, type KernelTable } from "@tsgrad/tensor";
import { timeConformance } from "@tsgrad/tensor/testing";
import { describe, expect, it } from "vitest";

describe("timeConformance", () => {
  it("times only the ops a backend overrides, and sees a slow kernel as slow", () => {
    const spin = (us: number) => {
      const until = performance.now() + us / 1e3;
      while (performance.now() < until);
    };
    const slowNeg: KernelTable["neg"] = (inputs, attrs, out) => {
      spin(50);
      cpuKernels.neg(inputs, attrs, out);
    };
    const backend = createCpuBackend("slow-neg", { ...cpuKernels, neg: slowNeg });
    // best of 4 batches per pass: tests run in parallel on a 2-core machine, and a batch of the reference
    // that a neighbour's burst lands on must not make the slow kernel look fast
    const rows = timeConformance(backend, { ops: ["neg", "add"], minMs: 0.2, batches: 4, passes: 2 });
    expect(rows.length).toBeGreaterThan(10);
    expect(new Set(rows.map((r) => r.op))).toEqual(new Set(["neg"])); // add is the reference's own kernel
    for (const r of rows) {
      expect(r.backendUs).toBeGreaterThan(r.referenceUs + 40);
      expect(r.minRatio).toBeGreaterThan(1); // slower in every pass
    }
  });
});
