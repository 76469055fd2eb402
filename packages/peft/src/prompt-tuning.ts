// Prompt tuning (trl-peft-spec 4): num_virtual_tokens trainable embeddings prepended to the input
// embeddings; the attention mask gains ones and the labels -100 for them; the base model stays frozen.

import {
  type CausalLM,
  type CausalLMInput,
  type CausalLMOutput,
  Embedding,
  type IntInput,
  Module,
  type PreTrainedTokenizer,
  toIdTensor,
} from "@tsgrad/nn";
import { cat, full, noGrad, ones, randint, type Tensor, tensor } from "@tsgrad/tensor";
import type { PromptTuningConfig } from "./config.js";

/** Token ids for TEXT init: the text's ids (with special tokens), cut or tiled to T (spec 4.2). */
export function tileInitIds(ids: readonly number[], T: number): number[] {
  if (ids.length === 0) throw new Error("prompt_tuning_init_text encodes to no tokens");
  const out: number[] = [];
  while (out.length < T) out.push(...ids);
  return out.slice(0, T);
}

export class PromptEmbedding extends Module {
  embedding: Embedding; // [T, token_dim]

  private constructor(T: number, H: number) {
    super();
    this.embedding = new Embedding(T, H); // N(0, 1): the RANDOM init
  }

  get numVirtualTokens(): number {
    return this.embedding.numEmbeddings;
  }

  /** Builds the prompt embedding and fills the config's model-derived fields (token_dim, num_layers, ...). */
  static create(
    model: CausalLM,
    config: PromptTuningConfig,
    tokenizer?: PreTrainedTokenizer,
  ): PromptEmbedding {
    const mc = model.config as {
      hidden_size: number;
      num_hidden_layers: number;
      num_attention_heads: number;
      vocab_size: number;
    };
    config.token_dim ??= mc.hidden_size;
    config.num_layers ??= mc.num_hidden_layers;
    config.num_attention_heads ??= mc.num_attention_heads;
    config.num_transformer_submodules ??= 1;
    config.task_type ??= "CAUSAL_LM";
    if (config.token_dim !== mc.hidden_size) {
      throw new Error(
        `PromptTuningConfig: token_dim ${config.token_dim} does not match the model's hidden_size ${mc.hidden_size}`,
      );
    }
    const T = config.num_virtual_tokens * config.num_transformer_submodules;
    const pe = new PromptEmbedding(T, config.token_dim);
    if (config.inference_mode) return pe; // the weights come from the checkpoint
    const words = model.model.embed_tokens.weight;
    let ids: number[] | null = null;
    if (config.prompt_tuning_init === "TEXT") {
      if (!tokenizer) {
        throw new Error(
          "prompt tuning with TEXT init needs the tokenizer: getPeftModel(model, config, { tokenizer })",
        );
      }
      ids = tileInitIds(tokenizer.encode(config.prompt_tuning_init_text!), T);
    } else if (config.prompt_tuning_init === "SAMPLE_VOCAB") {
      ids = [...randint(0, mc.vocab_size, [T]).dataSync()];
    }
    if (ids) {
      const rows = noGrad(() =>
        words
          .indexSelect(0, tensor(ids, { dtype: "int32" }))
          .detach()
          .float(),
      );
      pe.embedding.weight.assign(rows);
    }
    return pe;
  }

  /** [B, T, H] virtual token embeddings. */
  prompts(B: number): Tensor {
    const w = this.embedding.weight; // [T, H]
    return w.unsqueeze(0).expand([B, w.shape[0]!, w.shape[1]!]);
  }
}

function asTensor(x: IntInput, name: string): Tensor {
  return toIdTensor(x, name);
}

/** PeftModelForCausalLM.forward's prompt-learning branch (spec 4.3). position_ids are dropped, as in PEFT. */
export function promptTuningForward(
  model: CausalLM,
  pe: PromptEmbedding,
  input: CausalLMInput,
): CausalLMOutput {
  if (input.input_ids === undefined && input.inputs_embeds === undefined)
    throw new Error("forward: pass input_ids or inputs_embeds");
  const embeds =
    input.inputs_embeds ?? model.model.embed_tokens.forward(asTensor(input.input_ids!, "input_ids")); // [B, L, H]
  const [B, L] = embeds.shape as [number, number];
  const T = pe.numVirtualTokens;
  const prompts = pe.prompts(B).to(embeds.dtype); // [B, T, H]
  const attention_mask =
    input.attention_mask != null
      ? cat([ones([B, T], { dtype: "int32" }), asTensor(input.attention_mask, "attention_mask")], 1)
      : null;
  const labels =
    input.labels != null
      ? cat([full([B, T], -100, { dtype: "int32" }), asTensor(input.labels, "labels")], 1)
      : null;
  if (labels && labels.shape[1] !== T + L)
    throw new RangeError(`labels: expected [${B}, ${L}], got [${B}, ${labels.shape[1]! - T}]`);
  return model.forward({
    inputs_embeds: cat([prompts, embeds], 1), // [B, T + L, H]: virtual tokens first
    attention_mask,
    labels,
    num_items_in_batch: input.num_items_in_batch,
  });
}

/**
 * A stand-in for the model that generate() can drive: the first step prepends the virtual tokens, every
 * step sees their ones in the attention mask and positions shifted by T (what cumsum(mask) - 1 gives).
 */
export function promptTuningGenerateModel(model: CausalLM, pe: PromptEmbedding): CausalLM {
  const T = pe.numVirtualTokens;
  const forward = (input: CausalLMInput): CausalLMOutput => {
    const ids = asTensor(input.input_ids!, "input_ids");
    const [B, L] = ids.shape as [number, number];
    const mask = cat(
      [ones([B, T], { dtype: "int32" }), asTensor(input.attention_mask!, "attention_mask")],
      1,
    );
    const pos = asTensor(input.position_ids!, "position_ids").add(T);
    const first = (input.past_key_values?.[0]?.k ?? null) === null;
    if (!first) return model.forward({ ...input, attention_mask: mask, position_ids: pos });
    const embeds = model.model.embed_tokens.forward(ids);
    const prefixPos = tensor(
      Array.from({ length: B }, () => Array.from({ length: T }, (_, t) => t)),
      { dtype: "int32" },
    );
    const keep = input.logits_to_keep ?? 0;
    const out = model.forward({
      inputs_embeds: cat([pe.prompts(B).to(embeds.dtype), embeds], 1),
      attention_mask: mask,
      position_ids: cat([prefixPos, pos], 1),
      past_key_values: input.past_key_values,
      logits_to_keep: keep > 0 ? Math.min(keep, L) : L, // never the virtual tokens' logits
    });
    return { logits: out.logits, loss: null };
  };
  // Everything else (config, generation config, caches) is the model's own.
  return new Proxy(model, {
    get(target, prop) {
      if (prop === "forward") return forward;
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
