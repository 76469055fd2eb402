// Chat-template tokenization for SFT: assistant-token masks by incremental rendering (trl-peft-spec 13):
// the tokens of render(messages[:i+1]) beyond render(messages[:i], add_generation_prompt) are assistant
// message i's, template end-of-turn tokens included (what TRL's training templates mark with
// {% generation %}).

import type { ChatMessage, ChatTemplateOptions, PreTrainedTokenizer } from "@tsgrad/nn";

const startsWith = (a: readonly number[], prefix: readonly number[]) =>
  prefix.length <= a.length && prefix.every((v, i) => a[i] === v);

/**
 * Token ids of the rendered conversation and, per token, 1 when an assistant message produced it.
 * Throws when the template does not render conversations prefix-consistently (then masks cannot be derived).
 */
export function chatWithAssistantMask(
  tok: PreTrainedTokenizer,
  messages: readonly ChatMessage[],
  opts: ChatTemplateOptions,
  where: string,
): { ids: number[]; mask: number[] } {
  const ids = tok.applyChatTemplate(messages, { ...opts, tokenize: true });
  const mask = new Array<number>(ids.length).fill(0);
  messages.forEach((m, i) => {
    if (m.role !== "assistant") return;
    const before = tok.applyChatTemplate(messages.slice(0, i), {
      ...opts,
      tokenize: true,
      add_generation_prompt: true,
    });
    const upTo = tok.applyChatTemplate(messages.slice(0, i + 1), { ...opts, tokenize: true });
    if (!startsWith(upTo, before) || !startsWith(ids, upTo))
      throw new Error(
        `${where}: assistant_only_loss: the chat template does not render the conversation prefix-consistently at message ${i}, so assistant tokens cannot be located; pass a training template with --chat_template_path`,
      );
    for (let t = before.length; t < upTo.length; t++) mask[t] = 1;
  });
  return { ids, mask };
}
