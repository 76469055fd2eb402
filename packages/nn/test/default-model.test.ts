import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  type CausalLM,
  type PreTrainedTokenizer,
  Qwen2ForCausalLM,
} from "@tsgrad/nn";
import { noGrad, tidy } from "@tsgrad/tensor";
import { beforeAll, describe, expect, it } from "vitest";

// The committed default model (models/tsgrad-tiny-qwen, built by scripts/pretrain/) and its tokenizer.
const ROOT = join(import.meta.dirname, "..", "..", "..");
const DIR = join(ROOT, "models", "tsgrad-tiny-qwen");
const VOCAB = 2048;
// The last three chapters and the epilogue of Moby Dick were held out of pretraining (scripts/pretrain/corpus.ts).
const HELD_OUT = readFileSync(join(ROOT, "data", "moby-dick", "moby-dick.txt"), "utf8").split(
  "CHAPTER 133.",
)[1]!;
// The loss on the four held-out windows below, in nats/token, was 4.450 when the model was committed
// (MODEL_CARD.md); the bound leaves slack for backend rounding. Chance is ln(2048) = 7.62.
const HELD_OUT_LOSS_MAX = 4.5;

let tok: PreTrainedTokenizer;
let model: CausalLM;
beforeAll(async () => {
  tok = await AutoTokenizer.fromPretrained(DIR);
  model = await AutoModelForCausalLM.fromPretrained(DIR);
  model.eval();
});

describe("embedded default model tsgrad-tiny-qwen", () => {
  it("is a tied Qwen2 with the tokenizer's vocabulary", () => {
    expect(model).toBeInstanceOf(Qwen2ForCausalLM);
    expect(model.config.vocab_size).toBe(VOCAB);
    expect(tok.vocabSize).toBe(VOCAB);
    expect(model.lm_head).toBeNull();
    expect(model.numParameters()).toBeLessThan(2_500_000);
  });

  it("tokenizes with the special tokens and round-trips text exactly", () => {
    expect(tok.eos_token).toBe("<|im_end|>");
    expect(tok.pad_token).toBe("<|endoftext|>");
    expect(tok.convertTokensToIds(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])).toEqual([
      2045, 2046, 2047,
    ]);
    const texts = [
      HELD_OUT.slice(0, 5000),
      "naïve café — “quoted” 1851, 日本語 🐳\t\n\n  it's IT'S\r\n",
      "<|im_start|>user\nhi<|im_end|>\n",
    ];
    for (const text of texts) expect(tok.decode(tok.encode(text))).toBe(text);
    const ids = tok.encode(HELD_OUT.slice(0, 5000));
    expect(5000 / ids.length).toBeGreaterThan(2.5); // BPE merges, not bytes
  });

  it("renders the ChatML chat template", () => {
    const messages = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "What is the capital of Peru?" },
      { role: "assistant", content: "The capital of Peru is Lima." },
    ];
    expect(tok.applyChatTemplate(messages, { tokenize: false })).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the capital of Peru?<|im_end|>\n" +
        "<|im_start|>assistant\nThe capital of Peru is Lima.<|im_end|>\n",
    );
    const prompt = tok.applyChatTemplate(messages.slice(1, 2), {
      tokenize: false,
      add_generation_prompt: true,
    });
    expect(prompt).toBe("<|im_start|>user\nWhat is the capital of Peru?<|im_end|>\n<|im_start|>assistant\n");
  });

  it("generates a chat answer greedily", () => {
    const prompt = tok.applyChatTemplate([{ role: "user", content: "Which continent is Peru in?" }], {
      tokenize: true,
      add_generation_prompt: true,
    }) as number[];
    const out = tidy(() => Array.from(model.generate([prompt], { max_new_tokens: 12 }).dataSync()));
    expect(out.slice(0, prompt.length)).toEqual(prompt);
    expect(out.length).toBeGreaterThan(prompt.length);
    expect(out.length).toBeLessThanOrEqual(prompt.length + 12);
    // Continent questions are in the pretraining text, so the model answers them in the trained form.
    expect(tok.decode(out.slice(prompt.length), { skip_special_tokens: true })).toContain("is in");
  });

  it("predicts held-out Moby Dick text far better than chance", () => {
    const ids = tok.encode(HELD_OUT);
    const windows = [0, 1, 2, 3].map((i) => ids.slice(i * 4000, i * 4000 + 128));
    const loss = tidy(() =>
      noGrad(() => model.forward({ input_ids: windows, labels: windows }).loss!.itemSync()),
    );
    expect(loss).toBeLessThan(HELD_OUT_LOSS_MAX);
    expect(loss).toBeLessThan(Math.log(VOCAB) - 2);
  });
});
