// Shared fixtures for the trl tests: a character-level tokenizer with a ChatML template and a tiny Qwen2.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CausalLM, PreTrainedTokenizer, Qwen2Config, Qwen2ForCausalLM } from "@tsgrad/nn";
import { manualSeed } from "@tsgrad/tensor";

const CHARS = " abcdefghijklmnopqrstuvwxyz.,?!\n:".split("");
export const SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
export const PAD_ID = CHARS.length; // <|endoftext|>
export const IM_START = CHARS.length + 1;
export const IM_END = CHARS.length + 2; // also the EOS

export const CHATML =
  "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

export function tokenizerJson(): string {
  const vocab: Record<string, number> = {};
  CHARS.forEach((c, i) => {
    vocab[c] = i;
  });
  SPECIAL.forEach((s, i) => {
    vocab[s] = CHARS.length + i;
  });
  return JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map((s, i) => ({
      id: CHARS.length + i,
      content: s,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: [],
    },
  });
}

export const TOKENIZER_CONFIG = {
  eos_token: "<|im_end|>",
  pad_token: "<|endoftext|>",
  chat_template: CHATML,
};

export function makeTokenizer(): PreTrainedTokenizer {
  return new PreTrainedTokenizer(tokenizerJson(), TOKENIZER_CONFIG);
}

/** Character ids of `s` (the test tokenizer maps each character to one id). */
export function ids(s: string): number[] {
  return [...s].map((c) => CHARS.indexOf(c));
}

export const TINY = {
  vocab_size: 40,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 256,
  initializer_range: 0.2,
  tie_word_embeddings: false,
};

export function makeModel(seed = 0): CausalLM {
  manualSeed(seed);
  return new Qwen2ForCausalLM(new Qwen2Config(TINY));
}

/** A model folder with config.json, weights and the tokenizer files. */
export async function writeModelDir(dir: string, seed = 0): Promise<CausalLM> {
  const model = makeModel(seed);
  await model.savePretrained(dir);
  await writeFile(join(dir, "tokenizer.json"), tokenizerJson());
  await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(TOKENIZER_CONFIG));
  return model;
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "tsgrad-trl-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const TEXT_ROWS = [
  { text: "the sky is blue." },
  { text: "the grass is green." },
  { text: "the sun is hot." },
  { text: "snow is cold." },
  { text: "the sea is deep." },
  { text: "fire is bright." },
  { text: "ice is hard." },
  { text: "wind is fast." },
];

export const PC_ROWS = [
  { prompt: "sky:", completion: " blue" },
  { prompt: "grass:", completion: " green" },
  { prompt: "sun:", completion: " hot" },
  { prompt: "snow:", completion: " cold" },
];
