// Chat-template tokenization for SFT: assistant-token masks by incremental rendering (trl-peft-spec 13):
// the tokens of render(messages[:i+1]) beyond render(messages[:i], add_generation_prompt) are assistant
// message i's, template end-of-turn tokens included (what TRL's training templates mark with
// {% generation %}).
//
// Some templates render history differently from the last turn (Qwen3 adds an empty <think></think> block
// to the final assistant message only), so render(messages[:i+1]) is not a prefix of the whole
// conversation. Then message i's tokens run from the end of render(messages[:i], add_generation_prompt) to
// the first end-of-turn after it, where the end-of-turn is the token suffix an assistant message always
// gets (found by rendering two different contents and keeping their common suffix).

import type { ChatMessage, ChatTemplateOptions, PreTrainedTokenizer } from "@tsgrad/nn";

const startsWith = (a: readonly number[], prefix: readonly number[], at = 0) =>
  prefix.length + at <= a.length && prefix.every((v, i) => a[at + i] === v);

/** The tokens every assistant turn ends with (e.g. <|im_end|> "\n"), from two renders with different contents. */
function endOfTurn(
  tok: PreTrainedTokenizer,
  history: readonly ChatMessage[],
  opts: ChatTemplateOptions,
): number[] {
  const [a, b] = ["x", "y"].map((content) =>
    tok.applyChatTemplate([...history, { role: "assistant", content }], { ...opts, tokenize: true }),
  );
  let n = 0;
  while (n < a!.length && n < b!.length && a![a!.length - 1 - n] === b![b!.length - 1 - n]) n++;
  return a!.slice(a!.length - n);
}

/**
 * Token ids of the rendered conversation and, per token, 1 when an assistant message produced it.
 * Throws when an assistant message cannot be located in the rendering.
 */
export function chatWithAssistantMask(
  tok: PreTrainedTokenizer,
  messages: readonly ChatMessage[],
  opts: ChatTemplateOptions,
  where: string,
): { ids: number[]; mask: number[] } {
  const ids = tok.applyChatTemplate(messages, { ...opts, tokenize: true });
  const mask = new Array<number>(ids.length).fill(0);
  const fail = (i: number): never => {
    throw new Error(
      `${where}: assistant_only_loss: cannot locate assistant message ${i} in the chat template's rendering; pass a template that renders conversations incrementally with --chat_template_path`,
    );
  };
  messages.forEach((m, i) => {
    if (m.role !== "assistant") return;
    const before = tok.applyChatTemplate(messages.slice(0, i), {
      ...opts,
      tokenize: true,
      add_generation_prompt: true,
    });
    if (!startsWith(ids, before)) fail(i);
    const upTo = tok.applyChatTemplate(messages.slice(0, i + 1), { ...opts, tokenize: true });
    let end = upTo.length;
    if (!startsWith(upTo, before) || !startsWith(ids, upTo)) {
      const eot = endOfTurn(tok, messages.slice(0, i), opts);
      if (eot.length === 0) fail(i);
      end = -1;
      for (let p = before.length; p + eot.length <= ids.length && end < 0; p++)
        if (startsWith(ids, eot, p)) end = p + eot.length;
      if (end < 0) fail(i);
    }
    for (let t = before.length; t < end; t++) mask[t] = 1;
  });
  return { ids, mask };
}
