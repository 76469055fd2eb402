// Dataset formats (trl-peft-spec 6.1): detected from the first row, then every row is checked against
// the detected format so a malformed row is reported with its index.

import type { ChatMessage } from "@tsgrad/nn";

export type Row = Record<string, unknown>;

export type DatasetFormat =
  | "language_modeling"
  | "conversational"
  | "prompt_completion"
  | "conversational_prompt_completion"
  | "pretokenized";

const isMessage = (m: unknown): boolean =>
  m !== null && typeof m === "object" && !Array.isArray(m) && "role" in (m as object);

/** TRL's is_conversational: prompt, chosen, rejected, completion or messages holds a list of {role, ...}. */
export function isConversational(row: Row): boolean {
  return ["prompt", "chosen", "rejected", "completion", "messages"].some((k) => {
    const v = row[k];
    return Array.isArray(v) && v.length > 0 && isMessage(v[0]);
  });
}

const SHAREGPT_ROLES: Record<string, string> = {
  human: "user",
  user: "user",
  gpt: "assistant",
  assistant: "assistant",
  system: "system",
};

/** ShareGPT rows ({conversations: [{from, value}]}) become ChatML-style {messages: [{role, content}]}. */
export function fromShareGpt(row: Row, where: string): Row {
  const conv = row.conversations;
  if (!Array.isArray(conv))
    throw new Error(`${where}: column "conversations" must be a list of {from, value} turns`);
  const messages = conv.map((turn, i) => {
    const t = turn as { from?: unknown; value?: unknown };
    const role = typeof t?.from === "string" ? SHAREGPT_ROLES[t.from] : undefined;
    if (!role || typeof t.value !== "string")
      throw new Error(`${where}: conversations[${i}] must be {from: human|gpt|system, value: string}`);
    return { role, content: t.value };
  });
  const { conversations: _, ...rest } = row;
  return { ...rest, messages };
}

/** The format of a dataset, from its first row; names the columns it looked for when none match. */
export function detectFormat(row: Row, textField: string, source = "dataset"): DatasetFormat {
  if (row === null || typeof row !== "object" || Array.isArray(row))
    throw new Error(
      `${source} row 0: expected an object with named columns, got ${JSON.stringify(row)?.slice(0, 80)}`,
    );
  if ("input_ids" in row) return "pretokenized";
  if ("prompt" in row && "completion" in row)
    return isConversational(row) ? "conversational_prompt_completion" : "prompt_completion";
  if ("messages" in row) return "conversational";
  if ("prompt" in row) throw new Error(`${source}: column "completion" is missing (the rows have "prompt")`);
  if ("completion" in row)
    throw new Error(`${source}: column "prompt" is missing (the rows have "completion")`);
  if (textField in row) return "language_modeling";
  throw new Error(
    `${source}: column "${textField}" is missing (dataset_text_field); found columns ${Object.keys(row)
      .map((k) => `"${k}"`)
      .join(", ")}. Expected "${textField}", "messages", "prompt" + "completion", or "input_ids"`,
  );
}

/** Reads column `key` of a row as a string, with an error naming row and column. */
export function stringColumn(row: Row, key: string, where: string): string {
  const v = row[key];
  if (v === undefined) throw new Error(`${where}: column "${key}" is missing`);
  if (typeof v !== "string")
    throw new Error(`${where}: column "${key}" must be a string, got ${JSON.stringify(v)?.slice(0, 60)}`);
  return v;
}

/** Reads column `key` as a list of chat messages ({role: string, content: string}). */
export function messagesColumn(row: Row, key: string, where: string): ChatMessage[] {
  const v = row[key];
  if (v === undefined) throw new Error(`${where}: column "${key}" is missing`);
  if (!Array.isArray(v) || v.length === 0)
    throw new Error(`${where}: column "${key}" must be a non-empty list of messages`);
  v.forEach((m, i) => {
    const msg = m as { role?: unknown; content?: unknown };
    if (
      !isMessage(m) ||
      typeof msg.role !== "string" ||
      (typeof msg.content !== "string" && msg.content != null)
    )
      throw new Error(
        `${where}: ${key}[${i}] must be {role: string, content: string}, got ${JSON.stringify(m)?.slice(0, 60)}`,
      );
  });
  return v as ChatMessage[];
}

/** Reads column `key` as a list of integers. */
export function intsColumn(row: Row, key: string, where: string): number[] {
  const v = row[key];
  if (!Array.isArray(v) || v.some((x) => !Number.isInteger(typeof x === "bigint" ? Number(x) : x)))
    throw new Error(`${where}: column "${key}" must be a list of integers`);
  return v.map(Number);
}
