// LoRA, DoRA and rsLoRA adapters against PyTorch: fixtures/peft/<name>/ holds an adapter folder in PEFT's
// layout (adapter_config.json + adapter_model.safetensors) for fixtures/models/qwen2-tiny, written by
// scripts/gen-fixtures/peft.py, plus expected.json with the logits, loss and the gradient of the loss with
// respect to every adapter parameter (keyed by saved name) that a float64 torch reference gave for a padded
// batch. minimal/ is a five-key hand-written config over the lora/ weights and must behave exactly like lora/.

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM } from "@tsgrad/nn";
import { noGrad } from "@tsgrad/tensor";
import { expectAllClose, TOLERANCES } from "@tsgrad/tensor/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  LoraConfig,
  LoraLinear,
  PEFT_VERSION,
  PeftModel,
  stripAdapterName,
} from "../src/index.js";

const FIXTURES = fileURLToPath(new URL("../../../fixtures/", import.meta.url));
const BASE = join(FIXTURES, "models", "qwen2-tiny");
const PEFT = join(FIXTURES, "peft");

interface Packed {
  shape: number[];
  data: number[];
}
interface Expected {
  inputs: { input_ids: number[][]; attention_mask: number[][]; labels: number[][] };
  loss: number;
  logits: Packed;
  grads: Record<string, Packed>;
}

/** The adapter_config.json keys whose values decide how an adapter behaves (target_modules compared as a set). */
const ESSENTIAL = [
  "peft_type",
  "task_type",
  "r",
  "lora_alpha",
  "lora_dropout",
  "target_modules",
  "bias",
  "use_rslora",
  "use_dora",
  "modules_to_save",
  "fan_in_fan_out",
  "rank_pattern",
  "alpha_pattern",
  "init_lora_weights",
  "inference_mode",
] as const;

const readJson = async (path: string) => JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;

function essentials(cfg: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ESSENTIAL) {
    const v = cfg[k];
    out[k] = k === "target_modules" && Array.isArray(v) ? [...v].sort() : v;
  }
  return out;
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "tsgrad-peft-golden-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

// [folder, folder whose expected.json and full config it must reproduce, adapted layers, DoRA]
const CASES = [
  ["lora", "lora", 8, false],
  ["dora", "dora", 14, true],
  ["rslora", "rslora", 8, false],
  ["minimal", "lora", 8, false],
] as const;

describe.each(CASES)("fixtures/peft/%s against the PyTorch reference", (name, like, layers, dora) => {
  const dir = join(PEFT, name);

  it("loads with PEFT's settings, and matches logits, loss and every adapter gradient", async () => {
    const exp = (await readJson(join(PEFT, like, "expected.json"))) as unknown as Expected;
    const base = await AutoModelForCausalLM.fromPretrained(BASE);
    const peft = await PeftModel.fromPretrained(base, dir, { is_trainable: true });

    const cfg = peft.activeConfig as LoraConfig;
    expect(cfg).toBeInstanceOf(LoraConfig);
    expect(cfg.inference_mode).toBe(false);
    const wrapped = [...peft.model.namedModules()].filter(([, m]) => m instanceof LoraLinear);
    expect(wrapped).toHaveLength(layers);
    // rsLoRA: alpha/sqrt(r), with rank_pattern {"down_proj": 2} and alpha_pattern {"layers.1.mlp.up_proj": 3}.
    if (name === "rslora") {
      const scaling = (path: string) => (peft.model.getSubmodule(path) as LoraLinear).scaling("default");
      expect(scaling("model.layers.0.self_attn.k_proj")).toBeCloseTo(8 / 2, 12);
      expect(scaling("model.layers.0.mlp.down_proj")).toBeCloseTo(8 / Math.SQRT2, 12);
      expect(scaling("model.layers.0.mlp.up_proj")).toBeCloseTo(8 / 2, 12);
      expect(scaling("model.layers.1.mlp.up_proj")).toBeCloseTo(3 / 2, 12);
    }

    peft.eval(); // the reference has no dropout (rslora/ sets lora_dropout 0.1)
    const { logits, loss } = peft.forward(exp.inputs);
    expect(logits.shape).toEqual(exp.logits.shape);
    expectAllClose(logits, exp.logits.data, TOLERANCES.logits);
    expectAllClose([loss!.itemSync()], [exp.loss], TOLERANCES.f32);
    loss!.backward();

    const trainable = [...peft.namedParameters()].filter(([, p]) => p.requiresGrad);
    const saved = trainable.map(([k]) => stripAdapterName(k, "default"));
    expect([...saved].sort()).toEqual(Object.keys(exp.grads).sort());
    expect(saved.filter((k) => k.endsWith(".lora_magnitude_vector"))).toHaveLength(dora ? layers : 0);
    trainable.forEach(([key, p], i) => {
      const want = exp.grads[saved[i]!]!;
      expect(p.grad, key).not.toBeNull();
      expect(p.grad!.shape, key).toEqual(want.shape);
      try {
        expectAllClose(p.grad!, want.data, TOLERANCES.paramGrads);
      } catch (e) {
        throw new Error(`${saved[i]}: ${(e as Error).message}`);
      }
    });
    for (const [key, p] of peft.namedParameters()) if (!p.requiresGrad) expect(p.grad, key).toBeNull();
  });

  it("savePretrained writes the same safetensors bytes and an equivalent adapter_config.json", async () => {
    const base = await AutoModelForCausalLM.fromPretrained(BASE);
    const peft = await PeftModel.fromPretrained(base, dir, { is_trainable: true });
    const out = join(scratch, name);
    await peft.savePretrained(out);

    const written = await readFile(join(out, ADAPTER_WEIGHTS));
    const fixture = await readFile(join(dir, ADAPTER_WEIGHTS));
    expect(written.length).toBe(fixture.length);
    expect(written.equals(fixture)).toBe(true);

    const reference = await readJson(join(PEFT, like, ADAPTER_CONFIG));
    const text = await readFile(join(out, ADAPTER_CONFIG), "utf8");
    const got = JSON.parse(text) as Record<string, unknown>;
    expect(essentials(got)).toEqual(essentials(reference));
    expect(got.inference_mode).toBe(true); // saved files always say true, whatever is_trainable was
    // Every field PEFT writes, and nothing else.
    expect(Object.keys(got).sort()).toEqual(Object.keys(reference).sort());
    if (name === like) {
      // Same text as the Python writer, down to key order, indent and float formatting.
      const fixtureText = await readFile(join(dir, ADAPTER_CONFIG), "utf8");
      expect(text).toBe(fixtureText.replace(/"peft_version": "[^"]*"/, `"peft_version": "${PEFT_VERSION}"`));
    }
  });

  it("loaded for inference (is_trainable false): frozen, same logits", async () => {
    const exp = (await readJson(join(PEFT, like, "expected.json"))) as unknown as Expected;
    const base = await AutoModelForCausalLM.fromPretrained(BASE);
    const peft = await PeftModel.fromPretrained(base, dir);
    expect(peft.activeConfig.inference_mode).toBe(true);
    expect([...peft.namedParameters()].filter(([, p]) => p.requiresGrad)).toHaveLength(0);
    const logits = noGrad(() => peft.forward(exp.inputs).logits);
    expectAllClose(logits, exp.logits.data, TOLERANCES.logits);
    // Disabling the adapter gives the base model, which the adapter visibly changes.
    const plain = noGrad(() => peft.disableAdapter(() => peft.forward(exp.inputs).logits));
    const diff = Math.max(...plain.sub(logits).abs().dataSync());
    expect(diff).toBeGreaterThan(0.05);
  });
});
