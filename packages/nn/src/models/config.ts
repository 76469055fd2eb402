// What the decoder needs from a Hugging Face config.json, resolved from either family's fields, and the
// helpers the two config classes share (null means "use the default", as in transformers).

import type { DType } from "@tsgrad/tensor";
import type { RopeScaling } from "../layers/rope.js";

/** Fields shared by Qwen2Config and LlamaConfig, with Hugging Face's names. */
export interface DecoderConfigFields {
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number | null;
  hidden_act: string;
  max_position_embeddings: number;
  initializer_range: number;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
  rope_theta: number;
  rope_scaling: RopeScaling | null;
  /** transformers v5 spelling: { rope_theta, rope_type, ... } in one object. */
  rope_parameters?: (RopeScaling & { rope_theta?: number }) | null;
  attention_dropout: number;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  /** Recompute each decoder layer in backward instead of keeping its activations. */
  gradient_checkpointing?: boolean;
}

/** The decoder's shape and numerics, derived once from a config. */
export interface ResolvedDecoderConfig {
  V: number;
  H: number;
  I: number;
  layers: number;
  nH: number;
  nKV: number;
  D: number;
  eps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tied: boolean;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  attentionDropout: number;
  initStd: number;
}

/** Copies the JSON fields onto a config, letting null fall back to the class default (transformers' None). */
/**
 * What both config classes' constructors do: take the given fields, default num_key_value_heads to
 * num_attention_heads (no GQA), and insist on the class's model_type.
 */
export function initDecoderConfig(
  target: DecoderConfigFields,
  fields: Partial<DecoderConfigFields> & Record<string, unknown>,
  modelType: string,
  className: string,
): void {
  assignFields(target, fields);
  if (fields.num_key_value_heads == null) target.num_key_value_heads = target.num_attention_heads;
  if (target.model_type !== modelType)
    throw new Error(
      `${className}: model_type must be "${modelType}", got ${JSON.stringify(target.model_type)}`,
    );
}

export function assignFields(target: object, fields: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(fields)) {
    const current = (target as Record<string, unknown>)[k];
    if (v === null && current !== undefined && current !== null) continue;
    if (v !== undefined) (target as Record<string, unknown>)[k] = v;
  }
}

export function resolveDecoderConfig(
  c: DecoderConfigFields,
  bias: { qkv: boolean; o: boolean; mlp: boolean },
): ResolvedDecoderConfig {
  if (c.hidden_act !== "silu")
    throw new Error(`config: hidden_act "${c.hidden_act}" is not supported; expected "silu"`);
  const nKV = c.num_key_value_heads ?? c.num_attention_heads;
  const D = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(D) || D % 2 !== 0)
    throw new Error(`config: head_dim ${D} must be an even integer (hidden_size / num_attention_heads)`);
  const rp = c.rope_parameters ?? null;
  const ropeTheta = rp?.rope_theta ?? c.rope_theta;
  const ropeScaling = c.rope_scaling ?? (rp && (rp.rope_type ?? rp.type) !== "default" ? rp : null);
  return {
    V: c.vocab_size,
    H: c.hidden_size,
    I: c.intermediate_size,
    layers: c.num_hidden_layers,
    nH: c.num_attention_heads,
    nKV,
    D,
    eps: c.rms_norm_eps,
    ropeTheta,
    ropeScaling,
    tied: c.tie_word_embeddings,
    qkvBias: bias.qkv,
    oBias: bias.o,
    mlpBias: bias.mlp,
    attentionDropout: c.attention_dropout,
    initStd: c.initializer_range,
  };
}

export interface ModelOptions {
  dtype?: DType;
  /** "default": Hugging Face's _init_weights (N(0, initializer_range), norms 1); "zeros": for loading. */
  init?: "default" | "zeros";
}
