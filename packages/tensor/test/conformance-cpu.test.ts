import { cpuKernels, createCpuBackend, type KernelTable } from "@tsgrad/tensor";
import { CONFORMANCE_OPS, runConformance } from "@tsgrad/tensor/testing";
import { describe, expect, it } from "vitest";

describe("conformance: plain TypeScript CPU backend", () => {
  for (const op of CONFORMANCE_OPS) {
    it(op, async () => {
      const report = await runConformance("cpu", () => createCpuBackend("cpu-under-test"), { ops: [op] });
      expect(report.cases[op]).toBeGreaterThan(0);
    });
  }

  it("reports a backend whose kernels differ from the reference", async () => {
    const broken: KernelTable = { ...cpuKernels, add: cpuKernels.sub, matmul: cpuKernels.matmul };
    await expect(
      runConformance("broken", () => createCpuBackend("broken", broken), { ops: ["add", "matmul"] }),
    ).rejects.toThrow(/add\(/);
  });

  it("covers every kernel of the CPU table", () => {
    expect([...CONFORMANCE_OPS].sort()).toEqual(Object.keys(cpuKernels).sort());
  });
});
