// The facts the built-in datasets and the synthetic pretraining text are made from: countries-list@3.4.1
// (MIT, vendored in data/countries-list), with a seeded, deterministic train/test split of the countries.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export const ROOT = join(import.meta.dirname, "..", "..");

export interface Country {
  code: string;
  /** Display name as used in a sentence, "the" included where English needs it ("the Netherlands"). */
  name: string;
  capital: string;
  continent: string;
}

/** mulberry32: a small seeded generator, so every script here is reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates with the given generator; returns a new array. */
export function shuffled<T>(xs: readonly T[], rand: () => number): T[] {
  const out = xs.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const THE =
  /Islands$|^(United |Republic |Democratic |Central African|Dominican|Isle |French Southern|U\.S\. )|^(Bahamas|Gambia|Comoros|Maldives|Netherlands|Philippines|Seychelles)$/;

/** Countries and territories that have a capital in countries-list, in code order. */
export function loadCountries(): Country[] {
  const dir = join(ROOT, "data", "countries-list");
  const raw = JSON.parse(readFileSync(join(dir, "countries.min.json"), "utf8")) as Record<
    string,
    { name: string; capital: string; continent: string }
  >;
  const continents = JSON.parse(readFileSync(join(dir, "continents.min.json"), "utf8")) as Record<
    string,
    string
  >;
  return Object.keys(raw)
    .sort()
    .filter((code) => raw[code]!.capital !== "")
    .map((code) => {
      const c = raw[code]!;
      return {
        code,
        name: THE.test(c.name) && !c.name.includes(" and the ") ? `the ${c.name}` : c.name,
        capital: c.capital,
        continent: continents[c.continent] ?? c.continent,
      };
    });
}

/** Capitalizes the first letter (sentence start: "The Netherlands ..."). */
export const upperFirst = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

export const SPLIT_SEED = 20250;
export const TEST_SIZE = 24;

/** The seeded split: TEST_SIZE held-back countries and the rest for training. */
export function splitCountries(all = loadCountries()): { train: Country[]; test: Country[] } {
  const order = shuffled(all, rng(SPLIT_SEED));
  const test = order.slice(0, TEST_SIZE).sort((a, b) => a.code.localeCompare(b.code));
  const testCodes = new Set(test.map((c) => c.code));
  return { train: all.filter((c) => !testCodes.has(c.code)), test };
}

const QUESTIONS = [
  (n: string) => `What is the capital of ${n}?`,
  (n: string) => `What is the capital city of ${n}?`,
  (n: string) => `Which city is the capital of ${n}?`,
  (n: string) => `Name the capital of ${n}.`,
];

/** The capital question for a country; `variant` picks the phrasing. */
export function capitalQuestion(c: Country, variant = 0): string {
  return QUESTIONS[variant % QUESTIONS.length]!(c.name);
}

export function capitalAnswer(c: Country): string {
  return `The capital of ${c.name} is ${c.capital}.`;
}

export const NUM_QUESTION_VARIANTS = QUESTIONS.length;

/** True when the module at `url` is the script node was started with (import.meta.main on newer Node). */
export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && url === pathToFileURL(process.argv[1]).href;
}
