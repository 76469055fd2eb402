#!/usr/bin/env node
// Enforces the package dependency direction of style guide 3.1 on every import in packages/*/src,
// packages/*/test and benchmarks/, and checks that package.json declares the @tsgrad packages it imports.
// Usage: node scripts/check-deps.mjs [root]   (root defaults to the repository; exit 1 on any violation)

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const SCOPE = "@tsgrad/";

/** Which @tsgrad packages each package may import. Arrows only point up the stack. */
const ALLOWED = {
  "@tsgrad/tensor": [],
  "@tsgrad/backend-gpu": ["@tsgrad/tensor"],
  "@tsgrad/nn": ["@tsgrad/tensor"],
  "@tsgrad/peft": ["@tsgrad/tensor", "@tsgrad/nn"],
  "@tsgrad/trl": ["@tsgrad/tensor", "@tsgrad/nn", "@tsgrad/peft"],
  "@tsgrad/benchmarks": [
    "@tsgrad/tensor",
    "@tsgrad/backend-gpu",
    "@tsgrad/nn",
    "@tsgrad/peft",
    "@tsgrad/trl",
  ],
};

const SOURCE = /\.(ts|mts|cts|tsx)$/;
const SKIP_DIRS = new Set(["node_modules", "dist", "out"]);

const scriptRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
// The TypeScript scanner finds static imports, export-from, import(), require() and `import type`,
// and skips comments and strings. typescript is a root devDependency.
const ts = createRequire(join(scriptRoot, "package.json"))("typescript");

function walk(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (!SKIP_DIRS.has(name)) walk(p, out);
    } else if (SOURCE.test(name)) out.push(p);
  }
  return out;
}

function readJson(file) {
  return JSON.parse(readFileSync(file, "utf8"));
}

/** The workspaces: { dir, name, manifest, files } for each packages/* directory and benchmarks/. */
function listPackages(root) {
  const dirs = [];
  const packagesDir = join(root, "packages");
  if (existsSync(packagesDir)) {
    for (const name of readdirSync(packagesDir).sort()) {
      const dir = join(packagesDir, name);
      if (statSync(dir).isDirectory()) dirs.push({ dir, roots: ["src", "test"] });
    }
  }
  if (existsSync(join(root, "benchmarks"))) dirs.push({ dir: join(root, "benchmarks"), roots: ["."] });
  return dirs.map(({ dir, roots }) => {
    const manifest = existsSync(join(dir, "package.json")) ? readJson(join(dir, "package.json")) : {};
    return { dir, name: manifest.name ?? null, manifest, files: roots.flatMap((r) => walk(join(dir, r))) };
  });
}

/** "@tsgrad/tensor/testing" -> "@tsgrad/tensor"; null for anything outside the scope. */
function scopedPackage(spec) {
  if (!spec.startsWith(SCOPE)) return null;
  return spec.split("/").slice(0, 2).join("/");
}

/** Whether an exports map offers `subpath` ("./testing"), as a key or through a "./*" pattern. */
function isExported(exportsMap, subpath) {
  const keys = Object.keys(exportsMap);
  if (!keys.some((k) => k.startsWith("."))) return subpath === "."; // conditions only: the root
  return keys.some((k) => {
    const star = k.indexOf("*");
    return star < 0
      ? k === subpath
      : subpath.startsWith(k.slice(0, star)) && subpath.endsWith(k.slice(star + 1));
  });
}

function lineOf(text, pos) {
  let line = 1;
  for (let i = 0; i < pos; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

const isTestFile = (pkg, file) =>
  /\.test\.[cm]?tsx?$/.test(file) || relative(pkg.dir, file).split(sep)[0] === "test";

/** All violations in the tree under `root`, as { file, line, spec, rule } objects. */
export function checkDeps(root) {
  const violations = [];
  const packages = listPackages(root);
  const byName = new Map(packages.map((p) => [p.name, p]));
  let imports = 0;
  for (const pkg of packages) {
    const rel = (f) => relative(root, f).split(sep).join("/");
    if (pkg.name === null) {
      violations.push({
        file: rel(pkg.dir),
        line: 0,
        spec: "",
        rule: "a workspace needs a package.json with a name before its imports can be checked",
      });
      continue;
    }
    const allowed = ALLOWED[pkg.name];
    if (!allowed) {
      violations.push({
        file: rel(join(pkg.dir, "package.json")),
        line: 1,
        spec: pkg.name,
        rule: `no dependency rule for ${pkg.name}; add it to ALLOWED in scripts/check-deps.mjs`,
      });
      continue;
    }
    const deps = pkg.manifest.dependencies ?? {};
    const peers = pkg.manifest.peerDependencies ?? {};
    const devDeps = pkg.manifest.devDependencies ?? {};
    for (const file of pkg.files) {
      const text = readFileSync(file, "utf8");
      for (const { fileName: spec, pos } of ts.preProcessFile(text, true, true).importedFiles) {
        imports++;
        const at = { file: rel(file), line: lineOf(text, pos), spec };
        if (spec.startsWith(".")) {
          const target = resolve(dirname(file), spec);
          if (target !== pkg.dir && !target.startsWith(pkg.dir + sep)) {
            violations.push({
              ...at,
              rule: `relative imports stay inside ${rel(pkg.dir)}/; import another package by its name`,
            });
          }
          continue;
        }
        const dep = scopedPackage(spec);
        if (dep === null) continue;
        const exportsMap = byName.get(dep)?.manifest.exports;
        const subpath = `.${spec.slice(dep.length)}`;
        if (exportsMap && typeof exportsMap === "object" && !isExported(exportsMap, subpath)) {
          violations.push({ ...at, rule: `"${subpath}" is not in the "exports" map of ${dep}` });
          continue;
        }
        if (dep === pkg.name) continue;
        if (dep === "@tsgrad/benchmarks") {
          violations.push({ ...at, rule: "nothing imports benchmarks" });
        } else if (!allowed.includes(dep)) {
          const rule = allowed.length
            ? `${pkg.name} may import only ${allowed.join(", ")}`
            : `${pkg.name} imports no other @tsgrad package`;
          violations.push({ ...at, rule });
        } else if (!(dep in deps || dep in peers || (isTestFile(pkg, file) && dep in devDeps))) {
          violations.push({
            ...at,
            rule: `${dep} is imported but not declared in ${rel(join(pkg.dir, "package.json"))} "dependencies"`,
          });
        }
      }
    }
  }
  return {
    violations,
    packages: packages.length,
    files: packages.reduce((n, p) => n + p.files.length, 0),
    imports,
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? scriptRoot);
  const { violations, packages, files, imports } = checkDeps(root);
  for (const v of violations)
    console.error(`${v.file}:${v.line}: ${v.spec ? `import "${v.spec}": ` : ""}${v.rule}`);
  if (violations.length) {
    console.error(
      `check-deps: ${violations.length} violation(s) of the dependency direction (style guide 3.1)`,
    );
    process.exit(1);
  }
  console.log(
    `check-deps: ${packages} packages, ${files} files, ${imports} imports, dependency direction ok`,
  );
}
