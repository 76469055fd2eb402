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

  it("reports a kernel that leaves elements of its output unwritten (outputs skip the zero fill)", async () => {
    // abs that skips its zeros: right on a zero-filled output, wrong on one that was not filled
    const lazy: KernelTable = {
      ...cpuKernels,
      abs: (inputs, attrs, out) => {
        const full = createCpuBackend("lazy-abs-scratch");
        const tmp = {
          ...out,
          storage: full.alloc(out.dtype, (out.storage as unknown as { data: Float32Array }).data.length),
        };
        cpuKernels.abs(inputs, attrs, tmp);
        const src = (tmp.storage as unknown as { data: Float32Array }).data;
        const dst = (out.storage as unknown as { data: Float32Array }).data;
        src.forEach((v, i) => {
          if (v !== 0) dst[i] = v;
        });
      },
    };
    await expect(
      runConformance("lazy", () => createCpuBackend("lazy", lazy), { ops: ["abs"] }),
    ).rejects.toThrow(/abs\(/);
  });

  it("covers every kernel of the CPU table", () => {
    expect([...CONFORMANCE_OPS].sort()).toEqual(Object.keys(cpuKernels).sort());
  });
});
