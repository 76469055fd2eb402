// scripts/sz.mjs line budgets on small fake trees and on the repository itself.

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const script = join(repo, "scripts", "sz.mjs");

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const lines = (n: number) => "export const x = 1;\n".repeat(n);

function run(files: Record<string, string>) {
  const root = mkdtempSync(join(tmpdir(), "tsgrad-sz-"));
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const r = spawnSync(process.execPath, [script, root], { encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe("sz", () => {
  it("counts lines per package and warns, without failing, above the 400-line aim", () => {
    const r = run({ "packages/tensor/src/a.ts": lines(401), "packages/nn/src/b.ts": lines(10) });
    expect(r.status).toBe(0);
    expect(r.out).toMatch(/tensor\s+1\s+401\s+0/);
    expect(r.out).toMatch(/nn\s+1\s+10\s+0/);
    expect(r.out).toContain("warning: packages/tensor/src/a.ts: 401 lines");
  });

  it("fails on a source file over 800 lines in any package", () => {
    const r = run({ "packages/peft/src/big.ts": lines(801) });
    expect(r.status).toBe(1);
    expect(r.out).toContain("packages/peft/src/big.ts: 801 lines, over the 800-line limit");
  });

  it("fails when packages/tensor/src passes 6000 lines, not counting testing/, backend-wasm/ and tests", () => {
    const under: Record<string, string> = {};
    for (let i = 0; i < 8; i++) under[`packages/tensor/src/f${i}.ts`] = lines(750);
    under["packages/tensor/src/testing/gradcheck.ts"] = lines(700);
    under["packages/tensor/src/backend-wasm/kernels.ts"] = lines(700);
    under["packages/tensor/src/f0.test.ts"] = lines(700);
    const ok = run(under);
    expect(ok.out).toContain("tensor core: 6000 / 6000 lines");
    expect(ok.status).toBe(0);
    const over = run({ ...under, "packages/tensor/src/one-more.ts": lines(1) });
    expect(over.status).toBe(1);
    expect(over.out).toContain("6001 lines, over the budget of 6000");
  });

  it("passes on this repository", () => {
    const r = spawnSync(process.execPath, [script], { encoding: "utf8" });
    expect(r.stdout + r.stderr).toContain("tensor core:");
    expect(r.status).toBe(0);
  });
});
