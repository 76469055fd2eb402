// Loading datasets from local files (the part of datasets.load_dataset a machine without network needs):
// a JSON / JSONL / Parquet file, a folder in the Hugging Face datasets layout, or a built-in name.
// Returns the splits by name; rows are plain objects.

import { existsSync, statSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { basename, extname, join } from "node:path";
import { parquetReadObjects } from "hyparquet";
import type { Row } from "../data/formats.js";
import { BUILTIN_DATASETS, builtinDatasetPath } from "./builtin.js";

export type DatasetDict = Record<string, Row[]>;
const EXTENSIONS = [".jsonl", ".json", ".parquet"];

function bigintsToNumbers(v: unknown): unknown {
  if (typeof v === "bigint") return Number(v);
  if (Array.isArray(v)) return v.map(bigintsToNumbers);
  if (v !== null && typeof v === "object" && !(v instanceof Uint8Array))
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, bigintsToNumbers(x)]));
  return v;
}

/** The rows of one JSON (an array of rows, or {split: rows}), JSONL or Parquet file. */
export async function readDataFile(path: string): Promise<Row[] | DatasetDict> {
  const ext = extname(path).toLowerCase();
  if (ext === ".parquet") {
    const buf = await readFile(path);
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    try {
      const rows = await parquetReadObjects({
        file: { byteLength: ab.byteLength, slice: (s, e) => ab.slice(s, e) },
      });
      return rows.map((r) => bigintsToNumbers(r) as Row);
    } catch (e) {
      throw new Error(`${path}: not a readable Parquet file (${(e as Error).message})`);
    }
  }
  const text = await readFile(path, "utf8");
  if (
    ext === ".jsonl" ||
    (ext === ".json" && !/^\s*[[{]/.test(text)) ||
    (ext === ".json" && isJsonLines(text))
  ) {
    const rows: Row[] = [];
    text.split("\n").forEach((line, i) => {
      if (line.trim() === "") return;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (e) {
        throw new Error(
          `${path}: line ${i + 1} (row ${rows.length}) is not valid JSON: ${(e as Error).message}`,
        );
      }
      if (row === null || typeof row !== "object" || Array.isArray(row))
        throw new Error(`${path}: line ${i + 1} (row ${rows.length}) is not a JSON object`);
      rows.push(row as Row);
    });
    return rows;
  }
  if (ext !== ".json")
    throw new Error(`${path}: unsupported file type "${ext}"; expected ${EXTENSIONS.join(", ")}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (Array.isArray(json)) {
    json.forEach((r, i) => {
      if (r === null || typeof r !== "object" || Array.isArray(r))
        throw new Error(`${path}: row ${i} is not a JSON object`);
    });
    return json as Row[];
  }
  if (json !== null && typeof json === "object" && Object.values(json).every(Array.isArray))
    return json as DatasetDict;
  throw new Error(`${path}: expected a JSON array of rows or an object of splits ({"train": [...]})`);
}

/** Several JSON objects on separate lines in a .json file (JSON Lines, as load_dataset("json") accepts). */
function isJsonLines(text: string): boolean {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  return lines.length > 1 && /^\s*\{/.test(lines[0]!) && /\}\s*$/.test(lines[0]!) && /^\s*\{/.test(lines[1]!);
}

/** Split name of a data file: "train-00000-of-00001.parquet" and "train.jsonl" -> "train". */
function splitOf(file: string): string {
  return basename(file)
    .replace(/\.[^.]+$/, "")
    .split(/[-.]/)[0]!;
}

function addRows(out: DatasetDict, split: string, rows: Row[]): void {
  out[split] = [...(out[split] ?? []), ...rows];
}

async function readFolder(dir: string): Promise<DatasetDict> {
  const where =
    existsSync(join(dir, "data")) && statSync(join(dir, "data")).isDirectory() ? join(dir, "data") : dir;
  const entries = (await readdir(where, { withFileTypes: true })).sort((a, b) =>
    a.name.localeCompare(b.name),
  );
  const out: DatasetDict = {};
  for (const e of entries) {
    const path = join(where, e.name);
    if (e.isDirectory()) {
      // A split folder: train/*.parquet
      const files = (await readdir(path)).filter((n) => EXTENSIONS.includes(extname(n).toLowerCase())).sort();
      for (const n of files) {
        const rows = await readDataFile(join(path, n));
        if (!Array.isArray(rows))
          throw new Error(`${join(path, n)}: a split file must hold rows, not splits`);
        addRows(out, e.name, rows);
      }
    } else if (EXTENSIONS.includes(extname(e.name).toLowerCase())) {
      const rows = await readDataFile(path);
      if (!Array.isArray(rows)) throw new Error(`${path}: a split file must hold rows, not splits`);
      addRows(out, splitOf(e.name), rows);
    }
  }
  if (Object.keys(out).length === 0)
    throw new Error(`${dir}: no data files (${EXTENSIONS.join(", ")}) in the folder or its data/ sub-folder`);
  return out;
}

/**
 * The splits of `name`: a file (its rows are the "train" split unless it holds {split: rows}), a folder
 * (data/<split>-*.parquet, <split>.jsonl, <split>/*.parquet, ...), or a built-in dataset.
 * @example const { train } = await loadDataset("data/chat.jsonl");
 */
export async function loadDataset(
  name: string,
  options: { config?: string | null } = {},
): Promise<DatasetDict> {
  let path = name;
  if (!existsSync(path)) {
    const builtin = builtinDatasetPath(name);
    if (builtin === null) {
      const known = Object.keys(BUILTIN_DATASETS);
      throw new Error(
        `dataset_name "${name}": no such file or folder, and not a built-in dataset (${known.length ? `built-ins: ${known.join(", ")}` : "no built-ins are registered"}); Hub datasets cannot be downloaded here`,
      );
    }
    if (!existsSync(builtin)) throw new Error(`built-in dataset "${name}": its file ${builtin} is missing`);
    path = builtin;
  }
  if (statSync(path).isDirectory()) {
    if (options.config) {
      const sub = join(path, options.config);
      if (!existsSync(sub)) throw new Error(`dataset_config "${options.config}": ${sub} does not exist`);
      return readFolder(sub);
    }
    return readFolder(path);
  }
  const rows = await readDataFile(path);
  return Array.isArray(rows) ? { train: rows } : rows;
}

/** One split, with an error that lists the splits there are. */
export function getSplit(dict: DatasetDict, split: string, flag: string, name: string): Row[] {
  const rows = dict[split];
  if (!rows)
    throw new Error(
      `${flag} "${split}": dataset "${name}" has no such split (it has ${Object.keys(dict)
        .map((s) => `"${s}"`)
        .join(", ")})`,
    );
  return rows;
}
