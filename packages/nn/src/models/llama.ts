// Llama (transformers models/llama): the shared decoder with attention_bias on all four projections,
// mlp_bias on the MLP, and llama3 rope scaling. Config defaults are configuration_llama.py's.

import { CausalLM, DecoderModel } from "./causal-lm.js";
import {
  type DecoderConfigFields,
  initDecoderConfig,
  type ModelOptions,
  resolveDecoderConfig,
} from "./config.js";

export class LlamaConfig implements DecoderConfigFields {
  model_type = "llama";
  architectures: string[] = ["LlamaForCausalLM"];
  vocab_size = 32000;
  hidden_size = 4096;
  intermediate_size = 11008;
  num_hidden_layers = 32;
  num_attention_heads = 32;
  num_key_value_heads = 32;
  head_dim?: number | null;
  hidden_act = "silu";
  max_position_embeddings = 2048;
  initializer_range = 0.02;
  rms_norm_eps = 1e-6;
  use_cache = true;
  pad_token_id?: number | null;
  bos_token_id: number | null = 1;
  eos_token_id: number | number[] | null = 2;
  pretraining_tp = 1;
  tie_word_embeddings = false;
  rope_theta = 10000;
  rope_scaling: DecoderConfigFields["rope_scaling"] = null;
  rope_parameters?: DecoderConfigFields["rope_parameters"];
  attention_bias = false;
  attention_dropout = 0;
  mlp_bias = false;
  gradient_checkpointing?: boolean;
  [extra: string]: unknown;

  /** @example const cfg = new LlamaConfig({ hidden_size: 32, num_hidden_layers: 2, rope_theta: 500000 }); */
  constructor(fields: Partial<DecoderConfigFields> & Record<string, unknown> = {}) {
    initDecoderConfig(this, fields, "llama", "LlamaConfig");
  }
}

export class LlamaModel extends DecoderModel {}

export class LlamaForCausalLM extends CausalLM<LlamaConfig> {
  /** @example const model = new LlamaForCausalLM(new LlamaConfig({ ...tiny }), { dtype: "float32" }); */
  constructor(config: LlamaConfig, options: ModelOptions = {}) {
    const bias = config.attention_bias === true;
    const r = resolveDecoderConfig(config, { qkv: bias, o: bias, mlp: config.mlp_bias === true });
    super(config, r);
    this.model = new LlamaModel(r, { ...options, paddingIdx: config.pad_token_id });
    this.initHead(r, options);
  }
}
