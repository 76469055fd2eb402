// Quantized causal LMs: fromPretrained with a quantization_config (decoder Linears quantized as they are
// read, embeddings and lm_head full precision, skip list honoured), savePretrained in bitsandbytes' keys,
// reloading without re-quantization, and clear errors for corrupted states and unquantizable layers.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AutoModelForCausalLM,
  BitsAndBytesConfig,
  type CausalLM,
  Embedding,
  int8VectorwiseQuant,
  Linear,
  Linear4bit,
  Linear8bitLt,
  LlamaConfig,
  LlamaForCausalLM,
  Module,
  openSafetensors,
  Qwen2Config,
  Qwen2ForCausalLM,
  quantizedWeightBytes,
  quantizeModel,
  saveSafetensors,
} from "@tsgrad/nn";
import { manualSeed, noGrad, type Tensor, tensor } from "@tsgrad/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const tmp = mkdtempSync(join(tmpdir(), "tsgrad-quant-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Shapes chosen so that most weights end in a partial block of 64 (k_proj 12x24 = 288, gate 37x24 = 888).
const TINY = {
  vocab_size: 64,
  hidden_size: 24,
  intermediate_size: 37,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 6,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
};
const IDS = [
  [1, 5, 9, 33, 2, 60, 7],
  [3, 3, 41, 12, 0, 8, 19],
];

function logits(model: CausalLM): Tensor {
  return noGrad(() => model.forward({ input_ids: IDS }).logits);
}
function maxAbs(a: Tensor, b: Tensor): number {
  const x = a.dataSync();
  const y = b.dataSync();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}
function kinds(model: Module): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [path, m] of model.namedModules())
    if (m instanceof Linear || m instanceof Linear4bit || m instanceof Linear8bitLt || m instanceof Embedding)
      out[path] = m.constructor.name;
  return out;
}

let floatDir: string;
let floatModel: CausalLM;

beforeAll(async () => {
  manualSeed(11);
  floatModel = new Qwen2ForCausalLM(new Qwen2Config(TINY));
  floatDir = join(tmp, "float");
  await floatModel.savePretrained(floatDir);
});

const NF4_DQ = { load_in_4bit: true, bnb_4bit_quant_type: "nf4" as const, bnb_4bit_use_double_quant: true };

describe("fromPretrained with quantization_config", () => {
  it("quantizes every decoder Linear; embeddings and lm_head stay full precision; logits stay close", async () => {
    const q = await AutoModelForCausalLM.fromPretrained(floatDir, { quantization_config: NF4_DQ });
    const k = kinds(q);
    expect(k["model.embed_tokens"]).toBe("Embedding");
    expect(k.lm_head).toBe("Linear");
    for (const name of ["q_proj", "k_proj", "v_proj", "o_proj"])
      expect(k[`model.layers.1.self_attn.${name}`]).toBe("Linear4bit");
    for (const name of ["gate_proj", "up_proj", "down_proj"])
      expect(k[`model.layers.0.mlp.${name}`]).toBe("Linear4bit");
    const qp = q.getSubmodule("model.layers.0.self_attn.q_proj") as Linear4bit;
    expect(qp.bias).not.toBeNull(); // Qwen2's q/k/v biases stay float
    expect(qp.quantState.nested).not.toBeNull();
    expect(qp.quantState.quantType).toBe("nf4");
    // Same codes as quantizing the float layers directly.
    for (const [path, m] of q.namedModules()) {
      if (!(m instanceof Linear4bit)) continue;
      const expected = Linear4bit.fromLinear(floatModel.getSubmodule(path), {
        quantType: "nf4",
        compressStatistics: true,
      });
      expect(Buffer.from(m.packedWeight).equals(Buffer.from(expected.packedWeight))).toBe(true);
      expect(Array.from(m.quantState.absmax)).toEqual(Array.from(expected.quantState.absmax));
    }
    const lf = logits(floatModel);
    const lq = logits(q);
    expect(maxAbs(lq, lf)).toBeGreaterThan(0);
    expect(maxAbs(lq, lf)).toBeLessThan(0.05);
    expect((q.config as unknown as Record<string, unknown>).quantization_config).toMatchObject({
      load_in_4bit: true,
      bnb_4bit_quant_type: "nf4",
      bnb_4bit_use_double_quant: true,
      quant_method: "bitsandbytes",
    });
  });

  it("the layer-by-layer build gives the same module tree as quantizing a built model (Qwen2 and Llama)", async () => {
    const llamaCfg = { ...TINY, num_attention_heads: 4, attention_bias: true, mlp_bias: true };
    manualSeed(12);
    const llama = new LlamaForCausalLM(new LlamaConfig(llamaCfg));
    const llamaDir = join(tmp, "llama");
    await llama.savePretrained(llamaDir);
    for (const [dir, build] of [
      [floatDir, () => new Qwen2ForCausalLM(new Qwen2Config(TINY))],
      [llamaDir, () => new LlamaForCausalLM(new LlamaConfig(llamaCfg))],
    ] as const) {
      const loaded = await AutoModelForCausalLM.fromPretrained(dir, { quantization_config: NF4_DQ });
      const built = quantizeModel(build(), NF4_DQ);
      expect(kinds(loaded)).toEqual(kinds(built));
      const shapes = (m: Module) => [...m.namedParameters()].map(([k, p]) => `${k} ${p.shape.join("x")}`);
      expect(shapes(loaded)).toEqual(shapes(built));
      expect(loaded.config.num_hidden_layers).toBe(2);
      expect(loaded.model.layers.length).toBe(2);
    }
    const ql = await AutoModelForCausalLM.fromPretrained(llamaDir, { quantization_config: NF4_DQ });
    expect(maxAbs(logits(ql), logits(llama))).toBeLessThan(0.05);
  });

  it("llm_int8_skip_modules keeps the named modules in full precision", async () => {
    const q = await AutoModelForCausalLM.fromPretrained(floatDir, {
      quantization_config: new BitsAndBytesConfig({
        load_in_4bit: true,
        llm_int8_skip_modules: ["down_proj", "lm_head"],
      }),
    });
    const k = kinds(q);
    expect(k["model.layers.0.mlp.down_proj"]).toBe("Linear");
    expect(k["model.layers.0.mlp.up_proj"]).toBe("Linear4bit");
    expect((q.getSubmodule("model.layers.0.mlp.up_proj") as Linear4bit).quantState.quantType).toBe("fp4");
  });

  it("load_in_8bit gives Linear8bitLt layers close to the float model", async () => {
    const q = await AutoModelForCausalLM.fromPretrained(floatDir, {
      quantization_config: { load_in_8bit: true },
    });
    expect(kinds(q)["model.layers.1.mlp.gate_proj"]).toBe("Linear8bitLt");
    expect(maxAbs(logits(q), logits(floatModel))).toBeLessThan(0.02);
    const { bytes, params } = quantizedWeightBytes(q);
    expect((bytes * 8) / params).toBeLessThan(9.5); // 8 + 32 / in_features, in = 24 or 37 here
  });

  it("conflicting options are rejected before loading", async () => {
    await expect(
      AutoModelForCausalLM.fromPretrained(floatDir, {
        quantization_config: { load_in_4bit: true, load_in_8bit: true },
      }),
    ).rejects.toThrow(/load_in_4bit and load_in_8bit are both true/);
  });
});

describe("saving and reloading a 4-bit model", () => {
  let qDir: string;
  let q: CausalLM;
  beforeAll(async () => {
    q = await AutoModelForCausalLM.fromPretrained(floatDir, { quantization_config: NF4_DQ });
    qDir = join(tmp, "nf4");
    await q.savePretrained(qDir);
  });

  it("writes bitsandbytes' keys and dtypes, and quantization_config in config.json", async () => {
    const r = await openSafetensors(qDir);
    try {
      const p = "model.layers.0.mlp.gate_proj.weight";
      expect(r.info(p)).toMatchObject({ dtype: "U8", shape: [444, 1] });
      expect(r.info(`${p}.absmax`)).toMatchObject({ dtype: "U8", shape: [14] });
      expect(r.info(`${p}.quant_map`)).toMatchObject({ dtype: "F32", shape: [16] });
      expect(r.info(`${p}.nested_absmax`)).toMatchObject({ dtype: "F32", shape: [1] });
      expect(r.info(`${p}.nested_quant_map`)).toMatchObject({ dtype: "F32", shape: [256] });
      const json = new TextDecoder().decode(await r.raw(`${p}.quant_state.bitsandbytes__nf4`));
      expect(json).toMatch(
        /^\{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": \[37, 24\], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": [0-9.e-]+\}$/,
      );
      expect(r.info("model.layers.0.self_attn.q_proj.bias").dtype).toBe("F32");
      expect(r.info("lm_head.weight")).toMatchObject({ dtype: "F32", shape: [64, 24] });
      expect(r.keys().filter((k) => k.endsWith(".weight.quant_state.bitsandbytes__nf4")).length).toBe(14);
    } finally {
      await r.close();
    }
    const cfg = JSON.parse(readFileSync(join(qDir, "config.json"), "utf8"));
    expect(cfg.quantization_config.load_in_4bit).toBe(true);
    expect(cfg.quantization_config.bnb_4bit_use_double_quant).toBe(true);
  });

  it("reloads without re-quantizing: same bytes, same statistics, identical logits", async () => {
    const again = await AutoModelForCausalLM.fromPretrained(qDir);
    for (const [path, m] of q.namedModules()) {
      if (!(m instanceof Linear4bit)) continue;
      const n = again.getSubmodule(path) as Linear4bit;
      expect(n).toBeInstanceOf(Linear4bit);
      expect(Buffer.from(n.packedWeight).equals(Buffer.from(m.packedWeight))).toBe(true);
      expect(n.quantState.nested!.offset).toBe(m.quantState.nested!.offset);
      expect(Array.from(n.quantState.nested!.absmax)).toEqual(Array.from(m.quantState.nested!.absmax));
    }
    expect(maxAbs(logits(again), logits(q))).toBe(0);
  });

  it("a corrupted quant state is a clear error", async () => {
    const bad = join(tmp, "corrupt");
    await q.savePretrained(bad);
    const r = await openSafetensors(bad);
    const all = new Map<string, Tensor>();
    for (const k of r.keys()) all.set(k, await r.tensor(k));
    await r.close();
    const key = "model.layers.1.mlp.up_proj.weight.quant_state.bitsandbytes__nf4";
    const text = new TextDecoder()
      .decode(all.get(key)!.dataSync() as Uint8Array)
      .replace("[37, 24]", "[37, 25]");
    all.set(key, tensor(new TextEncoder().encode(text), { dtype: "uint8" }));
    await saveSafetensors(join(bad, "model.safetensors"), all, { metadata: { format: "pt" } });
    await expect(AutoModelForCausalLM.fromPretrained(bad)).rejects.toThrow(
      /"model\.layers\.1\.mlp\.up_proj": corrupted 4-bit quant state: .*444 packed bytes, expected 463/,
    );
    all.set(key, tensor(new TextEncoder().encode("{not json"), { dtype: "uint8" }));
    await saveSafetensors(join(bad, "model.safetensors"), all, { metadata: { format: "pt" } });
    await expect(AutoModelForCausalLM.fromPretrained(bad)).rejects.toThrow(
      /corrupted 4-bit quant state: .*not UTF-8 JSON/,
    );
  });
});

/** A safetensors file from raw bytes (the writer has no I8), laid out in the given order. */
function writeRawSafetensors(
  path: string,
  entries: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[],
) {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let pos = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [pos, pos + e.bytes.length] };
    pos += e.bytes.length;
  }
  let h = JSON.stringify(header);
  h += " ".repeat((8 - (h.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(path, Buffer.concat([len, Buffer.from(h), ...entries.map((e) => Buffer.from(e.bytes))]));
}

describe("loading an LLM.int8 checkpoint (P.weight I8, P.SCB, P.weight_format)", () => {
  it("takes the int8 weights as stored", async () => {
    const dir = join(tmp, "int8");
    mkdirSync(dir, { recursive: true });
    const r = await openSafetensors(floatDir);
    const entries: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[] = [];
    const quantized = new Map<string, Int8Array>();
    for (const k of r.keys()) {
      const info = r.info(k);
      const m = /^(model\.layers\.\d+\.(self_attn|mlp)\.\w+)\.weight$/.exec(k);
      if (!m) {
        entries.push({ name: k, dtype: info.dtype, shape: info.shape, bytes: await r.raw(k) });
        continue;
      }
      const [O, I] = info.shape as [number, number];
      const { CB, SCB } = int8VectorwiseQuant((await r.tensor(k)).dataSync(), O, I);
      quantized.set(m[1]!, CB);
      entries.push({ name: k, dtype: "I8", shape: [O, I], bytes: new Uint8Array(CB.buffer) });
      entries.push({ name: `${m[1]}.SCB`, dtype: "F32", shape: [O], bytes: new Uint8Array(SCB.buffer) });
      entries.push({ name: `${m[1]}.weight_format`, dtype: "U8", shape: [], bytes: Uint8Array.of(0) });
    }
    await r.close();
    writeRawSafetensors(join(dir, "model.safetensors"), entries);
    const cfg = JSON.parse(readFileSync(join(floatDir, "config.json"), "utf8"));
    cfg.quantization_config = new BitsAndBytesConfig({ load_in_8bit: true }).toDict();
    writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
    const q = await AutoModelForCausalLM.fromPretrained(dir);
    for (const [path, CB] of quantized) {
      const layer = q.getSubmodule(path) as Linear8bitLt;
      expect(layer).toBeInstanceOf(Linear8bitLt);
      expect(Array.from(layer._CB)).toEqual(Array.from(CB));
    }
    const direct = await AutoModelForCausalLM.fromPretrained(floatDir, {
      quantization_config: { load_in_8bit: true },
    });
    expect(maxAbs(logits(q), logits(direct))).toBe(0);
    // saved again: the same tensors, dtypes, shapes and bytes as the bitsandbytes-layout file it came from
    const saved = join(tmp, "int8-save");
    await q.savePretrained(saved);
    const [a, b] = [await openSafetensors(dir), await openSafetensors(saved)];
    try {
      expect(b.keys().sort()).toEqual(a.keys().sort());
      for (const k of a.keys()) {
        expect(b.info(k), k).toMatchObject({ dtype: a.info(k).dtype, shape: a.info(k).shape });
        expect(Buffer.from(await b.raw(k)).equals(Buffer.from(await a.raw(k))), k).toBe(true);
      }
    } finally {
      await a.close();
      await b.close();
    }
    expect(
      JSON.parse(readFileSync(join(saved, "config.json"), "utf8")).quantization_config.load_in_8bit,
    ).toBe(true);
    expect(maxAbs(logits(await AutoModelForCausalLM.fromPretrained(saved)), logits(q))).toBe(0);
  });
});

describe("layers that cannot be quantized", () => {
  it("quantizeModel names a non-Linear module in the decoder layers", () => {
    class Custom extends Module {
      readonly inFeatures = 24;
      readonly outFeatures = 24;
      forward(x: Tensor): Tensor {
        return x;
      }
      denseWeight(): Tensor {
        return tensor([0]);
      }
    }
    const m = new Qwen2ForCausalLM(new Qwen2Config(TINY));
    m.setSubmodule("model.layers.0.self_attn.o_proj", new Custom());
    expect(() => quantizeModel(m, { load_in_4bit: true })).toThrow(
      /"model\.layers\.0\.self_attn\.o_proj" is a Custom; only Linear layers can be quantized to 4 bits/,
    );
    const ok = quantizeModel(new Qwen2ForCausalLM(new Qwen2Config(TINY)), { load_in_4bit: true });
    expect(() => quantizeModel(ok, { load_in_4bit: true })).toThrow(/already quantized/);
  });
});
