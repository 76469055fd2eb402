// generate() and sequenceLogProbs() on the fixture models: greedy decoding with the KV cache equals the
// argmax loop over full forwards, left-padded batches equal single prompts, seeded sampling, eos/pad.

import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM, type CausalLM, sampleToken, sequenceLogProbs } from "@tsgrad/nn";
import { getBackend, manualSeed, noGrad } from "@tsgrad/tensor";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { beforeAll, describe, expect, it } from "vitest";

const FIXTURES = fileURLToPath(new URL("../../../fixtures/models/", import.meta.url));
const models: Record<string, CausalLM> = {};
beforeAll(async () => {
  for (const name of ["qwen2-tiny", "llama-tiny"])
    models[name] = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`);
});

/** The reference: a full forward over the whole sequence for every new token, no cache. */
function argmaxLoop(model: CausalLM, prompt: number[], n: number): number[] {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) {
    const logits = noGrad(() => model.forward({ input_ids: [seq] }).logits);
    const last = (logits.tolistSync() as number[][][])[0]![seq.length - 1]!;
    seq.push(last.indexOf(Math.max(...last)));
  }
  return seq;
}

describe.each(["qwen2-tiny", "llama-tiny"])("%s", (name) => {
  it("greedy generate equals the argmax loop without cache, token for token", () => {
    const model = models[name]!;
    const prompt = [5, 17, 99, 3];
    const out = model.generate([prompt], { max_new_tokens: 6, eos_token_id: null });
    expect(out.shape).toEqual([1, 10]);
    expect((out.tolistSync() as number[][])[0]).toEqual(argmaxLoop(model, prompt, 6));
  });

  it("a left-padded batch generates what each prompt generates alone", () => {
    const model = models[name]!;
    const prompts = [
      [44, 7],
      [5, 17, 99, 3],
      [120, 8, 64],
    ];
    const T = 4;
    const ids = prompts.map((p) => [...new Array<number>(T - p.length).fill(0), ...p]);
    const mask = prompts.map((p) => [...new Array<number>(T - p.length).fill(0), ...p.map(() => 1)]);
    const batch = model.generate(ids, { max_new_tokens: 5, attention_mask: mask, eos_token_id: null });
    const rows = batch.tolistSync() as number[][];
    prompts.forEach((p, b) => {
      const alone = model.generate([p], { max_new_tokens: 5, eos_token_id: null }).tolistSync() as number[][];
      expect(rows[b]!.slice(T)).toEqual(alone[0]!.slice(p.length));
    });
  });
});

describe("sampling", () => {
  it("is reproducible under manualSeed, and top_k = 1 is greedy", () => {
    const model = models["qwen2-tiny"]!;
    const opts = { max_new_tokens: 8, do_sample: true, temperature: 1.5, eos_token_id: null };
    manualSeed(42);
    const a = model.generate([[5, 17, 99]], opts).tolistSync();
    manualSeed(42);
    const b = model.generate([[5, 17, 99]], opts).tolistSync();
    expect(b).toEqual(a);
    const seen = new Set<string>();
    for (let s = 0; s < 5; s++) {
      manualSeed(s);
      seen.add(JSON.stringify(model.generate([[5, 17, 99]], opts).tolistSync()));
    }
    expect(seen.size).toBeGreaterThan(1);
    const greedy = model.generate([[5, 17, 99]], { max_new_tokens: 8, eos_token_id: null }).tolistSync();
    expect(model.generate([[5, 17, 99]], { ...opts, top_k: 1 }).tolistSync()).toEqual(greedy);
  });

  it("top-p keeps the smallest set reaching p, top-k the k largest, temperature sharpens", () => {
    const logits = [0.5, 0.3, 0.15, 0.05].map(Math.log);
    const o = { temperature: 1, top_k: 0, top_p: 1 };
    // no filtering: cumulative 0.5, 0.8, 0.95, 1
    expect([0.49, 0.51, 0.79, 0.81, 0.96].map((u) => sampleToken(logits, u, o))).toEqual([0, 1, 1, 2, 3]);
    // top_p 0.7: ascending cumulative 0.05, 0.2, 0.5, 1; those <= 0.3 go, so {0: 0.625, 1: 0.375} remain
    const p = { ...o, top_p: 0.7 };
    expect([0.6, 0.63, 0.99].map((u) => sampleToken(logits, u, p))).toEqual([0, 1, 1]);
    // top_k 2 keeps the same two tokens
    expect([0.6, 0.63, 0.99].map((u) => sampleToken(logits, u, { ...o, top_k: 2 }))).toEqual([0, 1, 1]);
    // temperature 0.01 puts all mass on the argmax
    expect(sampleToken(logits, 0.999, { ...o, temperature: 0.01 })).toBe(0);
  });
});

describe("eos and padding", () => {
  it("a finished row gets pad tokens, and generation stops when every row has finished", () => {
    const model = models["llama-tiny"]!;
    const greedy = model
      .generate([[5, 17, 99, 3]], { max_new_tokens: 4, eos_token_id: null })
      .tolistSync() as number[][];
    const eos = greedy[0]![4]!; // the first generated token
    const one = model.generate([[5, 17, 99, 3]], { max_new_tokens: 4, eos_token_id: eos }).tolistSync();
    expect(one).toEqual([[5, 17, 99, 3, eos]]);
    const two = model
      .generate(
        [
          [5, 17, 99, 3],
          [8, 9, 10, 11],
        ],
        { max_new_tokens: 3, eos_token_id: [eos], pad_token_id: 0 },
      )
      .tolistSync() as number[][];
    expect(two[0]).toEqual([5, 17, 99, 3, eos, 0, 0]);
    expect(two[1]!.length).toBe(7);
  });
});

describe("memory", () => {
  it("generate frees its cache and temporaries", () => {
    const model = models["qwen2-tiny"]!;
    const before = getBackend().liveBytes();
    manualSeed(3);
    const out = model.generate([[5, 17, 99]], { max_new_tokens: 4, do_sample: true, eos_token_id: null });
    out.dispose();
    expect(getBackend().liveBytes()).toBe(before);
  });
});

describe("generation_config.json", () => {
  it("supplies generate's eos_token_id, and savePretrained writes it back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsgrad-gen-"));
    try {
      for (const f of ["config.json", "model.safetensors"])
        copyFileSync(`${FIXTURES}llama-tiny/${f}`, join(dir, f));
      const greedy = models["llama-tiny"]!.generate([[5, 17, 99, 3]], {
        max_new_tokens: 3,
        eos_token_id: null,
      });
      const eos = (greedy.tolistSync() as number[][])[0]![4]!;
      writeFileSync(
        join(dir, "generation_config.json"),
        JSON.stringify({ eos_token_id: [eos, 2], do_sample: true }),
      );
      const model = await AutoModelForCausalLM.fromPretrained(dir);
      expect(model.generationConfig).toEqual({ eos_token_id: [eos, 2] });
      expect(model.generate([[5, 17, 99, 3]], { max_new_tokens: 3 }).tolistSync()).toEqual([
        [5, 17, 99, 3, eos],
      ]);
      const out = join(dir, "saved");
      expect(await model.savePretrained(out)).toContain("generation_config.json");
      expect((await AutoModelForCausalLM.fromPretrained(out)).generationConfig).toEqual({
        eos_token_id: [eos, 2],
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("sequenceLogProbs", () => {
  it("gives log softmax(logits[t-1])[id[t]], zero where masked, and is independent of left padding", () => {
    const model = models["qwen2-tiny"]!;
    const ids = [
      [0, 0, 5, 17, 99, 3],
      [8, 9, 10, 11, 12, 13],
    ];
    const mask = [
      [0, 0, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1],
    ];
    const completion = [
      [0, 0, 0, 0, 1, 1],
      [0, 0, 0, 1, 1, 0],
    ];
    const lp = sequenceLogProbs(model, ids, mask, { completion_mask: completion });
    expect(lp.shape).toEqual([2, 5]);
    const got = lp.tolistSync() as number[][];
    expect([got[0]![0], got[0]![1], got[0]![2], got[1]![0], got[1]![1], got[1]![4]]).toEqual([
      0, 0, 0, 0, 0, 0,
    ]);
    // the unpadded row 0 alone, by hand from its logits
    const alone = noGrad(
      () => model.forward({ input_ids: [[5, 17, 99, 3]] }).logits,
    ).tolistSync() as number[][][];
    const logp = (row: number[], y: number) => {
      const m = Math.max(...row);
      return row[y]! - m - Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    };
    expectAllClose(
      [got[0]![3]!, got[0]![4]!],
      [logp(alone[0]![1]!, 99), logp(alone[0]![2]!, 3)],
      TOLERANCES.f32,
    );
    const full = noGrad(() => model.forward({ input_ids: [ids[1]!] }).logits).tolistSync() as number[][][];
    expectAllClose(
      [got[1]![2]!, got[1]![3]!],
      [logp(full[0]![2]!, 11), logp(full[0]![3]!, 12)],
      TOLERANCES.f32,
    );
  });

  it("is differentiable", () => {
    const model = models["llama-tiny"]!;
    model.zeroGrad();
    sequenceLogProbs(model, [[5, 17, 99, 3]])
      .sum()
      .backward();
    expect(model.model.norm.weight.grad).not.toBeNull();
    model.zeroGrad();
  });
});
