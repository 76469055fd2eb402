// Runs every ```ts block of the root README and of this package's README, as written, against src/ (the
// vitest aliases), so the documented examples cannot drift from the API. Each block is a whole program.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { setBackend } from "@tsgrad/tensor";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const READMES = ["README.md", "packages/tensor/README.md", "packages/peft/README.md"];

function tsBlocks(readme: string): { line: number; code: string }[] {
  const text = readFileSync(join(repo, readme), "utf8");
  const blocks: { line: number; code: string }[] = [];
  const fence = /^```ts\n([\s\S]*?)^```$/gm;
  for (let m = fence.exec(text); m !== null; m = fence.exec(text)) {
    blocks.push({ line: text.slice(0, m.index).split("\n").length, code: m[1]! });
  }
  return blocks;
}

const dir = mkdtempSync(join(tmpdir(), "tsgrad-readme-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  setBackend("cpu");
  vi.restoreAllMocks();
});

describe.each(READMES)("%s", (readme) => {
  const blocks = tsBlocks(readme);

  it("has ts examples", () => {
    expect(blocks.length).toBeGreaterThan(0);
  });

  it.each(blocks)(`runs the example at line $line`, async ({ line, code }) => {
    const file = join(dir, `${readme.replace(/[/.]/g, "-")}-${line}.ts`);
    writeFileSync(file, code);
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    await import(/* @vite-ignore */ pathToFileURL(file).href);
    expect(log).toHaveBeenCalled();
  });
});
