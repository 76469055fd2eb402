// Generates the built-in datasets in datasets/ from countries-list@3.4.1 (MIT, data/countries-list):
// capital-city questions in the four shapes TRL's trainers read, with one seeded train/test split shared
// by all of them (the test countries are held back from pretraining's question text too).
//   npx tsx scripts/pretrain/make-datasets.ts

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Country,
  capitalAnswer,
  capitalQuestion,
  isMain,
  NUM_QUESTION_VARIANTS,
  ROOT,
  rng,
  splitCountries,
} from "./facts.js";

type Msg = { role: "user" | "assistant"; content: string };

const user = (content: string): Msg => ({ role: "user", content });
const assistant = (content: string): Msg => ({ role: "assistant", content });

function writeJsonl(dir: string, file: string, rows: readonly object[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, file), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
}

/** A wrong capital for the preference data: another country's capital, from the same continent when possible. */
function wrongCapital(c: Country, all: readonly Country[], rand: () => number): string {
  const others = all.filter((o) => o.capital !== c.capital);
  const near = others.filter((o) => o.continent === c.continent);
  const pool = near.length > 0 ? near : others;
  return pool[Math.floor(rand() * pool.length)]!.capital;
}

export function buildDatasets(): Record<string, { train: object[]; test: object[] }> {
  const { train, test } = splitCountries();
  const all = [...train, ...test];
  const variantRand = rng(7);
  const variant = new Map(all.map((c) => [c.code, Math.floor(variantRand() * NUM_QUESTION_VARIANTS)]));
  const q = (c: Country) => capitalQuestion(c, variant.get(c.code)!);
  const wrongRand = rng(11);
  const wrong = new Map(all.map((c) => [c.code, wrongCapital(c, all, wrongRand)]));
  const make = (rowOf: (c: Country) => object) => ({ train: train.map(rowOf), test: test.map(rowOf) });
  return {
    "capitals-sft": make((c) => ({ messages: [user(q(c)), assistant(capitalAnswer(c))] })),
    "capitals-prompt-completion": make((c) => ({
      prompt: [user(q(c))],
      completion: [assistant(capitalAnswer(c))],
    })),
    "capitals-preference": make((c) => ({
      prompt: [user(q(c))],
      chosen: [assistant(capitalAnswer(c))],
      rejected: [assistant(capitalAnswer({ ...c, capital: wrong.get(c.code)! }))],
    })),
    "capitals-grpo": make((c) => ({ prompt: [user(q(c))], solution: c.capital })),
  };
}

if (isMain(import.meta.url)) {
  for (const [name, { train, test }] of Object.entries(buildDatasets())) {
    const dir = join(ROOT, "datasets", name);
    writeJsonl(dir, "train.jsonl", train);
    writeJsonl(dir, "test.jsonl", test);
    console.log(`datasets/${name}: ${train.length} train, ${test.length} test`);
  }
}
