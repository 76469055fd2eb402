// Qwen2 and Llama models: state-dict manifests (from the Python spec in scripts/gen-fixtures/models.py),
// configs, the causal property, the loss, the KV cache, save/load round trips and load errors.

import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fc, test } from "@fast-check/vitest";
import {
  AutoModelForCausalLM,
  type CausalLM,
  LlamaConfig,
  LlamaForCausalLM,
  packedSequenceIds,
  Qwen2Config,
  Qwen2ForCausalLM,
  saveSafetensors,
} from "@tsgrad/nn";
import { cat, getBackend, manualSeed, noGrad, type Tensor, tensor, tidy } from "@tsgrad/tensor";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { afterAll, describe, expect, it } from "vitest";

const FIXTURES = fileURLToPath(new URL("../../../fixtures/models/", import.meta.url));
const manifest = JSON.parse(readFileSync(`${FIXTURES}manifest.json`, "utf8")) as Record<
  string,
  { config: Record<string, unknown>; state_dict: Record<string, number[]> }
>;
const tmp = mkdtempSync(join(tmpdir(), "tsgrad-models-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function build(config: Record<string, unknown>): CausalLM {
  return config.model_type === "qwen2"
    ? new Qwen2ForCausalLM(new Qwen2Config(config))
    : new LlamaForCausalLM(new LlamaConfig(config));
}

function fixtureDir(name: string): string {
  const dir = join(tmp, `${name}-${Math.random().toString(36).slice(2)}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of ["config.json", "model.safetensors"]) copyFileSync(`${FIXTURES}${name}/${f}`, join(dir, f));
  return dir;
}

async function loadError(dir: string): Promise<string> {
  try {
    await AutoModelForCausalLM.fromPretrained(dir);
  } catch (e) {
    return (e as Error).message;
  }
  return "no error";
}

describe("state dict manifest", () => {
  it.each(Object.keys(manifest))("%s has exactly the Hugging Face keys and shapes, in order", (name) => {
    const { config, state_dict } = manifest[name]!;
    const model = build(config);
    expect([...model.stateDict()].map(([k, t]) => [k, [...t.shape]])).toEqual(Object.entries(state_dict));
  });
});

describe("configs", () => {
  it("keep Hugging Face defaults and snake_case fields; null falls back to the default", () => {
    const q = new Qwen2Config({ hidden_size: 64, num_key_value_heads: null as unknown as number });
    expect(q.vocab_size).toBe(151936);
    expect(q.rope_theta).toBe(10000);
    expect(q.num_key_value_heads).toBe(32); // None -> num_attention_heads
    expect(q.tie_word_embeddings).toBe(false);
    const l = new LlamaConfig({ num_attention_heads: 8 });
    expect([l.vocab_size, l.max_position_embeddings, l.bos_token_id, l.eos_token_id]).toEqual([
      32000, 2048, 1, 2,
    ]);
    expect(l.num_key_value_heads).toBe(8);
    expect(l.attention_bias).toBe(false);
    expect(() => new Qwen2Config({ model_type: "llama" })).toThrow(/model_type must be "qwen2"/);
  });

  it("reject unsupported settings with the field named", () => {
    const base = manifest["qwen2-tiny"]!.config;
    expect(() => build({ ...base, use_sliding_window: true })).toThrow(/use_sliding_window/);
    expect(() => build({ ...base, hidden_act: "gelu" })).toThrow(/hidden_act "gelu"/);
    expect(() => build({ ...base, rope_scaling: { rope_type: "yarn", factor: 2 } })).toThrow(
      /rope_type "yarn"/,
    );
  });
});

describe("config variants", () => {
  it("rope_parameters (transformers v5) means the same as rope_theta + rope_scaling", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama-tiny`);
    const { rope_theta, rope_scaling, ...rest } = manifest["llama-tiny"]!.config;
    const v5 = new LlamaForCausalLM(
      new LlamaConfig({ ...rest, rope_parameters: { ...(rope_scaling as object), rope_theta } as never }),
      { init: "zeros" },
    );
    v5.loadStateDict(model.stateDict());
    const ids = [[5, 17, 99, 3, 42, 8]];
    const a = noGrad(
      () => model.forward({ input_ids: ids, position_ids: [[40, 41, 42, 43, 44, 45]] }).logits,
    );
    const b = noGrad(() => v5.forward({ input_ids: ids, position_ids: [[40, 41, 42, 43, 44, 45]] }).logits);
    expect(b.tolistSync()).toEqual(a.tolistSync());
    // and rope scaling matters at these positions: without it the logits move
    const plain = new LlamaForCausalLM(new LlamaConfig({ ...rest, rope_theta: rope_theta as number }), {
      init: "zeros",
    });
    plain.loadStateDict(model.stateDict());
    const c = noGrad(
      () => plain.forward({ input_ids: ids, position_ids: [[40, 41, 42, 43, 44, 45]] }).logits,
    );
    expect(c.tolistSync()).not.toEqual(a.tolistSync());
  });

  it("a tied checkpoint that still carries lm_head.weight loads", async () => {
    const dir = fixtureDir("qwen2-tiny");
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    expect(model.lm_head).toBeNull();
    const sd = model.stateDict();
    sd.set("lm_head.weight", model.model.embed_tokens.weight);
    await saveSafetensors(join(dir, "model.safetensors"), sd);
    await expect(AutoModelForCausalLM.fromPretrained(dir)).resolves.toBeDefined();
  });
});

describe("forward", () => {
  const qwen = () => AutoModelForCausalLM.fromPretrained(`${FIXTURES}qwen2-tiny`);

  test.prop(
    [
      fc.integer({ min: 1, max: 6 }),
      fc.array(fc.integer({ min: 1, max: 127 }), { minLength: 7, maxLength: 7 }),
    ],
    {
      numRuns: 8,
    },
  )("is causal: tokens after t do not change logits at <= t", async (t, tail) => {
    const model = await qwen();
    const ids = [[5, 17, 99, 3, 42, 8, 77, 120]];
    const other = [[...ids[0]!.slice(0, t + 1), ...tail.slice(t)]];
    const a = noGrad(() => model.forward({ input_ids: ids }).logits.slice(1, 0, t + 1));
    const b = noGrad(() => model.forward({ input_ids: other }).logits.slice(1, 0, t + 1));
    expect(b.tolistSync()).toEqual(a.tolistSync());
  });

  it("loss is the mean shifted cross-entropy over labels != -100", async () => {
    const model = await qwen();
    const ids = [
      [5, 17, 99, 3],
      [8, 9, 10, 11],
    ];
    const labels = [
      [-100, 17, 99, 3],
      [8, 9, -100, -100],
    ];
    const { logits, loss } = noGrad(() => model.forward({ input_ids: ids, labels }));
    const L = logits.tolistSync() as number[][][];
    // targets: row 0 positions 0,1,2 predict 17, 99, 3; row 1 position 0 predicts 9
    const pairs: [number, number, number][] = [
      [0, 0, 17],
      [0, 1, 99],
      [0, 2, 3],
      [1, 0, 9],
    ];
    const nll = pairs.map(([b, t, y]) => {
      const row = L[b]![t]!;
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
      return lse - row[y]!;
    });
    const mean = nll.reduce((s, v) => s + v, 0) / nll.length;
    expect(loss!.itemSync()).toBeCloseTo(mean, 4);
    const summed = noGrad(() => model.forward({ input_ids: ids, labels, num_items_in_batch: 10 }).loss!);
    expect(summed.itemSync()).toBeCloseTo((mean * 4) / 10, 4);
  });

  it("logits_to_keep returns the last positions' logits only", async () => {
    const model = await qwen();
    const ids = [[5, 17, 99, 3]];
    const all = noGrad(() => model.forward({ input_ids: ids }).logits);
    const last = noGrad(() => model.forward({ input_ids: ids, logits_to_keep: 1 }).logits);
    expect(last.shape).toEqual([1, 1, 128]);
    expect(last.tolistSync()).toEqual(all.slice(1, 3).tolistSync());
  });

  it("inputs_embeds gives the same logits as input_ids", async () => {
    const model = await qwen();
    const ids = tensor([[5, 17, 99, 3]], { dtype: "int32" });
    const a = noGrad(() => model.forward({ input_ids: ids }).logits);
    const b = noGrad(() => model.forward({ inputs_embeds: model.model.embed_tokens.forward(ids) }).logits);
    expect(b.tolistSync()).toEqual(a.tolistSync());
  });

  it("decoding with the KV cache matches the full forward, position by position", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama-tiny`);
    const ids = [
      [0, 0, 5, 17, 99, 3, 42],
      [8, 9, 10, 11, 12, 13, 14],
    ];
    const mask = ids.map((r) => r.map((v) => (v === 0 ? 0 : 1)));
    const positions = [
      [1, 1, 0, 1, 2, 3, 4],
      [0, 1, 2, 3, 4, 5, 6],
    ];
    const full = noGrad(
      () => model.forward({ input_ids: ids, attention_mask: mask, position_ids: positions }).logits,
    );
    const cache = model.createCache();
    const parts: Tensor[] = [];
    noGrad(() => {
      parts.push(
        model.forward({
          input_ids: ids.map((r) => r.slice(0, 4)),
          attention_mask: mask.map((r) => r.slice(0, 4)),
          position_ids: positions.map((r) => r.slice(0, 4)),
          past_key_values: cache,
        }).logits,
      );
      for (let t = 4; t < 7; t++) {
        parts.push(
          model.forward({
            input_ids: ids.map((r) => [r[t]!]),
            attention_mask: mask.map((r) => r.slice(0, t + 1)),
            position_ids: positions.map((r) => [r[t]!]),
            past_key_values: cache,
          }).logits,
        );
      }
    });
    expect(cache[0]!.k!.shape).toEqual([2, 2, 7, 8]);
    // the padded query rows (uniform attention over masked keys) differ by construction: compare real tokens
    const real = (x: Tensor) => cat([x.slice(0, 0, 1).slice(1, 2), x.slice(0, 1)], 1);
    expectAllClose(real(cat(parts, 1)), real(full), TOLERANCES.f32);
  });
});

describe("packed sequences", () => {
  // two sequences packed into one row, position_ids restarting at the second (TRL's padding-free packing)
  const first = [5, 17, 99, 3, 42];
  const second = [8, 9, 10, 11];
  const row = [[...first, ...second]];
  const positions = [[0, 1, 2, 3, 4, 0, 1, 2, 3]];

  it.each(["llama-tiny", "qwen2-tiny"])(
    "%s: without attention_mask each sequence attends only to itself, as if run alone",
    async (name) => {
      const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`);
      const packed = noGrad(() => model.forward({ input_ids: row, position_ids: positions }).logits);
      const a = noGrad(() => model.forward({ input_ids: [first] }).logits);
      const b = noGrad(() => model.forward({ input_ids: [second] }).logits);
      expectAllClose(packed.slice(1, 0, 5), a, TOLERANCES.f32);
      expectAllClose(packed.slice(1, 5, 9), b, TOLERANCES.f32);
      // the loss over the packed row (each sequence's first label -100) is the mean over both sequences'
      const labels = [[...first, -100, ...second.slice(1)]];
      const loss = noGrad(() => model.forward({ input_ids: row, position_ids: positions, labels }).loss!);
      const la = noGrad(() => model.forward({ input_ids: [first], labels: [first] }).loss!);
      const lb = noGrad(() => model.forward({ input_ids: [second], labels: [second] }).loss!);
      const want = (la.itemSync() * (first.length - 1) + lb.itemSync() * (second.length - 1)) / 7;
      expect(loss.itemSync()).toBeCloseTo(want, 5);
    },
  );

  it("with an attention_mask (as transformers) or one sequence per row, nothing is kept apart", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama-tiny`);
    const b = noGrad(() => model.forward({ input_ids: [second] }).logits);
    const masked = noGrad(
      () =>
        model.forward({ input_ids: row, position_ids: positions, attention_mask: [row[0]!.map(() => 1)] })
          .logits,
    );
    // the second sequence now sees the first: its logits move
    expect(() => expectAllClose(masked.slice(1, 5, 9), b, TOLERANCES.f32)).toThrow();
    expect(packedSequenceIds([0, 1, 2, 0, 1, 5, 6, 7], 2, 4)).toEqual(
      Int32Array.from([0, 0, 0, 1, 0, 1, 1, 1]),
    );
    expect(packedSequenceIds([3, 4, 5, 6], 1, 4)).toBeNull();
  });
});

describe("savePretrained / fromPretrained", () => {
  const ids = [[5, 17, 99, 3, 42]];

  it.each(["qwen2-tiny", "llama-tiny"])(
    "%s: save then load gives identical logits and config",
    async (name) => {
      const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`);
      const dir = join(tmp, `saved-${name}`);
      const files = await model.savePretrained(dir);
      expect(files).toEqual(["model.safetensors", "config.json"]);
      const again = await AutoModelForCausalLM.fromPretrained(dir);
      const saved = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      const original = JSON.parse(readFileSync(`${FIXTURES}${name}/config.json`, "utf8"));
      for (const [k, v] of Object.entries(original)) expect(saved[k], k).toEqual(v);
      const a = noGrad(() => model.forward({ input_ids: ids }).logits);
      const b = noGrad(() => again.forward({ input_ids: ids }).logits);
      expect(b.tolistSync()).toEqual(a.tolistSync());
    },
  );

  it("shards above maxShardSize, writes an index, and loads the shards back", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama-tiny`);
    const dir = join(tmp, "sharded");
    const files = await model.savePretrained(dir, { maxShardSize: 40_000 });
    expect(files).toContain("model.safetensors.index.json");
    expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(1);
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
    expect(Object.keys(index.weight_map).sort()).toEqual([...model.stateDict().keys()].sort());
    const again = await AutoModelForCausalLM.fromPretrained(dir);
    const a = noGrad(() => model.forward({ input_ids: ids }).logits);
    const b = noGrad(() => again.forward({ input_ids: ids }).logits);
    expect(b.tolistSync()).toEqual(a.tolistSync());
  });

  it("loads in float64 when asked", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}qwen2-tiny`, { dtype: "float64" });
    expect(model.dtype).toBe("float64");
    const f32 = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}qwen2-tiny`);
    const a = noGrad(() => model.forward({ input_ids: ids }).logits);
    expect(a.dtype).toBe("float64");
    expectAllClose(
      noGrad(() => f32.forward({ input_ids: ids }).logits),
      Array.from(a.dataSync()),
      TOLERANCES.f32,
    );
  });
});

describe("load errors name the file and the problem", () => {
  it("a missing config.json", async () => {
    const dir = fixtureDir("qwen2-tiny");
    rmSync(join(dir, "config.json"));
    expect(await loadError(dir)).toMatch(new RegExp(`${join(dir, "config.json")} not found`));
  });

  it("an unknown model_type", async () => {
    const dir = fixtureDir("qwen2-tiny");
    writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "gpt2" }));
    const msg = await loadError(dir);
    expect(msg).toMatch(/config\.json: model_type "gpt2" is not supported; expected one of qwen2, llama/);
    expect(msg).toContain(dir);
  });

  it("a config.json that is not JSON", async () => {
    const dir = fixtureDir("qwen2-tiny");
    writeFileSync(join(dir, "config.json"), "{ nope");
    expect(await loadError(dir)).toMatch(/config\.json is not valid JSON/);
  });

  it("a truncated safetensors file", async () => {
    const dir = fixtureDir("qwen2-tiny");
    truncateSync(join(dir, "model.safetensors"), 50_000);
    const msg = await loadError(dir);
    expect(msg).toContain(join(dir, "model.safetensors"));
    expect(msg).toMatch(/truncated/);
  });

  it("a corrupted safetensors header", async () => {
    const dir = fixtureDir("qwen2-tiny");
    const path = join(dir, "model.safetensors");
    const bytes = readFileSync(path);
    bytes.write("#", 8); // the header's opening brace
    writeFileSync(path, bytes);
    const msg = await loadError(dir);
    expect(msg).toContain(path);
    expect(msg).toMatch(/header is not valid JSON/);
  });

  it("a missing tensor", async () => {
    const dir = fixtureDir("llama-tiny");
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    const sd = model.stateDict();
    sd.delete("model.layers.1.mlp.up_proj.weight");
    await saveSafetensors(join(dir, "model.safetensors"), sd);
    const msg = await loadError(dir);
    expect(msg).toContain(join(dir, "model.safetensors"));
    expect(msg).toMatch(
      /tensor "model\.layers\.1\.mlp\.up_proj\.weight" is missing \(expected shape \[64, 32\]\)/,
    );
  });

  it("a tensor of the wrong shape", async () => {
    const dir = fixtureDir("llama-tiny");
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    const sd = model.stateDict();
    sd.set("model.norm.weight", tensor(new Float32Array(31)));
    await saveSafetensors(join(dir, "model.safetensors"), sd);
    const msg = await loadError(dir);
    expect(msg).toContain(join(dir, "model.safetensors"));
    expect(msg).toMatch(/tensor "model\.norm\.weight" has shape \[31\], expected \[32\]/);
  });

  it("an unexpected tensor when strict, accepted when not", async () => {
    const dir = fixtureDir("llama-tiny");
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    const sd = model.stateDict();
    sd.set("model.extra.weight", tensor(new Float32Array(3)));
    await saveSafetensors(join(dir, "model.safetensors"), sd);
    expect(await loadError(dir)).toMatch(/unexpected tensors: model\.extra\.weight/);
    manualSeed(0);
    await expect(AutoModelForCausalLM.fromPretrained(dir, { strict: false })).resolves.toBeDefined();
  });
});

describe("memory", () => {
  it("a tidy training step leaves live bytes flat (only parameters and their gradients stay)", async () => {
    const model = (await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama-tiny`)).train();
    const batch = { input_ids: [[5, 17, 99, 3]], labels: [[5, 17, 99, 3]] };
    const live: number[] = [];
    for (let i = 0; i < 3; i++) {
      model.zeroGrad();
      tidy(() => {
        model.forward(batch).loss!.backward();
      });
      live.push(getBackend().liveBytes());
    }
    expect(live[2]).toBe(live[1]);
    expect(live[1]).toBe(live[0]);
  });
});
