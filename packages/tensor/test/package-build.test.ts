// The published build of @tsgrad/tensor, as a user gets it: fresh Node processes load dist/ through the
// package's exports map (ESM import and CJS require, "." and "./testing"), and tsc checks the .d.ts
// files from a consumer's side. Everything else in this repo tests src/. `npm test` builds first; when
// dist/ is missing or older than src/, this file runs tsup itself.

import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const repo = join(pkg, "..", "..");
const ARTIFACTS = ["index.js", "index.cjs", "index.d.ts", "index.d.cts"].flatMap((f) => [
  `dist/${f}`,
  `dist/testing/${f}`,
]);

function newestMtime(path: string): number {
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((name) => newestMtime(join(path, name))));
}

function buildIfStale(): void {
  const built = ARTIFACTS.map((f) => join(pkg, f));
  const inputs = ["src", "package.json", "tsup.config.ts"].map((f) => newestMtime(join(pkg, f)));
  if (built.every(existsSync) && Math.min(...built.map((f) => statSync(f).mtimeMs)) >= Math.max(...inputs)) {
    return;
  }
  const tsup = join(repo, "node_modules", "tsup", "dist", "cli-default.js");
  const r = spawnSync(process.execPath, [tsup], { cwd: pkg, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tsup build of @tsgrad/tensor failed:\n${r.stdout}\n${r.stderr}`);
}

/** Runs a script in a fresh Node process from the repo root, where node_modules/@tsgrad/tensor links here. */
function node(script: string, type: "module" | "commonjs") {
  const r = spawnSync(process.execPath, [`--input-type=${type}`, "-e", script], {
    cwd: repo,
    encoding: "utf8",
  });
  return { status: r.status, stdout: r.stdout.trim(), stderr: r.stderr };
}

// The same tiny computation in both module systems: y = sum(x * x), dy/dx = 2x, checked by gradcheck.
const BODY = `
const x = tensor([1, 2, 3], { dtype: "float64", requiresGrad: true });
const y = x.mul(x).sum();
y.backward();
assertGradients((a) => a.mul(a).sum(), [x]);
let caught = false;
try { expectAllClose(tensor([1, 2]), tensor([1, 5])); } catch { caught = true; }
if (!caught) throw new Error("expectAllClose accepted [1, 2] vs [1, 5]");
console.log(JSON.stringify({ main, testing, y: y.itemSync(), grad: x.grad.tolistSync() }));
`;

describe("@tsgrad/tensor build", () => {
  beforeAll(buildIfStale, 60_000);

  it("has ESM, CJS and type declarations for . and ./testing", () => {
    const missing = ARTIFACTS.filter((f) => !existsSync(join(pkg, f)));
    expect(missing, `missing from packages/tensor: ${missing.join(", ")}`).toEqual([]);
  });

  it("imports the ESM build through the exports map", () => {
    const r = node(
      `import { tensor } from "@tsgrad/tensor";
       import { assertGradients, expectAllClose } from "@tsgrad/tensor/testing";
       const main = import.meta.resolve("@tsgrad/tensor");
       const testing = import.meta.resolve("@tsgrad/tensor/testing");
       ${BODY}`,
      "module",
    );
    expect(r.stderr).toBe("");
    const out = JSON.parse(r.stdout);
    expect(out.main).toMatch(/packages\/tensor\/dist\/index\.js$/);
    expect(out.testing).toMatch(/packages\/tensor\/dist\/testing\/index\.js$/);
    expect(out.y).toBe(14);
    expect(out.grad).toEqual([2, 4, 6]);
  });

  it("requires the CJS build through the exports map", () => {
    const r = node(
      `const { tensor } = require("@tsgrad/tensor");
       const main = require.resolve("@tsgrad/tensor");
       const x = tensor([1, 2, 3], { dtype: "float64", requiresGrad: true });
       const y = x.mul(x).sum();
       y.backward();
       console.log(JSON.stringify({ main, y: y.itemSync(), grad: x.grad.tolistSync() }));`,
      "commonjs",
    );
    expect(r.stderr).toBe("");
    const out = JSON.parse(r.stdout);
    expect(out.main).toMatch(/packages\/tensor\/dist\/index\.cjs$/);
    expect(out.y).toBe(14);
    expect(out.grad).toEqual([2, 4, 6]);
  });

  // The CJS build of ./testing must share the main entry's chunk (tsup splitting), else it has its own
  // Tensor class and backend registry: assertGradients would find no CPU backend and expectAllClose
  // would accept any two tensors.
  it("requires ./testing in CJS and uses it on tensors from the CJS main entry", () => {
    const r = node(
      `const { tensor } = require("@tsgrad/tensor");
       const { assertGradients, expectAllClose } = require("@tsgrad/tensor/testing");
       const main = require.resolve("@tsgrad/tensor");
       const testing = require.resolve("@tsgrad/tensor/testing");
       ${BODY}`,
      "commonjs",
    );
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout).grad).toEqual([2, 4, 6]);
  });

  describe("type declarations, from a consumer's side", () => {
    let dir = "";
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "tsgrad-consumer-"));
      mkdirSync(join(dir, "node_modules", "@tsgrad"), { recursive: true });
      symlinkSync(pkg, join(dir, "node_modules", "@tsgrad", "tensor"), "dir");
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("type-check for an ESM and a CJS consumer (module nodenext)", () => {
      const use = (t: string, testing: string) => `
const x: ${t}.Tensor = ${t}.tensor([1, 2], { dtype: "float64" });
${testing}.assertGradients((a: ${t}.Tensor) => a.mul(a).sum(), [x]);
export const n: number = x.sum().itemSync();
`;
      writeFileSync(
        join(dir, "esm.mts"),
        `import * as t from "@tsgrad/tensor";\nimport * as testing from "@tsgrad/tensor/testing";\n${use("t", "testing")}`,
      );
      writeFileSync(
        join(dir, "cjs.cts"),
        `import t = require("@tsgrad/tensor");\nimport testing = require("@tsgrad/tensor/testing");\n${use("t", "testing")}`,
      );
      // No @types: the declarations must not need Node's types to be usable.
      const compilerOptions = { noEmit: true, strict: true, module: "nodenext", target: "es2022", types: [] };
      writeFileSync(
        join(dir, "tsconfig.json"),
        JSON.stringify({ compilerOptions, files: ["esm.mts", "cjs.cts"] }),
      );
      const tsc = join(repo, "node_modules", "typescript", "bin", "tsc");
      const r = spawnSync(process.execPath, [tsc, "-p", "."], { cwd: dir, encoding: "utf8" });
      expect(r.stdout + r.stderr).toBe("");
      expect(r.status).toBe(0);
    });
  });
});
