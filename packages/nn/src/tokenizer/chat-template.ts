// Chat templates as transformers renders them (tokenization_utils_base.apply_chat_template and
// utils/chat_template_utils.render_jinja_template): Jinja with trim_blocks and lstrip_blocks, given the
// messages, tools, documents, add_generation_prompt, the special tokens as strings, and any extra kwargs.

import { Template } from "@huggingface/jinja";

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

/** The template from tokenizer_config.json: one string, or named templates ("default", "tool_use", ...). */
export type ChatTemplateSpec = string | Record<string, string>;

export interface ChatTemplateOptions {
  /** Append the header that starts the assistant's turn (default false). */
  add_generation_prompt?: boolean;
  /** Return token ids (default true) rather than the rendered string. */
  tokenize?: boolean;
  /** A template string, or the name of one of the tokenizer's named templates. */
  chat_template?: string;
  /** Function schemas, passed to the template as `tools`. */
  tools?: unknown[];
  /** Retrieval documents, passed to the template as `documents`. */
  documents?: unknown[];
  /** End the output right after the last message's content, leaving that turn open to continue. */
  continue_final_message?: boolean;
  /** Anything else (enable_thinking, ...) is passed to the template as a variable. */
  [kwarg: string]: unknown;
}

/** Reads the "chat_template" entry of tokenizer_config.json (a string or a list of {name, template}). */
export function parseChatTemplate(value: unknown, where: string): ChatTemplateSpec | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named: Record<string, string> = {};
    for (const entry of value) {
      const { name, template } = (entry ?? {}) as { name?: unknown; template?: unknown };
      if (typeof name !== "string" || typeof template !== "string") {
        throw new Error(`${where}: chat_template list entries must be {"name": string, "template": string}`);
      }
      named[name] = template;
    }
    return named;
  }
  throw new Error(`${where}: chat_template must be a string or a list of named templates`);
}

/** Picks the template as transformers' get_chat_template does. */
export function selectChatTemplate(
  own: ChatTemplateSpec | null,
  requested: string | undefined,
  hasTools: boolean,
): string {
  if (own !== null && typeof own === "object") {
    if (requested !== undefined) return own[requested] ?? requested;
    if (hasTools && own.tool_use !== undefined) return own.tool_use;
    if (own.default !== undefined) return own.default;
    throw new Error(
      `applyChatTemplate: this tokenizer has several chat templates (${Object.keys(own).join(", ")}) and none is named "default"; pass { chat_template: name }`,
    );
  }
  const template = requested ?? own;
  if (template === null) {
    throw new Error(
      "applyChatTemplate: the tokenizer has no chat_template (tokenizer_config.json or chat_template.jinja); pass { chat_template }",
    );
  }
  return template;
}

const compiled = new Map<string, Template>();

/** Renders `messages` with `template`; `specialTokens` are the tokenizer's special tokens as strings. */
export function renderChatTemplate(
  template: string,
  messages: readonly ChatMessage[],
  specialTokens: Record<string, unknown>,
  opts: ChatTemplateOptions,
): string {
  const {
    add_generation_prompt = false,
    tokenize: _tokenize,
    chat_template: _template,
    tools,
    documents,
    continue_final_message = false,
    ...kwargs
  } = opts;
  if (add_generation_prompt && continue_final_message) {
    throw new Error(
      "applyChatTemplate: add_generation_prompt and continue_final_message cannot both be set; use one or the other",
    );
  }
  let t = compiled.get(template);
  if (!t) {
    t = new Template(template);
    compiled.set(template, t);
  }
  const rendered = t.render({
    ...specialTokens,
    ...kwargs,
    messages,
    tools: tools ?? null,
    documents: documents ?? null,
    add_generation_prompt,
  });
  if (!continue_final_message) return rendered;
  const last = messages.at(-1);
  const final = typeof last?.content === "string" ? last.content.trim() : "";
  const at = final === "" ? -1 : rendered.lastIndexOf(final);
  if (at < 0) {
    throw new Error(
      "applyChatTemplate: continue_final_message is set but the final message's content does not appear in the rendered chat",
    );
  }
  return rendered.slice(0, at + final.length);
}
