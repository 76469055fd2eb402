// SFT dataset preparation (trl/trainer/sft_trainer.py _prepare_dataset; trl-peft-spec 6.2): EOS for
// non-conversational text, tokenization per format, completion and assistant masks, labels, truncation,
// then packing.

import type { ChatMessage, ChatTemplateOptions, PreTrainedTokenizer } from "@tsgrad/nn";
import { chatWithAssistantMask } from "./chat.js";
import {
  type DatasetFormat,
  detectFormat,
  fromShareGpt,
  intsColumn,
  messagesColumn,
  type Row,
  stringColumn,
} from "./formats.js";
import { type PackingStrategy, packExamples, type TokenizedExample } from "./packing.js";

export interface PrepareOptions {
  tokenizer: PreTrainedTokenizer;
  dataset_text_field: string;
  max_length: number | null;
  truncation_mode: "keep_start" | "keep_end";
  packing: boolean;
  packing_strategy: PackingStrategy;
  /** null: on for prompt-completion data. */
  completion_only_loss: boolean | null;
  assistant_only_loss: boolean;
  /** Appended to non-conversational text (default the tokenizer's EOS). */
  eos_token: string | null;
  /** A template string used instead of the tokenizer's. */
  chat_template?: string | null;
}

export interface PreparedDataset {
  format: DatasetFormat;
  examples: TokenizedExample[];
  /** Examples dropped because no label was left to train on. */
  dropped: number;
}

const startsWith = (a: readonly number[], prefix: readonly number[]) =>
  prefix.length <= a.length && prefix.every((v, i) => a[i] === v);

function chatOptions(row: Row, template: string | null | undefined, where: string): ChatTemplateOptions {
  const opts: ChatTemplateOptions = {};
  if (template) opts.chat_template = template;
  let tools = row.tools;
  if (typeof tools === "string") {
    try {
      tools = JSON.parse(tools);
    } catch {
      throw new Error(`${where}: column "tools" is a string that is not JSON`);
    }
  }
  if (Array.isArray(tools)) opts.tools = tools;
  const kw = row.chat_template_kwargs;
  if (kw && typeof kw === "object") Object.assign(opts, kw);
  return opts;
}

/** Tokenizes one row: ids plus the completion mask (prompt-completion) and assistant mask (when asked). */
function tokenizeRow(
  row: Row,
  format: DatasetFormat,
  o: PrepareOptions,
  eos: string,
  where: string,
): {
  ids: number[];
  completion?: number[];
  assistant?: number[];
  labels?: number[];
  prefixMismatch?: boolean;
} {
  const tok = o.tokenizer;
  const withEos = (s: string) => (s.endsWith(eos) ? s : s + eos);
  const chat = (msgs: ChatMessage[], extra: ChatTemplateOptions = {}) =>
    tok.applyChatTemplate(msgs, { ...chatOptions(row, o.chat_template, where), ...extra, tokenize: true });
  const completionMask = (promptLen: number, ids: number[]) => ids.map((_, t) => (t < promptLen ? 0 : 1));
  switch (format) {
    case "pretokenized": {
      const ids = intsColumn(row, "input_ids", where);
      const out: ReturnType<typeof tokenizeRow> = { ids };
      if (row.labels !== undefined) out.labels = intsColumn(row, "labels", where);
      if (row.completion_mask !== undefined) out.completion = intsColumn(row, "completion_mask", where);
      if (row.assistant_masks !== undefined) out.assistant = intsColumn(row, "assistant_masks", where);
      for (const [k, v] of Object.entries(out))
        if (k !== "ids" && (v as number[]).length !== ids.length)
          throw new Error(
            `${where}: column "${k === "completion" ? "completion_mask" : k === "assistant" ? "assistant_masks" : k}" has ${(v as number[]).length} values for ${ids.length} input_ids`,
          );
      return out;
    }
    case "language_modeling":
      return { ids: tok.encode(withEos(stringColumn(row, o.dataset_text_field, where))) };
    case "prompt_completion": {
      const prompt = stringColumn(row, "prompt", where);
      const completion = stringColumn(row, "completion", where);
      const promptIds = tok.encode(prompt);
      const ids = tok.encode(withEos(prompt + completion));
      return {
        ids,
        completion: completionMask(promptIds.length, ids),
        prefixMismatch: !startsWith(ids, promptIds),
      };
    }
    case "conversational": {
      const msgs = messagesColumn(row, "messages", where);
      if (o.assistant_only_loss) {
        const { ids, mask } = chatWithAssistantMask(
          tok,
          msgs,
          chatOptions(row, o.chat_template, where),
          where,
        );
        return { ids, assistant: mask };
      }
      return { ids: chat(msgs) };
    }
    case "conversational_prompt_completion": {
      const prompt = messagesColumn(row, "prompt", where);
      const completion = messagesColumn(row, "completion", where);
      const promptIds = chat(prompt, { add_generation_prompt: true });
      const full = [...prompt, ...completion];
      if (o.assistant_only_loss) {
        const { ids, mask } = chatWithAssistantMask(
          tok,
          full,
          chatOptions(row, o.chat_template, where),
          where,
        );
        return { ids, assistant: mask, completion: completionMask(promptIds.length, ids) };
      }
      const ids = chat(full);
      return {
        ids,
        completion: completionMask(promptIds.length, ids),
        prefixMismatch: !startsWith(ids, promptIds),
      };
    }
  }
}

/**
 * Turns raw rows into {input_ids, labels} (packed when asked). `source` names the dataset in errors.
 * @example const { examples } = prepareSFTDataset(rows, { tokenizer, ...config });
 */
export function prepareSFTDataset(
  rows: readonly Row[],
  o: PrepareOptions,
  source = "train_dataset",
): PreparedDataset {
  if (rows.length === 0) throw new Error(`${source} is empty`);
  let first = rows[0]!;
  const sharegpt = first && typeof first === "object" && "conversations" in first && !("messages" in first);
  if (sharegpt) first = fromShareGpt(first, `${source} row 0`);
  const format = detectFormat(first, o.dataset_text_field, source);
  const conversational = format === "conversational" || format === "conversational_prompt_completion";
  if (o.assistant_only_loss && !conversational && format !== "pretokenized")
    throw new Error(
      `assistant_only_loss needs conversational data ("messages" or prompt/completion message lists); ${source} is ${format}`,
    );
  const completionOnly =
    o.completion_only_loss ??
    (format === "prompt_completion" || format === "conversational_prompt_completion");
  const eos = o.eos_token ?? o.tokenizer.eos_token;
  if (!conversational && format !== "pretokenized" && !eos)
    throw new Error(
      "the tokenizer has no eos_token to end non-conversational text; set eos_token in the config",
    );
  const examples: TokenizedExample[] = [];
  let dropped = 0;
  let mismatched = 0;
  rows.forEach((raw, i) => {
    const where = `${source} row ${i}`;
    if (raw === null || typeof raw !== "object" || Array.isArray(raw))
      throw new Error(
        `${where}: expected an object with named columns, got ${JSON.stringify(raw)?.slice(0, 60)}`,
      );
    const row = sharegpt ? fromShareGpt(raw, where) : raw;
    const t = tokenizeRow(row, format, o, eos ?? "", where);
    if (t.prefixMismatch) mismatched++;
    if (o.assistant_only_loss && t.assistant && !t.assistant.includes(1))
      throw new Error(
        `${where}: assistant_only_loss is on but the conversation has no assistant tokens to train on`,
      );
    let labels =
      t.labels ??
      t.ids.map((id, k) =>
        (t.assistant && t.assistant[k] !== 1) || (completionOnly && t.completion && t.completion[k] !== 1)
          ? -100
          : id,
      );
    let ids = t.ids;
    if (!o.packing && o.max_length !== null && ids.length > o.max_length) {
      const cut =
        o.truncation_mode === "keep_start" ? [0, o.max_length] : [ids.length - o.max_length, ids.length];
      ids = ids.slice(cut[0], cut[1]);
      labels = labels.slice(cut[0], cut[1]);
    }
    if (labels.every((l) => l === -100)) {
      dropped++;
      return;
    }
    examples.push({ input_ids: ids, labels });
  });
  if (mismatched > 0)
    console.warn(
      `${source}: in ${mismatched} example(s) the tokens of prompt + completion do not start with the prompt's own tokens (a merge across the boundary); the completion mask may be off by a token`,
    );
  if (examples.length === 0)
    throw new Error(
      `${source}: no example has any label left to train on (after masking and truncation to max_length ${o.max_length})`,
    );
  const packed = o.packing ? packExamples(examples, o.max_length!, o.packing_strategy) : examples;
  return { format, examples: packed, dropped };
}
