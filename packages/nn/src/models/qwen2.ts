// Qwen2 (transformers models/qwen2): the shared decoder with biased q/k/v projections, unbiased o_proj and
// MLP, and optionally tied input and output embeddings. Config defaults are configuration_qwen2.py's.

import { CausalLM, DecoderModel } from "./causal-lm.js";
import {
  type DecoderConfigFields,
  initDecoderConfig,
  type ModelOptions,
  resolveDecoderConfig,
} from "./config.js";

export class Qwen2Config implements DecoderConfigFields {
  model_type = "qwen2";
  architectures: string[] = ["Qwen2ForCausalLM"];
  vocab_size = 151936;
  hidden_size = 4096;
  intermediate_size = 22016;
  num_hidden_layers = 32;
  num_attention_heads = 32;
  num_key_value_heads = 32;
  head_dim?: number | null;
  hidden_act = "silu";
  max_position_embeddings = 32768;
  initializer_range = 0.02;
  rms_norm_eps = 1e-6;
  use_cache = true;
  tie_word_embeddings = false;
  rope_theta = 10000;
  rope_scaling: DecoderConfigFields["rope_scaling"] = null;
  rope_parameters?: DecoderConfigFields["rope_parameters"];
  use_sliding_window = false;
  sliding_window = 4096;
  max_window_layers = 28;
  attention_dropout = 0;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  gradient_checkpointing?: boolean;
  [extra: string]: unknown;

  /** @example const cfg = new Qwen2Config({ hidden_size: 32, num_hidden_layers: 2, vocab_size: 128 }); */
  constructor(fields: Partial<DecoderConfigFields> & Record<string, unknown> = {}) {
    initDecoderConfig(this, fields, "qwen2", "Qwen2Config");
  }
}

export class Qwen2Model extends DecoderModel {}

export class Qwen2ForCausalLM extends CausalLM<Qwen2Config> {
  /** @example const model = new Qwen2ForCausalLM(new Qwen2Config({ ...tiny }), { dtype: "float32" }); */
  constructor(config: Qwen2Config, options: ModelOptions = {}) {
    if (config.use_sliding_window) {
      throw new Error(
        "Qwen2ForCausalLM: use_sliding_window=true is not supported (sliding-window attention is not implemented)",
      );
    }
    const r = resolveDecoderConfig(config, { qkv: true, o: false, mlp: false });
    super(config, r);
    this.model = new Qwen2Model(r, { ...options, paddingIdx: config.pad_token_id });
    this.initHead(r, options);
  }
}
