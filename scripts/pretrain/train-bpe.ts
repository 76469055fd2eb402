// Trains the byte-level BPE tokenizer of models/tsgrad-tiny-qwen on the pretraining text and writes
// tokenizer.json (Qwen2's normalizer, split regex, ByteLevel pre-tokenizer and decoder; <|endoftext|>,
// <|im_start|>, <|im_end|> as added special tokens) and tokenizer_config.json (ChatML chat template).
// Deterministic: the same text always gives the same merges (ties broken by the pair's ids).
//   npx tsx scripts/pretrain/train-bpe.ts [outDir]

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { continentChats, factProse, mobyDick } from "./corpus.js";
import { isMain, ROOT } from "./facts.js";

export const VOCAB_SIZE = 2048;
export const SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] as const;
export const MODEL_MAX_LENGTH = 512;

/** Qwen2's pre-tokenizer regex as written in its tokenizer.json (Rust regex syntax). */
export const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** The same pattern for JavaScript, which has no inline (?i:...) group. */
const SPLIT_JS =
  /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

export const CHAT_TEMPLATE =
  "{%- for message in messages %}" +
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  "{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/**
 * GPT-2's bytes_to_unicode, the printable stand-in character of every byte that ByteLevel uses: `order` lists
 * the bytes in GPT-2's (and Qwen2's vocabulary) order, printable ones first; `char[b]` is byte b's character.
 */
export function byteLevelTable(): { order: number[]; char: string[] } {
  const order: number[] = [];
  for (let b = 33; b <= 126; b++) order.push(b);
  for (let b = 161; b <= 172; b++) order.push(b);
  for (let b = 174; b <= 255; b++) order.push(b);
  const char = new Array<string>(256);
  for (const b of order) char[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (char[b] === undefined) {
      order.push(b);
      char[b] = String.fromCodePoint(256 + n++);
    }
  }
  return { order, char };
}

/** Word -> count over the pre-tokenized text, words as byte-level strings; special tokens are cut out. */
function countWords(texts: readonly string[]): Map<string, number> {
  const { char } = byteLevelTable();
  const enc = new TextEncoder();
  const counts = new Map<string, number>();
  const special = new RegExp(SPECIAL_TOKENS.map((t) => t.replace(/[|]/g, "\\|")).join("|"), "g");
  for (const text of texts) {
    for (const piece of text.normalize("NFC").split(special)) {
      for (const m of piece.matchAll(SPLIT_JS)) {
        let w = "";
        for (const b of enc.encode(m[0])) w += char[b];
        counts.set(w, (counts.get(w) ?? 0) + 1);
      }
    }
  }
  return counts;
}

/** Learns numMerges merges; returns the vocabulary (alphabet then merged symbols) and the merges. */
export function trainBpe(
  texts: readonly string[],
  numMerges: number,
): { vocab: string[]; merges: [string, string][] } {
  const { order, char } = byteLevelTable();
  const vocab = order.map((b) => char[b]!);
  const id = new Map(vocab.map((s, i) => [s, i]));
  const counts = countWords(texts);
  const wordList = [...counts.keys()].sort();
  const freq = wordList.map((w) => counts.get(w)!);
  const words = wordList.map((w) => Array.from(w, (ch) => id.get(ch)!));
  const KEY = 1 << 16;
  const pairCount = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const addPairs = (wi: number, sign: number) => {
    const w = words[wi]!;
    for (let i = 0; i + 1 < w.length; i++) {
      const k = w[i]! * KEY + w[i + 1]!;
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * freq[wi]!);
      if (sign > 0) {
        let s = where.get(k);
        if (!s) {
          s = new Set();
          where.set(k, s);
        }
        s.add(wi);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, 1);
  const merges: [string, string][] = [];
  for (let m = 0; m < numMerges; m++) {
    let best = -1;
    let bestCount = 1; // a pair must occur at least twice
    for (const [k, c] of pairCount) {
      if (c > bestCount || (c === bestCount && best >= 0 && k < best)) {
        best = k;
        bestCount = c;
      }
    }
    if (best < 0) break;
    const a = Math.floor(best / KEY);
    const b = best % KEY;
    const newId = vocab.length;
    vocab.push(vocab[a]! + vocab[b]!);
    merges.push([vocab[a]!, vocab[b]!]);
    const touched = [...(where.get(best) ?? [])].sort((x, y) => x - y);
    for (const wi of touched) {
      const w = words[wi]!;
      addPairs(wi, -1);
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(newId);
          i++;
        } else out.push(w[i]!);
      }
      words[wi] = out;
      addPairs(wi, 1);
    }
    where.delete(best);
    pairCount.delete(best);
    for (const [k, c] of pairCount) if (c === 0) pairCount.delete(k);
  }
  return { vocab, merges };
}

const addedToken = (content: string, id: number) => ({
  id,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special: true,
});

/** tokenizer.json in the layout Qwen2's files use. */
export function tokenizerJson(vocab: readonly string[], merges: readonly [string, string][]): object {
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((t, i) => addedToken(t, vocab.length + i)),
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: QWEN2_SPLIT }, behavior: "Isolated", invert: false },
        byteLevel,
      ],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab.map((s, i) => [s, i])),
      merges,
    },
  };
}

export function tokenizerConfig(firstSpecialId: number): object {
  return {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: Object.fromEntries(
      SPECIAL_TOKENS.map((t, i) => {
        const { id, ...rest } = addedToken(t, firstSpecialId + i);
        return [String(id), rest];
      }),
    ),
    additional_special_tokens: ["<|im_start|>", "<|im_end|>"],
    bos_token: null,
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: "<|im_end|>",
    errors: "replace",
    model_max_length: MODEL_MAX_LENGTH,
    pad_token: "<|endoftext|>",
    split_special_tokens: false,
    tokenizer_class: "Qwen2Tokenizer",
    unk_token: null,
  };
}

/** The tokenizer's training text: Moby Dick's training part and one round of the synthetic text. */
export function tokenizerTexts(): string[] {
  return [mobyDick().train, ...factProse(1, 2), ...continentChats(2, 1)];
}

if (isMain(import.meta.url)) {
  const out = process.argv[2] ?? join(ROOT, "models", "tsgrad-tiny-qwen");
  const t0 = performance.now();
  const { vocab, merges } = trainBpe(tokenizerTexts(), VOCAB_SIZE - 256 - SPECIAL_TOKENS.length);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "tokenizer.json"), JSON.stringify(tokenizerJson(vocab, merges), null, 2) + "\n");
  writeFileSync(
    join(out, "tokenizer_config.json"),
    JSON.stringify(tokenizerConfig(vocab.length), null, 2) + "\n",
  );
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`${vocab.length} BPE tokens + ${SPECIAL_TOKENS.length} special -> ${out} (${s} s)`);
}
