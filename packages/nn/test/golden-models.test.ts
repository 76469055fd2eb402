// Qwen2 and Llama against PyTorch: fixtures/models/<name>/ holds a Hugging Face model directory written by
// scripts/gen-fixtures/models.py, plus golden.json/golden.bin with the logits, loss and every parameter
// gradient that a float64 torch forward (transformers' math) gave for a padded batch with -100 labels.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM } from "@tsgrad/nn";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { describe, expect, it } from "vitest";

const FIXTURES = fileURLToPath(new URL("../../../fixtures/models/", import.meta.url));

interface Golden {
  inputs: {
    input_ids: number[][];
    attention_mask: number[][];
    labels: number[][];
    position_ids?: number[][];
  };
  loss: number;
  tensors: Record<string, { shape: number[]; offset: number; length: number }>;
}

function readGolden(name: string): { meta: Golden; get: (key: string) => Float32Array } {
  const dir = `${FIXTURES}${name}/`;
  const meta = JSON.parse(readFileSync(`${dir}golden.json`, "utf8")) as Golden;
  const bin = readFileSync(`${dir}golden.bin`);
  const get = (key: string) => {
    const e = meta.tensors[key];
    if (!e) throw new Error(`golden: no tensor ${key}`);
    return new Float32Array(
      bin.buffer.slice(bin.byteOffset + e.offset, bin.byteOffset + e.offset + 4 * e.length),
    );
  };
  return { meta, get };
}

describe.each([
  ["qwen2-tiny", Qwen2ForCausalLM],
  ["llama-tiny", LlamaForCausalLM],
])("%s matches the PyTorch reference", (name, Cls) => {
  it("logits, loss and every parameter gradient", async () => {
    const { meta, get } = readGolden(name);
    const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`);
    expect(model).toBeInstanceOf(Cls);
    model.train();
    const { logits, loss } = model.forward(meta.inputs);
    expect(logits.shape).toEqual(meta.tensors.logits!.shape);
    expectAllClose(logits, get("logits"), TOLERANCES.f32);
    expect(loss!.itemSync()).toBeCloseTo(meta.loss, 5);
    loss!.backward();
    const params = [...model.namedParameters()];
    expect(params.map(([k]) => k).sort()).toEqual(
      Object.keys(meta.tensors)
        .filter((k) => k !== "logits")
        .sort(),
    );
    for (const [key, p] of params) {
      expect(p.grad, key).not.toBeNull();
      try {
        expectAllClose(p.grad!, get(key), TOLERANCES.paramGrads);
      } catch (e) {
        throw new Error(`${key}: ${(e as Error).message}`);
      }
    }
  });
});
