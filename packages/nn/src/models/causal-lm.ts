// The decoder-only transformer Qwen2 and Llama share (transformers modeling_qwen2.py / modeling_llama.py):
// embeddings, pre-norm decoder layers with RoPE and GQA, a final RMSNorm and the LM head (or the tied
// embedding matrix), plus the causal-LM loss with the one-token shift (transformers ForCausalLMLoss).

import { crossEntropy, type DType, isGradEnabled, noGrad, ones, type Tensor, tensor } from "@tsgrad/tensor";
import { type GenerateOptions, generate } from "../generation/generate.js";
import { buildAttentionMask, hasPadding, type KVCache, packedSequenceIds } from "../layers/attention.js";
import { checkpoint } from "../layers/checkpoint.js";
import { DecoderLayer } from "../layers/decoder-layer.js";
import { Embedding } from "../layers/embedding.js";
import { initNormal } from "../layers/init.js";
import { isLinearLike, Linear, type LinearModule } from "../layers/linear.js";
import { RMSNorm } from "../layers/rms-norm.js";
import { ropeCosSin, ropeInvFreq } from "../layers/rope.js";
import { Module } from "../module.js";
import type { DecoderConfigFields, ModelOptions, ResolvedDecoderConfig } from "./config.js";
import { type SavePretrainedOptions, savePretrained } from "./pretrained.js";

/** Token ids or masks: nested arrays [B][T] or an int32 tensor [B, T]. */
export type IntInput = readonly (readonly number[])[] | Tensor;

export interface CausalLMInput {
  input_ids?: IntInput;
  /** [B, T, H] instead of input_ids (prompt tuning prepends to these). */
  inputs_embeds?: Tensor;
  /** [B, past + T]: 1 for real tokens, 0 for padding. */
  attention_mask?: IntInput | null;
  /** [B, T]; defaults to past .. past + T - 1 for every row, as transformers' forward does. */
  position_ids?: IntInput | null;
  /** [B, T]; shifted inside, -100 ignored. */
  labels?: IntInput | null;
  /** One cache per layer, extended in place (see createCache). */
  past_key_values?: KVCache[] | null;
  /** Divide the summed loss by this count instead of the local number of targets (gradient accumulation). */
  num_items_in_batch?: number;
  /** Compute logits for the last this-many positions only (0 = all), as transformers' logits_to_keep. */
  logits_to_keep?: number;
}

/** The fields of generation_config.json that generate() uses as defaults. */
export interface GenerationConfig {
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  bos_token_id?: number | null;
}

export interface CausalLMOutput {
  /** [B, T, V] */
  logits: Tensor;
  /** Mean cross-entropy over labels != -100 (null without labels). */
  loss: Tensor | null;
}

/** An int32 tensor [B, T] from nested arrays or a tensor. */
export function toIdTensor(x: IntInput, name: string): Tensor {
  const t = Array.isArray(x) ? tensor(x as number[][], { dtype: "int32" }) : (x as Tensor);
  if (t.ndim !== 2) throw new RangeError(`${name}: expected [batch, seq], got shape [${t.shape.join(", ")}]`);
  return t.dtype === "int32" ? t : noGrad(() => t.int());
}

/** The values of a [B, N] integer input in row-major order, checked against the expected shape. */
export function toFlatInts(x: IntInput, B: number, N: number, name: string): ArrayLike<number> {
  let flat: ArrayLike<number>;
  let shape: readonly number[];
  if (Array.isArray(x)) {
    const rows = x as number[][];
    shape = [rows.length, rows[0]?.length ?? 0];
    if (rows.some((r) => r.length !== shape[1])) throw new RangeError(`${name}: rows have different lengths`);
    flat = rows.flat();
  } else {
    const t = x as Tensor;
    shape = t.shape;
    flat = t.dataSync();
  }
  if (shape.length !== 2 || shape[0] !== B || shape[1] !== N)
    throw new RangeError(`${name}: expected shape [${B}, ${N}], got [${shape.join(", ")}]`);
  return flat;
}

/** One decoder layer of the shape a resolved config describes (quantized loading builds them one by one). */
export function decoderLayerFor(
  r: ResolvedDecoderConfig,
  options: { dtype?: DType; init?: "default" | "zeros" },
): DecoderLayer {
  return new DecoderLayer({
    ...options,
    hiddenSize: r.H,
    numHeads: r.nH,
    numKvHeads: r.nKV,
    headDim: r.D,
    qkvBias: r.qkvBias,
    oBias: r.oBias,
    dropout: r.attentionDropout,
    intermediateSize: r.I,
    rmsNormEps: r.eps,
    mlpBias: r.mlpBias,
  });
}

export class DecoderModel extends Module {
  embed_tokens: Embedding; // [V, H]
  layers: DecoderLayer[];
  norm: RMSNorm;
  /** @internal Set by CausalLM.gradientCheckpointingEnable(). */
  _gradientCheckpointing = false;
  private readonly _invFreq: Float64Array;

  constructor(r: ResolvedDecoderConfig, options: ModelOptions & { paddingIdx?: number | null } = {}) {
    super();
    const lo = { dtype: options.dtype, init: options.init };
    this.embed_tokens = new Embedding(r.V, r.H, { ...lo, paddingIdx: options.paddingIdx });
    this.layers = Array.from({ length: r.layers }, () => decoderLayerFor(r, lo));
    this.norm = new RMSNorm(r.H, r.eps, lo);
    this._invFreq = ropeInvFreq(r.D, r.ropeTheta, r.ropeScaling);
  }

  /** embeds [B, T, H] at the given positions (B*T values) -> final hidden states [B, T, H]. */
  forward(
    embeds: Tensor,
    args: {
      positions: ArrayLike<number>;
      attentionMask: ArrayLike<number> | null;
      past: number;
      cache?: KVCache[];
      /** Packed sequences (packedSequenceIds): attention stays within each one. */
      segments?: ArrayLike<number> | null;
    },
  ): Tensor {
    const [B, T] = embeds.shape as [number, number];
    const segments = args.segments ?? null;
    const { cos, sin } = ropeCosSin(this._invFreq, args.positions, B, T, embeds.dtype); // [B, 1, T, d]
    const mask = buildAttentionMask(args.attentionMask, B, T, args.past, embeds.dtype, segments); // [B, 1, T, S]
    // Without padding or packing the mask is exactly causal, and attention may skip what it hides. (With
    // padding, a query row that sees no key at all gets uniform weights over every key, above its diagonal too.)
    const causal = segments === null && !hasPadding(args.attentionMask);
    const recompute = this._gradientCheckpointing && this.training && isGradEnabled() && !args.cache;
    let h = embeds;
    this.layers.forEach((layer, i) => {
      const ctx = { cos, sin, mask, cache: args.cache?.[i], causal };
      h = recompute ? checkpoint((x) => layer.forward(x, ctx), h, layer.parameters()) : layer.forward(h, ctx);
    });
    return this.norm.forward(h);
  }
}

export abstract class CausalLM<C extends DecoderConfigFields = DecoderConfigFields> extends Module {
  declare model: DecoderModel;
  /** null when tie_word_embeddings: the logits then use model.embed_tokens.weight. */
  declare lm_head: LinearModule | null;
  readonly config: C;
  /** Token ids from generation_config.json (fromPretrained reads it when present); generate's defaults. */
  generationConfig: GenerationConfig = {};
  protected readonly _r: ResolvedDecoderConfig;

  protected constructor(config: C, r: ResolvedDecoderConfig) {
    super();
    this.config = config;
    this._r = r;
  }

  /** Builds lm_head (after model, so the keys come out in Hugging Face's order) and initializes weights. */
  protected initHead(r: ResolvedDecoderConfig, options: ModelOptions): void {
    this.lm_head = r.tied ? null : new Linear(r.H, r.V, { bias: false, dtype: options.dtype, init: "zeros" });
    if ((options.init ?? "default") === "default") this.initWeights(r.initStd);
    if (this.config.gradient_checkpointing) this.gradientCheckpointingEnable();
  }

  /** Hugging Face's _init_weights: Linear and Embedding N(0, initializer_range), biases 0, norms 1. */
  private initWeights(std: number): void {
    for (const [, m] of this.namedModules()) {
      if (m instanceof Linear) {
        m.weight.assign(initNormal(m.weight.shape, std, m.weight.dtype));
        m.bias?.assign(m.bias.mul(0));
      } else if (m instanceof Embedding) {
        m.weight.assign(initNormal(m.weight.shape, std, m.weight.dtype));
      } else if (m instanceof RMSNorm) m.weight.assign(ones(m.weight.shape, { dtype: m.weight.dtype }));
    }
  }

  get dtype(): DType {
    return this.model.embed_tokens.weight.dtype;
  }

  /** Recompute each decoder layer in backward (same gradients, less memory). */
  gradientCheckpointingEnable(): this {
    this.model._gradientCheckpointing = true;
    return this;
  }
  gradientCheckpointingDisable(): this {
    this.model._gradientCheckpointing = false;
    return this;
  }
  get isGradientCheckpointing(): boolean {
    return this.model._gradientCheckpointing;
  }

  /** An empty KV cache, one entry per layer, for incremental decoding. */
  createCache(): KVCache[] {
    return this.model.layers.map(() => ({ k: null, v: null }));
  }

  /**
   * The forward pass, as transformers' XForCausalLM.forward: logits, and the shifted loss when labels are given.
   * @example const { logits, loss } = model.forward({ input_ids: [[1, 2, 3]], labels: [[1, 2, 3]] });
   */
  forward(input: CausalLMInput): CausalLMOutput {
    const cache = input.past_key_values ?? undefined;
    const past = cache?.[0]?.k?.shape[2] ?? 0;
    let embeds: Tensor;
    if (input.inputs_embeds) {
      embeds = input.inputs_embeds;
      if (embeds.ndim !== 3 || embeds.shape[2] !== this._r.H)
        throw new RangeError(
          `inputs_embeds: expected [B, T, ${this._r.H}], got [${embeds.shape.join(", ")}]`,
        );
    } else {
      if (input.input_ids === undefined) throw new Error("forward: pass input_ids or inputs_embeds");
      embeds = this.model.embed_tokens.forward(toIdTensor(input.input_ids, "input_ids")); // [B, T, H]
    }
    const [B, T] = embeds.shape as [number, number];
    const attentionMask =
      input.attention_mask != null ? toFlatInts(input.attention_mask, B, past + T, "attention_mask") : null;
    const positions =
      input.position_ids != null
        ? toFlatInts(input.position_ids, B, T, "position_ids")
        : Int32Array.from({ length: B * T }, (_, i) => past + (i % T));
    // position_ids that restart inside a row mark packed sequences; as transformers, they are kept apart
    // only without attention_mask and cache (a padding-free batch, trl-peft-spec 6.3)
    const segments =
      input.position_ids != null && attentionMask === null && !cache
        ? packedSequenceIds(positions, B, T)
        : null;
    let h = this.model.forward(embeds, { positions, attentionMask, past, cache, segments }); // [B, T, H]
    const keep = input.logits_to_keep ?? 0;
    if (keep > 0 && keep < T) h = h.slice(1, T - keep); // [B, keep, H]
    const logits = this.logitsFromHidden(h);
    const loss =
      input.labels != null ? this.lossFromLogits(logits, input.labels, input.num_items_in_batch) : null;
    return { logits, loss };
  }

  /** h [B, T, H] -> logits [B, T, V] through lm_head, or the embedding matrix when tied. */
  logitsFromHidden(h: Tensor): Tensor {
    if (this.lm_head) return this.lm_head.forward(h);
    const [B, T, H] = h.shape as [number, number, number];
    const w = this.model.embed_tokens.weight; // [V, H]
    return h
      .reshape([B * T, H])
      .matmul(w.mT) // [B*T, V]
      .reshape([B, T, this._r.V]);
  }

  /** Cross-entropy of logits[:, t] against labels[:, t + 1], in (at least) float32, -100 ignored. */
  lossFromLogits(logits: Tensor, labels: IntInput, numItemsInBatch?: number): Tensor {
    const [B, T, V] = logits.shape as [number, number, number];
    const lab = toIdTensor(labels, "labels");
    if (lab.shape[0] !== B || lab.shape[1] !== T)
      throw new RangeError(`labels: expected shape [${B}, ${T}], got [${lab.shape.join(", ")}]`);
    const wide = logits.dtype === "float64" ? logits : logits.to("float32");
    const shiftLogits = wide.slice(1, 0, T - 1).reshape([-1, V]); // [B*(T-1), V]
    const shiftLabels = lab.slice(1, 1).reshape([-1]); // [B*(T-1)]
    if (numItemsInBatch !== undefined)
      return crossEntropy(shiftLogits, shiftLabels, { reduction: "sum" }).div(numItemsInBatch);
    return crossEntropy(shiftLogits, shiftLabels);
  }

  /**
   * Greedy or sampled continuation with a KV cache; prompts may be left-padded (pass attention_mask).
   * Returns prompt and new tokens, [B, T + n], as transformers' generate.
   * @example const out = model.generate([[1, 2, 3]], { max_new_tokens: 8 });
   */
  generate(inputIds: IntInput, options: GenerateOptions): Tensor {
    return generate(this, inputIds, options);
  }

  /** Writes config.json and the weights (model.safetensors, or shards plus an index) into dir. */
  savePretrained(dir: string, options: SavePretrainedOptions = {}): Promise<string[]> {
    return savePretrained(this, dir, options);
  }

  /** The projections adapters may wrap, by path (q_proj ... down_proj, and lm_head). */
  linearModules(): [string, LinearModule][] {
    return [...this.namedModules()].filter((e): e is [string, LinearModule] => isLinearLike(e[1]));
  }
}
