// scripts/check-deps.mjs on small fake trees (one rule each) and on the repository itself.

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const script = join(repo, "scripts", "check-deps.mjs");

const MANIFESTS: Record<string, object> = {
  "packages/tensor/package.json": { name: "@tsgrad/tensor" },
  "packages/backend-gpu/package.json": {
    name: "@tsgrad/backend-gpu",
    dependencies: { "@tsgrad/tensor": "0.1.0" },
  },
  "packages/nn/package.json": { name: "@tsgrad/nn", dependencies: { "@tsgrad/tensor": "0.1.0" } },
  "packages/peft/package.json": {
    name: "@tsgrad/peft",
    dependencies: { "@tsgrad/tensor": "0.1.0", "@tsgrad/nn": "0.1.0" },
  },
  "benchmarks/package.json": { name: "@tsgrad/benchmarks", dependencies: { "@tsgrad/tensor": "0.1.0" } },
};

const GOOD: Record<string, string> = {
  "packages/tensor/src/index.ts": 'export * from "./tensor.js";\n',
  "packages/tensor/src/tensor.ts": "// see @tsgrad/nn for modules\nexport class Tensor {}\n",
  "packages/tensor/test/t.test.ts": 'import { Tensor } from "@tsgrad/tensor";\nimport "../src/index.js";\n',
  "packages/backend-gpu/src/index.ts":
    'import type { Tensor } from "@tsgrad/tensor";\nexport type T = Tensor;\n',
  "packages/nn/src/index.ts": 'import { Tensor } from "@tsgrad/tensor";\nexport const t = Tensor;\n',
  "packages/peft/src/index.ts": 'export * from "@tsgrad/nn";\nexport { Tensor } from "@tsgrad/tensor";\n',
  "benchmarks/matmul.bench.ts": 'import { Tensor } from "@tsgrad/tensor";\nexport const t = Tensor;\n',
};

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fakeTree(files: Record<string, string>, manifests = MANIFESTS): string {
  const root = mkdtempSync(join(tmpdir(), "tsgrad-check-deps-"));
  dirs.push(root);
  const all = {
    ...Object.fromEntries(Object.entries(manifests).map(([p, m]) => [p, JSON.stringify(m)])),
    ...files,
  };
  for (const [path, text] of Object.entries(all)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

function run(root: string) {
  const r = spawnSync(process.execPath, [script, root], { encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe("check-deps", () => {
  it("passes a tree whose imports follow the dependency direction", () => {
    const r = run(fakeTree(GOOD));
    expect(r.out).toContain("dependency direction ok");
    expect(r.status).toBe(0);
  });

  it.each([
    [
      "an upward static import",
      "packages/nn/src/bad.ts",
      'import { LoraLinear } from "@tsgrad/peft";\n',
      "@tsgrad/peft",
      "@tsgrad/nn may import only @tsgrad/tensor",
      2,
    ],
    [
      "a multi-line export-from",
      "packages/tensor/src/bad.ts",
      'export {\n  Linear,\n} from "@tsgrad/nn";\n',
      "@tsgrad/nn",
      "@tsgrad/tensor imports no other @tsgrad package",
      4, // the line of the specifier
    ],
    [
      "a dynamic import in a test",
      "packages/nn/test/bad.test.ts",
      'const m = await import("@tsgrad/backend-gpu");\n',
      "@tsgrad/backend-gpu",
      "@tsgrad/nn may import only @tsgrad/tensor",
      2,
    ],
    [
      "a relative import out of the package",
      "packages/peft/src/bad.ts",
      'import { Linear } from "../../nn/src/layers/linear.js";\n',
      "../../nn/src/layers/linear.js",
      "relative imports stay inside packages/peft/",
      2,
    ],
    [
      "an import of benchmarks",
      "packages/nn/src/bad.ts",
      'import "@tsgrad/benchmarks";\n',
      "@tsgrad/benchmarks",
      "nothing imports benchmarks",
      2,
    ],
  ])("fails on %s, naming the file, the import and the rule", (_, file, text, spec, rule, line) => {
    const r = run(fakeTree({ ...GOOD, [file]: `// header\n${text}` }));
    expect(r.status).toBe(1);
    expect(r.out).toContain(`${file}:${line}: import "${spec}": ${rule}`);
  });

  it("fails when an allowed @tsgrad import is missing from package.json dependencies", () => {
    const manifests = { ...MANIFESTS, "packages/nn/package.json": { name: "@tsgrad/nn" } };
    const r = run(fakeTree(GOOD, manifests));
    expect(r.status).toBe(1);
    expect(r.out).toContain(
      'packages/nn/src/index.ts:1: import "@tsgrad/tensor": @tsgrad/tensor is imported but not declared in packages/nn/package.json "dependencies"',
    );
  });

  it("fails on a deep import that the target's exports map does not offer", () => {
    const manifests = {
      ...MANIFESTS,
      "packages/tensor/package.json": {
        name: "@tsgrad/tensor",
        exports: { ".": "./dist/index.js", "./testing": "./dist/testing/index.js" },
      },
    };
    const ok = run(
      fakeTree({ ...GOOD, "packages/nn/test/t.test.ts": 'import "@tsgrad/tensor/testing";\n' }, manifests),
    );
    expect(ok.status).toBe(0);
    const bad = run(
      fakeTree(
        { ...GOOD, "packages/nn/src/deep.ts": 'import { apply } from "@tsgrad/tensor/src/ops/apply.js";\n' },
        manifests,
      ),
    );
    expect(bad.status).toBe(1);
    expect(bad.out).toContain(
      'packages/nn/src/deep.ts:1: import "@tsgrad/tensor/src/ops/apply.js": "./src/ops/apply.js" is not in the "exports" map of @tsgrad/tensor',
    );
  });

  it("fails on a package it has no rule for", () => {
    const manifests = { ...MANIFESTS, "packages/extra/package.json": { name: "@tsgrad/extra" } };
    const r = run(fakeTree(GOOD, manifests));
    expect(r.status).toBe(1);
    expect(r.out).toContain("no dependency rule for @tsgrad/extra");
  });

  it("fails on a package directory without a package.json", () => {
    const r = run(fakeTree({ ...GOOD, "packages/orphan/src/index.ts": 'import "@tsgrad/trl";\n' }));
    expect(r.status).toBe(1);
    expect(r.out).toContain("packages/orphan:0");
    expect(r.out).toContain("needs a package.json with a name");
  });

  it("ignores imports in comments and strings", () => {
    const text =
      '// import "@tsgrad/trl";\n/* await import("@tsgrad/peft") */\nexport const s = \'import "@tsgrad/nn"\';\n';
    const r = run(fakeTree({ ...GOOD, "packages/tensor/src/doc.ts": text }));
    expect(r.status).toBe(0);
  });

  it("passes on this repository", () => {
    const r = run(repo);
    expect(r.out).toContain("dependency direction ok");
    expect(r.status).toBe(0);
  });
});
