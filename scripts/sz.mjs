#!/usr/bin/env node
// Line budget, after tinygrad's sz.py and MAX_LINE_COUNT (style guide 4): prints lines per package, fails
// when packages/tensor/src (without testing/ and backend-wasm/) passes TENSOR_BUDGET or a source file
// passes FILE_LIMIT, and warns about files over FILE_AIM.
// Usage: node scripts/sz.mjs [root]   (root defaults to the repository; exit 1 when over budget)

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

export const TENSOR_BUDGET = 6000;
export const FILE_LIMIT = 800;
export const FILE_AIM = 400;
const TENSOR_EXCLUDED = ["testing", "backend-wasm"];

const SKIP_DIRS = new Set(["node_modules", "dist", "out"]);
const isTest = (rel) => /\.test\.[cm]?tsx?$/.test(rel) || rel.split("/").includes("test");

function walk(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (!SKIP_DIRS.has(name)) walk(p, out);
    } else if (/\.[cm]?tsx?$/.test(name) && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

function countLines(file) {
  const text = readFileSync(file, "utf8");
  if (text.length === 0) return 0;
  let n = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) n++;
  return text.endsWith("\n") ? n : n + 1;
}

/** Line counts and budget checks for the tree under `root`. */
export function measure(root) {
  const rel = (f) => relative(root, f).split(sep).join("/");
  const areas = [];
  const packagesDir = join(root, "packages");
  if (existsSync(packagesDir)) {
    for (const name of readdirSync(packagesDir).sort()) {
      const dir = join(packagesDir, name);
      if (statSync(dir).isDirectory()) areas.push({ name, dirs: [join(dir, "src"), join(dir, "test")] });
    }
  }
  areas.push({ name: "benchmarks", dirs: [join(root, "benchmarks")] });

  const rows = [];
  const errors = [];
  const warnings = [];
  for (const area of areas) {
    const row = { name: area.name, files: 0, source: 0, tests: 0 };
    for (const file of area.dirs.flatMap((d) => walk(d))) {
      const r = rel(file);
      const lines = countLines(file);
      row.files++;
      if (isTest(r)) {
        row.tests += lines;
        continue;
      }
      row.source += lines;
      if (lines > FILE_LIMIT)
        errors.push(`${r}: ${lines} lines, over the ${FILE_LIMIT}-line limit for one file`);
      else if (lines > FILE_AIM) warnings.push(`${r}: ${lines} lines (aim: at most ${FILE_AIM})`);
    }
    rows.push(row);
  }

  const tensorSrc = join(packagesDir, "tensor", "src");
  const tensorCore = walk(tensorSrc)
    .filter((f) => !TENSOR_EXCLUDED.includes(relative(tensorSrc, f).split(sep)[0]))
    .filter((f) => !isTest(rel(f)))
    .reduce((n, f) => n + countLines(f), 0);
  if (tensorCore > TENSOR_BUDGET) {
    errors.push(
      `packages/tensor/src (without ${TENSOR_EXCLUDED.join("/, ")}/): ${tensorCore} lines, over the budget of ${TENSOR_BUDGET}`,
    );
  }
  return { rows, tensorCore, errors, warnings };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), ".."));
  const { rows, tensorCore, errors, warnings } = measure(root);
  const pad = (s, n) => String(s).padStart(n);
  console.log(`${"package".padEnd(14)}${pad("files", 7)}${pad("source", 9)}${pad("tests", 9)}`);
  for (const r of rows)
    console.log(`${r.name.padEnd(14)}${pad(r.files, 7)}${pad(r.source, 9)}${pad(r.tests, 9)}`);
  const total = rows.reduce(
    (t, r) => ({ files: t.files + r.files, source: t.source + r.source, tests: t.tests + r.tests }),
    { files: 0, source: 0, tests: 0 },
  );
  console.log(`${"total".padEnd(14)}${pad(total.files, 7)}${pad(total.source, 9)}${pad(total.tests, 9)}`);
  console.log(`tensor core: ${tensorCore} / ${TENSOR_BUDGET} lines`);
  for (const w of warnings) console.log(`warning: ${w}`);
  for (const e of errors) console.error(`error: ${e}`);
  if (errors.length) {
    console.error(`sz: ${errors.length} line budget(s) exceeded`);
    process.exit(1);
  }
}
