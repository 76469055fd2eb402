// The pretraining text of models/tsgrad-tiny-qwen, shared by the tokenizer trainer and the pretraining
// script: Moby Dick (public domain, data/moby-dick) with its last three chapters and epilogue held out, plus
// synthetic text from countries-list (MIT): prose facts about every country (capital and continent) and
// ChatML conversations about continents. No capital *question* appears here: those are the SFT task, and
// the test split's questions stay unseen.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Country, loadCountries, ROOT, rng, shuffled, upperFirst } from "./facts.js";

export const HELD_OUT_MARKER = "CHAPTER 133.";

/** Moby Dick split into the training text (chapters up to 132) and the held-out rest. */
export function mobyDick(): { train: string; heldOut: string } {
  const text = readFileSync(join(ROOT, "data", "moby-dick", "moby-dick.txt"), "utf8").normalize("NFC");
  const cut = text.indexOf(HELD_OUT_MARKER);
  if (cut < 0) throw new Error(`moby-dick.txt: "${HELD_OUT_MARKER}" not found`);
  return { train: text.slice(0, cut), heldOut: text.slice(cut) };
}

const PROSE: ((c: Country) => string)[] = [
  (c) => `The capital of ${c.name} is ${c.capital}.`,
  (c) => `${c.capital} is the capital of ${c.name}.`,
  (c) => `${upperFirst(c.name)} is in ${c.continent}, and its capital is ${c.capital}.`,
  (c) => `${upperFirst(c.name)} lies in ${c.continent}. Its capital city is ${c.capital}.`,
  (c) => `${c.capital}, the capital of ${c.name}, is a city in ${c.continent}.`,
  (c) => `In ${c.continent} lies ${c.name}, whose capital is ${c.capital}.`,
];

/** Paragraphs of 3 to 6 fact sentences; every country appears `rounds` times, each time in a new template. */
export function factProse(seed: number, rounds: number): string[] {
  const rand = rng(seed);
  const countries = loadCountries();
  const paragraphs: string[] = [];
  for (let r = 0; r < rounds; r++) {
    const order = shuffled(countries, rand);
    for (let i = 0; i < order.length; ) {
      const n = 3 + Math.floor(rand() * 4);
      const part = order.slice(i, i + n);
      i += n;
      paragraphs.push(part.map((c) => PROSE[Math.floor(rand() * PROSE.length)]!(c)).join(" "));
    }
  }
  return paragraphs;
}

const CONTINENT_Q: ((c: Country) => string)[] = [
  (c) => `Which continent is ${c.name} in?`,
  (c) => `On which continent is ${c.name}?`,
  (c) => `Where is ${c.name}?`,
  (c) => `What continent is ${c.name} part of?`,
];

/** ChatML as the model's chat template renders it (no system turn). */
export function chatml(turns: readonly { role: string; content: string }[]): string {
  return turns.map((t) => `<|im_start|>${t.role}\n${t.content}<|im_end|>\n`).join("");
}

/** Conversations of one or two continent questions, every country `rounds` times. */
export function continentChats(seed: number, rounds: number): string[] {
  const rand = rng(seed);
  const countries = loadCountries();
  const chats: string[] = [];
  for (let r = 0; r < rounds; r++) {
    const order = shuffled(countries, rand);
    for (let i = 0; i < order.length; ) {
      const n = rand() < 0.7 ? 1 : 2;
      const turns = order.slice(i, i + n).flatMap((c) => [
        { role: "user", content: CONTINENT_Q[Math.floor(rand() * CONTINENT_Q.length)]!(c) },
        { role: "assistant", content: `${upperFirst(c.name)} is in ${c.continent}.` },
      ]);
      i += n;
      chats.push(chatml(turns));
    }
  }
  return chats;
}
