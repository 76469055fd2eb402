// Hugging Face tokenizers from tokenizer.json + tokenizer_config.json, on @huggingface/tokenizers, with
// transformers' names and defaults: encode/decode, batch padding and truncation, special tokens, chat
// templates, and savePretrained.

import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { writeFileAtomic } from "../io/atomic.js";
import {
  type ChatMessage,
  type ChatTemplateOptions,
  type ChatTemplateSpec,
  parseChatTemplate,
  renderChatTemplate,
  selectChatTemplate,
} from "./chat-template.js";

export type PaddingSide = "left" | "right";

export interface CallOptions {
  /** true / "longest": pad to the longest sequence; "max_length": pad to max_length; false: no padding. */
  padding?: boolean | "longest" | "max_length" | "do_not_pad";
  /**
   * Cut sequences to max_length (default: model_max_length), keeping the special tokens the post-processor
   * adds. As in transformers, a max_length without padding turns truncation on unless it is set to false.
   */
  truncation?: boolean;
  max_length?: number;
  /** Overrides the tokenizer's padding_side for this call. */
  padding_side?: PaddingSide;
  truncation_side?: PaddingSide;
  add_special_tokens?: boolean;
  pad_to_multiple_of?: number;
}

export interface BatchEncoding {
  input_ids: number[][];
  attention_mask: number[][];
}

export interface DecodeOptions {
  skip_special_tokens?: boolean;
  clean_up_tokenization_spaces?: boolean;
}

const SPECIAL_NAMES = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
];

/** A special token in tokenizer_config.json: a string, or an AddedToken object with "content". */
function tokenString(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v !== null && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return null;
}

/** JSON with keys sorted at every level and 2-space indent, as transformers writes tokenizer_config.json. */
function sortedJson(value: unknown, indent = ""): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return `[\n${value.map((v) => inner + sortedJson(v, inner)).join(",\n")}\n${indent}]`;
  }
  const keys = Object.keys(value).sort();
  if (keys.length === 0) return "{}";
  const body = keys.map(
    (k) => `${inner}${JSON.stringify(k)}: ${sortedJson((value as Record<string, unknown>)[k], inner)}`,
  );
  return `{\n${body.join(",\n")}\n${indent}}`;
}

export class PreTrainedTokenizer {
  /** The @huggingface/tokenizers engine. */
  readonly backend: Tokenizer;
  /** tokenizer_config.json as loaded, updated by setters; written back by savePretrained. */
  readonly config: Record<string, unknown>;
  chat_template: ChatTemplateSpec | null;
  padding_side: PaddingSide;
  truncation_side: PaddingSide;
  readonly model_max_length: number;
  readonly bos_token: string | null;
  readonly eos_token: string | null;
  readonly unk_token: string | null;
  /**
   * The pad token. When tokenizer_config.json names none, this falls back to eos_token, as TRL's trainers
   * set `tokenizer.pad_token = tokenizer.eos_token`; `padTokenFromEos` then says so.
   */
  readonly pad_token: string | null;
  readonly padTokenFromEos: boolean;
  readonly additional_special_tokens: string[];
  /** Number of ids, added tokens included: transformers' len(tokenizer), not tokenizer.vocab_size. */
  readonly vocabSize: number;
  private readonly tokenizerJson: string;

  constructor(tokenizerJson: string, config: Record<string, unknown>, where = "tokenizer") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(tokenizerJson);
    } catch (e) {
      throw new Error(`${where}: tokenizer.json is not valid JSON (${(e as Error).message})`);
    }
    this.tokenizerJson = tokenizerJson;
    this.config = { ...config };
    this.backend = new Tokenizer(parsed as object, this.config);
    this.chat_template = parseChatTemplate(config.chat_template, where);
    this.padding_side = config.padding_side === "left" ? "left" : "right";
    this.truncation_side = config.truncation_side === "left" ? "left" : "right";
    this.model_max_length = typeof config.model_max_length === "number" ? config.model_max_length : 1e30;
    this.bos_token = tokenString(config.bos_token);
    this.eos_token = tokenString(config.eos_token);
    this.unk_token = tokenString(config.unk_token);
    const pad = tokenString(config.pad_token);
    this.padTokenFromEos = pad === null && this.eos_token !== null;
    this.pad_token = pad ?? this.eos_token;
    const extra = config.additional_special_tokens;
    this.additional_special_tokens = Array.isArray(extra)
      ? extra.map(tokenString).filter((t): t is string => t !== null)
      : [];
    const vocab = (this.backend.model as { vocab?: unknown[] } | null)?.vocab;
    let size = Array.isArray(vocab) ? vocab.length : 0;
    if (!Array.isArray(vocab))
      for (const id of this.backend.get_vocab(true).values()) size = Math.max(size, id + 1);
    this.vocabSize = size;
  }

  get bos_token_id(): number | null {
    return this.idOf(this.bos_token);
  }
  get eos_token_id(): number | null {
    return this.idOf(this.eos_token);
  }
  get pad_token_id(): number | null {
    return this.idOf(this.pad_token);
  }
  get unk_token_id(): number | null {
    return this.idOf(this.unk_token);
  }

  private idOf(token: string | null): number | null {
    return token === null ? null : (this.backend.token_to_id(token) ?? null);
  }

  /** The special tokens as strings, by name, as transformers' special_tokens_map (unset ones left out). */
  get special_tokens_map(): Record<string, string | string[]> {
    const map: Record<string, string | string[]> = {};
    for (const name of SPECIAL_NAMES) {
      const v = name === "pad_token" ? this.pad_token : tokenString(this.config[name]);
      if (v !== null) map[name] = v;
    }
    if (this.additional_special_tokens.length > 0)
      map.additional_special_tokens = this.additional_special_tokens;
    return map;
  }

  /** Token ids of `text`; the post-processor's special tokens (BOS for Llama, none for Qwen) unless disabled. */
  encode(text: string, opts?: { add_special_tokens?: boolean }): number[] {
    return this.backend.encode(text, { add_special_tokens: opts?.add_special_tokens ?? true }).ids;
  }

  /** The token strings of `text` (no special tokens added). */
  tokenize(text: string): string[] {
    return this.backend.tokenize(text);
  }

  decode(ids: readonly number[], opts?: DecodeOptions): string {
    if (ids.length === 0) return "";
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new RangeError(`decode: token id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
      }
    }
    const o: DecodeOptions = { skip_special_tokens: opts?.skip_special_tokens ?? false };
    if (opts?.clean_up_tokenization_spaces !== undefined)
      o.clean_up_tokenization_spaces = opts.clean_up_tokenization_spaces;
    return this.backend.decode([...ids], o);
  }

  batchDecode(batch: readonly (readonly number[])[], opts?: DecodeOptions): string[] {
    return batch.map((ids) => this.decode(ids, opts));
  }

  convertTokensToIds(token: string): number | null;
  convertTokensToIds(tokens: readonly string[]): (number | null)[];
  convertTokensToIds(tokens: string | readonly string[]): number | null | (number | null)[] {
    if (typeof tokens === "string") return this.idOf(tokens);
    return tokens.map((t) => this.idOf(t));
  }

  convertIdsToTokens(id: number): string | null;
  convertIdsToTokens(ids: readonly number[]): (string | null)[];
  convertIdsToTokens(ids: number | readonly number[]): string | null | (string | null)[] {
    if (typeof ids === "number") return this.backend.id_to_token(ids) ?? null;
    return ids.map((i) => this.backend.id_to_token(i) ?? null);
  }

  /** transformers' tokenizer(texts, ...): encode a batch with optional truncation and padding. */
  call(texts: string | readonly string[], opts: CallOptions = {}): BatchEncoding {
    const list = typeof texts === "string" ? [texts] : texts;
    const addSpecial = opts.add_special_tokens ?? true;
    const padding = opts.padding === true ? "longest" : opts.padding || "do_not_pad";
    const truncation = opts.truncation ?? (opts.max_length !== undefined && padding === "do_not_pad");
    const maxLength = opts.max_length ?? this.model_max_length;
    let ids = list.map((t) => this.encode(t, { add_special_tokens: addSpecial }));
    if (truncation) {
      const side = opts.truncation_side ?? this.truncation_side;
      ids = ids.map((seq, i) =>
        seq.length > maxLength ? this.truncate(list[i]!, seq, maxLength, side) : seq,
      );
    }
    const attention = ids.map((seq) => seq.map(() => 1));
    if (padding === "do_not_pad") return { input_ids: ids, attention_mask: attention };
    let target = padding === "max_length" ? maxLength : ids.reduce((m, s) => Math.max(m, s.length), 0);
    if (!Number.isSafeInteger(target)) {
      throw new Error(
        'call: padding "max_length" needs max_length (model_max_length is not a usable length)',
      );
    }
    const multiple = opts.pad_to_multiple_of;
    if (multiple && target % multiple !== 0) target += multiple - (target % multiple);
    const padId = this.pad_token_id;
    if (padId === null) {
      throw new Error(
        "call: padding needs a pad token, and this tokenizer has neither pad_token nor eos_token",
      );
    }
    const left = (opts.padding_side ?? this.padding_side) === "left";
    const pad = (seq: number[], v: number) => {
      const fill: number[] = new Array(Math.max(0, target - seq.length)).fill(v);
      return left ? [...fill, ...seq] : [...seq, ...fill];
    };
    return { input_ids: ids.map((s) => pad(s, padId)), attention_mask: attention.map((m) => pad(m, 0)) };
  }

  /** Shortens `full` to `max` ids, cutting the text's own ids and keeping the added special tokens. */
  private truncate(text: string, full: number[], max: number, side: PaddingSide): number[] {
    const body = this.encode(text, { add_special_tokens: false });
    const extra = full.length - body.length;
    let prefix = -1;
    for (let p = 0; p <= extra && prefix < 0; p++) {
      if (body.every((id, i) => full[p + i] === id)) prefix = p;
    }
    if (prefix < 0) return side === "left" ? full.slice(full.length - max) : full.slice(0, max);
    const keep = max - extra;
    if (keep < 0) {
      throw new Error(
        `call: max_length ${max} is shorter than the ${extra} special tokens each sequence gets`,
      );
    }
    const kept = side === "left" ? body.slice(body.length - keep) : body.slice(0, keep);
    return [...full.slice(0, prefix), ...kept, ...full.slice(prefix + body.length)];
  }

  /**
   * Renders a conversation with the chat template (tokenizer_config.json, or `opts.chat_template`), as
   * transformers' apply_chat_template. Returns token ids, encoded without adding special tokens again
   * (the template writes them), unless `tokenize: false`.
   */
  applyChatTemplate(
    messages: readonly ChatMessage[],
    opts: ChatTemplateOptions & { tokenize: false },
  ): string;
  applyChatTemplate(
    messages: readonly ChatMessage[],
    opts?: ChatTemplateOptions & { tokenize?: true },
  ): number[];
  applyChatTemplate(messages: readonly ChatMessage[], opts?: ChatTemplateOptions): number[] | string;
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): number[] | string {
    const template = selectChatTemplate(
      this.chat_template,
      opts.chat_template,
      (opts.tools?.length ?? 0) > 0,
    );
    const text = renderChatTemplate(template, messages, this.special_tokens_map, opts);
    return opts.tokenize === false ? text : this.encode(text, { add_special_tokens: false });
  }

  /** Writes tokenizer.json (unchanged) and tokenizer_config.json (current settings) into `dir`, atomically. */
  async savePretrained(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const config: Record<string, unknown> = { ...this.config, padding_side: this.padding_side };
    if (this.truncation_side !== "right" || "truncation_side" in this.config) {
      config.truncation_side = this.truncation_side;
    }
    if (this.chat_template === null) delete config.chat_template;
    else if (typeof this.chat_template === "string") config.chat_template = this.chat_template;
    else
      config.chat_template = Object.entries(this.chat_template).map(([name, template]) => ({
        name,
        template,
      }));
    await writeFileAtomic(join(dir, "tokenizer.json"), this.tokenizerJson);
    await writeFileAtomic(join(dir, "tokenizer_config.json"), `${sortedJson(config)}\n`);
  }
}

export interface TokenizerFromPretrainedOptions {
  padding_side?: PaddingSide;
}

export const AutoTokenizer = {
  /**
   * Loads the tokenizer in `dir`: tokenizer.json and tokenizer_config.json are required; chat_template.jinja,
   * when present, replaces the config's chat_template (as in recent transformers).
   */
  async fromPretrained(dir: string, opts?: TokenizerFromPretrainedOptions): Promise<PreTrainedTokenizer> {
    const where = `AutoTokenizer.fromPretrained(${JSON.stringify(dir)})`;
    for (const file of ["tokenizer.json", "tokenizer_config.json"]) {
      if (!existsSync(join(dir, file))) {
        throw new Error(
          `${where}: ${join(dir, file)} not found; a tokenizer directory needs tokenizer.json and tokenizer_config.json`,
        );
      }
    }
    const [json, configText] = await Promise.all([
      readFile(join(dir, "tokenizer.json"), "utf8"),
      readFile(join(dir, "tokenizer_config.json"), "utf8"),
    ]);
    let config: Record<string, unknown>;
    try {
      config = JSON.parse(configText);
    } catch (e) {
      throw new Error(`${where}: tokenizer_config.json is not valid JSON (${(e as Error).message})`);
    }
    const jinja = join(dir, "chat_template.jinja");
    if (existsSync(jinja)) config.chat_template = await readFile(jinja, "utf8");
    const tok = new PreTrainedTokenizer(json, config, where);
    if (opts?.padding_side) tok.padding_side = opts.padding_side;
    return tok;
  },
};
