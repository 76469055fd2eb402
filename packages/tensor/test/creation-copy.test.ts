import { getBackend, tensor } from "@tsgrad/tensor";
import { describe, expect, it } from "vitest";

describe("tensor(typedArray, { copy })", () => {
  it("copies by default, so later writes to the array do not reach the tensor", () => {
    const data = new Float32Array([1, 2, 3]);
    const t = tensor(data);
    data[0] = 9;
    expect(t.tolistSync()).toEqual([1, 2, 3]);
  });

  it("with copy: false a CPU backend takes the array itself (one buffer, counted once)", () => {
    const before = getBackend().liveBytes();
    const data = new Float32Array([1, 2, 3]);
    const t = tensor(data, { copy: false });
    expect(getBackend().liveBytes() - before).toBe(12);
    data[0] = 9; // the caller promised not to do this; it shows no copy was made
    expect(t.tolistSync()).toEqual([9, 2, 3]);
    t.dispose();
    expect(getBackend().liveBytes()).toBe(before);
  });

  it("still converts when the dtype differs, leaving the caller's array alone", () => {
    const data = new Float64Array([1.5, 2.5]);
    const t = tensor(data, { dtype: "float32", copy: false });
    data[0] = 7;
    expect(t.dtype).toBe("float32");
    expect(t.tolistSync()).toEqual([1.5, 2.5]);
  });
});

describe("the default random seed", () => {
  it("is fixed, as PyTorch's is, so unseeded programs repeat (checked in two fresh processes)", async () => {
    const { spawnSync } = await import("node:child_process");
    const { fileURLToPath } = await import("node:url");
    const rng = fileURLToPath(new URL("../src/rng.ts", import.meta.url));
    const run = () =>
      spawnSync(
        process.execPath,
        [
          "--import",
          "tsx",
          "-e",
          `import(${JSON.stringify(rng)}).then((m) => console.log(m.randomUniform()))`,
        ],
        {
          encoding: "utf8",
        },
      ).stdout.trim();
    const a = run();
    expect(Number(a)).toBeGreaterThanOrEqual(0);
    expect(run()).toBe(a);
  });
});
