// Built-in datasets: names the CLI and loadDataset accept as --dataset_name, mapped to files shipped with
// this package (paths relative to the package root, e.g. "assets/datasets/<name>.jsonl") or absolute paths.

import { existsSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";

/** name -> file (JSON, JSONL, Parquet) or dataset folder, relative to the @tsgrad/trl package root. */
export const BUILTIN_DATASETS: Record<string, string> = {};

/** The @tsgrad/trl package root: the nearest folder above this module holding a package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("built-in datasets: cannot find the @tsgrad/trl package folder");
    dir = up;
  }
  return dir;
}

/** The file of built-in dataset `name`, or null when there is no such built-in. */
export function builtinDatasetPath(name: string): string | null {
  const rel = BUILTIN_DATASETS[name];
  if (rel === undefined) return null;
  return isAbsolute(rel) ? rel : join(packageRoot(), rel);
}
