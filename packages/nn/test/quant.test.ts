// bitsandbytes' 4-bit and 8-bit algorithms (trl-peft-spec 3.2-3.4, 3.6, 12 items 4-5): the worked examples,
// tie-breaking, padding, partial blocks, double quantization, and bit-exact agreement with the numpy/torch
// goldens of scripts/gen-fixtures/quant.py on random tensors.

import { readFileSync } from "node:fs";
import {
  absmaxOf,
  BitsAndBytesConfig,
  DYNAMIC_MAP,
  dequantize4bit,
  dequantize4bitArray,
  dequantize8bit,
  FP4_CODE,
  int8VectorwiseQuant,
  NF4_CODE,
  NF4_THRESHOLDS,
  openSafetensors,
  parseQuantStateJson,
  pythonFloatRepr,
  quantize4bit,
  quantize4bitState,
  quantize8bit,
  quantizeBlockwiseArray,
  quantStateJson,
  type SafetensorsReader,
} from "@tsgrad/nn";
import { manualSeed, randn, tensor } from "@tsgrad/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const FIX = new URL("../../../fixtures/quant/", import.meta.url).pathname;
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex").toUpperCase();
const SPEC = [0.5, -1.0, 0.25, 0.0, 0.8, -0.3, 0.1, 2.0];

function codesOf(packed: Uint8Array, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(i % 2 === 0 ? packed[i >> 1]! >> 4 : packed[i >> 1]! & 15);
  return out;
}

describe("code books (spec 3.2, 3.4)", () => {
  it("NF4 and FP4 tables", () => {
    expect(NF4_CODE[7]).toBe(0);
    expect(NF4_CODE[0]).toBe(-1);
    expect(NF4_CODE[15]).toBe(1);
    expect(NF4_CODE[8]).toBe(Math.fround(0.07958029955625534));
    expect(Array.from(FP4_CODE.slice(0, 8)).map((v) => v.toFixed(7))).toEqual([
      "0.0000000",
      "0.0052083",
      "0.6666667",
      "1.0000000",
      "0.3333333",
      "0.5000000",
      "0.1666667",
      "0.2500000",
    ]);
    expect(Object.is(FP4_CODE[8], -0)).toBe(true);
    expect(NF4_THRESHOLDS[7]).toBe(Math.fround(0.03979014977812767));
    expect(NF4_THRESHOLDS[0]).toBe(Math.fround(-0.8480964004993439));
  });

  it("dynamic map: 256 sorted values, no -1, the listed ends and neighbours of zero", () => {
    expect(DYNAMIC_MAP.length).toBe(256);
    for (let i = 1; i < 256; i++) expect(DYNAMIC_MAP[i]!).toBeGreaterThan(DYNAMIC_MAP[i - 1]!);
    expect(DYNAMIC_MAP[127]).toBe(0);
    expect(DYNAMIC_MAP[255]).toBe(1);
    const f = Math.fround;
    expect(Array.from(DYNAMIC_MAP.slice(0, 4))).toEqual(
      [-0.99296875, -0.97890627, -0.96484375, -0.95078123].map(f),
    );
    const near0 = [-7.75e-6, -3.25e-6, -5.5e-7, 0, 5.5e-7, 3.25e-6, 7.75e-6];
    for (const [i, v] of near0.entries())
      expect(Math.abs(DYNAMIC_MAP[124 + i]! - v)).toBeLessThanOrEqual(Math.abs(v) * 2e-7);
    expect(DYNAMIC_MAP[131]).toBeCloseTo(2.125e-5, 10);
    expect(Array.from(DYNAMIC_MAP.slice(252))).toEqual([0.96484375, 0.97890627, 0.99296875, 1.0].map(f));
  });
});

describe("4-bit worked examples (spec 3.3)", () => {
  it("NF4: codes, packed bytes A2 97 C5 8F, dequantized values", () => {
    const { packed, state } = quantize4bitState(SPEC, [8], { quantType: "nf4" });
    expect(Array.from(state.absmax)).toEqual([2]);
    expect(codesOf(packed, 8)).toEqual([10, 2, 9, 7, 12, 5, 8, 15]);
    expect(hex(packed)).toBe("A297C58F");
    const deq = dequantize4bitArray(packed, state);
    const want = [0.492225, -1.050146, 0.32186, 0.0, 0.88142, -0.369547, 0.159161, 2.0];
    for (const [i, v] of deq.entries()) expect(v).toBeCloseTo(want[i]!, 6);
  });

  it("FP4: codes, packed bytes 7D 60 4E 13, dequantized values", () => {
    const { packed, state } = quantize4bitState(SPEC, [8], { quantType: "fp4" });
    expect(codesOf(packed, 8)).toEqual([7, 13, 6, 0, 4, 14, 1, 3]);
    expect(hex(packed)).toBe("7D604E13");
    const deq = dequantize4bitArray(packed, state);
    const want = [0.5, -1.0, 0.333333, 0.0, 0.666667, -0.333333, 0.010417, 2.0];
    for (const [i, v] of deq.entries()) expect(v).toBeCloseTo(want[i]!, 6);
  });

  it("tensor API: packed uint8 [ceil(n/2), 1], dequantize4bit back to the shape", () => {
    const w = tensor(Float32Array.from(SPEC), { shape: [2, 4] });
    const { packed, state } = quantize4bit(w, { quantType: "nf4" });
    expect(packed.dtype).toBe("uint8");
    expect(packed.shape).toEqual([4, 1]);
    expect(hex(packed.dataSync() as Uint8Array)).toBe("A297C58F");
    const d = dequantize4bit(packed, state);
    expect(d.shape).toEqual([2, 4]);
    expect(d.dataSync()[7]).toBe(2);
  });

  it("a value exactly on a boundary takes the lower code (NF4 and FP4)", () => {
    for (let k = 0; k < 15; k++) {
      const t = NF4_THRESHOLDS[k]!;
      const { packed } = quantize4bitState([1, t], [2], { quantType: "nf4" });
      expect(codesOf(packed, 2)[1]).toBe(k);
      const above = quantize4bitState([1, t + Math.abs(t) * 1e-6 + 1e-9], [2], { quantType: "nf4" });
      expect(codesOf(above.packed, 2)[1]).toBe(k + 1);
    }
    // FP4 thresholds as float32: 0.0859375 sits between codes 1 (0.0052) and 6 (0.1667).
    expect(codesOf(quantize4bitState([1, 0.0859375], [2], { quantType: "fp4" }).packed, 2)[1]).toBe(1);
    expect(codesOf(quantize4bitState([1, -0.0859375], [2], { quantType: "fp4" }).packed, 2)[1]).toBe(9);
  });

  it("odd length pads one zero code in the low nibble of the last byte", () => {
    const nf = quantize4bitState([0.5, -1, 0.25], [3], { quantType: "nf4" });
    expect(nf.packed.length).toBe(2);
    expect(nf.packed[1]! & 15).toBe(7); // NF4's zero
    const fp = quantize4bitState([0.5, -1, 0.25], [3], { quantType: "fp4" });
    expect(fp.packed[1]! & 15).toBe(0); // FP4's zero
    expect(Array.from(dequantize4bitArray(nf.packed, nf.state)).length).toBe(3);
  });

  it("a partial last block has its own absmax", () => {
    const data = new Float32Array(70).fill(0.5);
    data[3] = 4;
    data[66] = -8;
    const { packed, state } = quantize4bitState(data, [70], { quantType: "nf4", blocksize: 64 });
    expect(Array.from(state.absmax)).toEqual([4, 8]);
    const d = dequantize4bitArray(packed, state);
    expect(d[66]).toBe(-8);
    expect(d[3]).toBe(4);
    expect(d[65]).toBe(Math.fround(NF4_CODE[8]! * 8)); // 0.5 / 8 = 0.0625 -> nearest NF4 value 0.0796
  });

  it("an all-zero block dequantizes to zeros (reciprocal clamped at 1e-38)", () => {
    const { packed, state } = quantize4bitState(new Float32Array(64), [64], { quantType: "nf4" });
    expect(Array.from(dequantize4bitArray(packed, state)).every((v) => v === 0)).toBe(true);
  });

  it("blocksizes outside bitsandbytes' set and bad quant types are errors", () => {
    expect(() => quantize4bitState([1, 2], [2], { blocksize: 48 })).toThrow(/blocksize 48 is not supported/);
    expect(() => quantize4bitState([1, 2], [2], { quantType: "int4" as never })).toThrow(/"nf4" or "fp4"/);
    expect(() => quantize4bitState([1, 2, 3], [2], {})).toThrow(/do not fill shape/);
    expect(() => quantize4bit(tensor([1, 2], { dtype: "int32" }))).toThrow(/floating-point/);
  });
});

describe("double quantization (spec 3.4)", () => {
  it("worked example: offset 0.9375, codes [41, 176, 25, 255], reconstructed absmax", () => {
    const f = Math.fround;
    const offset = f((0.5 + 1 + 0.25 + 2) / 4);
    expect(offset).toBe(0.9375);
    const centered = [0.5, 1, 0.25, 2].map((v) => f(v - offset));
    const { q, state } = quantizeBlockwiseArray(centered, 256);
    expect(Array.from(q)).toEqual([41, 176, 25, 255]);
    expect(Array.from(state.absmax)).toEqual([1.0625]);
    // The same through quantize4bit: four blocks with those absmax values.
    const data = new Float32Array(256);
    [0.5, 1, 0.25, 2].forEach((m, b) => {
      data[b * 64] = m;
    });
    const dq = quantize4bitState(data, [4, 64], { quantType: "nf4", compressStatistics: true });
    expect(Array.from(dq.state.absmax)).toEqual([41, 176, 25, 255]);
    expect(dq.state.nested!.offset).toBe(0.9375);
    const rec = absmaxOf(dq.state);
    for (const [i, v] of [0.495068, 1.00042, 0.256006, 2.0].entries()) expect(rec[i]).toBeCloseTo(v, 6);
  });

  it("bits per parameter follow 4 + 32/64 and 4 + 8/64 + 32/(64*256) (spec 3.6)", () => {
    const n = 64 * 256 * 4;
    const data = new Float32Array(n).map((_, i) => Math.sin(i));
    const plain = quantize4bitState(data, [256, 256], { quantType: "nf4" });
    const bitsPlain = ((plain.packed.byteLength + plain.state.absmax.byteLength) * 8) / n;
    expect(bitsPlain).toBe(4.5);
    const dq = quantize4bitState(data, [256, 256], { quantType: "nf4", compressStatistics: true });
    const nested = dq.state.nested!;
    const bitsDq = ((dq.packed.byteLength + dq.state.absmax.byteLength + nested.absmax.byteLength) * 8) / n;
    expect(bitsDq).toBeCloseTo(4 + 8 / 64 + 32 / (64 * 256), 10);
    expect(bitsDq).toBeLessThan(4.13);
  });

  it("ties between dynamic-map codes go to the even index", () => {
    const m = DYNAMIC_MAP;
    for (const i of [3, 100, 128, 200, 253]) {
      const mid = Math.fround(Math.fround(m[i]! + m[i + 1]!) * 0.5);
      const { q } = quantizeBlockwiseArray([1, mid], 256);
      expect(q[1]! % 2).toBe(0);
      expect([i, i + 1]).toContain(q[1]);
    }
  });
});

describe("NF4 round trip on normal weights", () => {
  it("error stays within a quantization step: mean |err| / absmax about 3-4%, max below half the widest gap", () => {
    manualSeed(0);
    const w = randn([256, 256]).mul(0.02);
    const data = w.dataSync() as Float32Array;
    for (const dq of [false, true]) {
      const { packed, state } = quantize4bitState(data, [256, 256], {
        quantType: "nf4",
        compressStatistics: dq,
      });
      const back = dequantize4bitArray(packed, state);
      const absmax = absmaxOf(state);
      let sumRel = 0;
      let maxRel = 0;
      for (let i = 0; i < data.length; i++) {
        const rel = Math.abs(back[i]! - data[i]!) / absmax[Math.floor(i / 64)]!;
        sumRel += rel;
        maxRel = Math.max(maxRel, rel);
      }
      const meanRel = sumRel / data.length;
      expect(meanRel).toBeGreaterThan(0.02);
      expect(meanRel).toBeLessThan(0.05);
      // The widest NF4 gap is -0.6961928 - (-1) = 0.3038; nearest rounding errs at most half of it (+ DQ error).
      expect(maxRel).toBeLessThan(dq ? 0.17 : 0.152);
      // Relative RMS error against the weights themselves, the usual summary (~0.1 for NF4).
      let se = 0;
      let sw = 0;
      for (let i = 0; i < data.length; i++) {
        se += (back[i]! - data[i]!) ** 2;
        sw += data[i]! ** 2;
      }
      expect(Math.sqrt(se / sw)).toBeLessThan(0.12);
    }
  });
});

describe("quant state JSON (spec 3.7)", () => {
  it("Python json.dumps form and float repr", () => {
    expect(pythonFloatRepr(0.9375)).toBe("0.9375");
    expect(pythonFloatRepr(2)).toBe("2.0");
    expect(pythonFloatRepr(1e-5)).toBe("1e-05");
    expect(pythonFloatRepr(Math.fround(0.1))).toBe("0.10000000149011612");
    expect(pythonFloatRepr(1.5e16)).toBe("1.5e+16");
    expect(pythonFloatRepr(123.25)).toBe("123.25");
    expect(pythonFloatRepr(0.0001)).toBe("0.0001");
    const data = new Float32Array(256).map((_, i) => (i % 7) - 3);
    const { state } = quantize4bitState(data, [4, 64], { quantType: "nf4", compressStatistics: true });
    const json = quantStateJson(state);
    expect(json).toBe(
      '{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [4, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 3.0}',
    );
    const parsed = parseQuantStateJson(new TextEncoder().encode(json), "nf4", "t");
    expect(parsed.shape).toEqual([4, 64]);
    expect(parsed.nested).toEqual({ blocksize: 256, offset: 3 });
  });

  it("corrupted quant states are clear errors", () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(() => parseQuantStateJson(enc('{"quant_type": "nf4", "blocks'), "nf4", "L")).toThrow(
      /corrupted 4-bit quant state: the quant_state bytes are not UTF-8 JSON/,
    );
    expect(() =>
      parseQuantStateJson(
        enc('{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [4]}'),
        "nf4",
        "L",
      ),
    ).toThrow(/shape \[4\] is not \[out, in\]/);
    expect(() =>
      parseQuantStateJson(
        enc('{"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [4, 4]}'),
        "nf4",
        "L",
      ),
    ).toThrow(/does not match the key suffix/);
    expect(() =>
      parseQuantStateJson(
        enc('{"quant_type": "nf4", "blocksize": 63, "dtype": "float32", "shape": [4, 4]}'),
        "nf4",
        "L",
      ),
    ).toThrow(/blocksize 63/);
    const { packed, state } = quantize4bitState(new Float32Array(128).fill(1), [2, 64], {});
    expect(() => dequantize4bitArray(packed.subarray(0, 10), state)).toThrow(/10 packed bytes, expected 64/);
  });
});

describe("8-bit", () => {
  it("quantize8bit / dequantize8bit: dynamic map, per-block absmax", () => {
    const x = tensor([0.5, -1, 0.25, 0.0, 2], { shape: [5] });
    const { q, state } = quantize8bit(x, { blocksize: 256 });
    expect(q.dtype).toBe("uint8");
    expect(Array.from(state.absmax)).toEqual([2]);
    const back = dequantize8bit(q, state).dataSync();
    expect(back[4]).toBe(2);
    expect(back[3]).toBe(0);
    expect(Math.abs(back[0]! - 0.5)).toBeLessThan(0.01);
  });

  it("LLM.int8 weight quantization: row absmax, round half to even", () => {
    const { CB, SCB } = int8VectorwiseQuant([127, 0.5, -63.5, 1, 0, 0], 2, 3);
    expect(Array.from(SCB)).toEqual([127, 1]);
    expect(Array.from(CB)).toEqual([127, 0, -64, 127, 0, 0]); // 0.5 -> 0, -63.5 -> -64 (even)
  });

  it("config: conflicting options and bad values name the fields", () => {
    expect(() => new BitsAndBytesConfig({ load_in_4bit: true, load_in_8bit: true })).toThrow(
      /load_in_4bit and load_in_8bit are both true/,
    );
    expect(
      () => new BitsAndBytesConfig({ load_in_4bit: true, bnb_4bit_compute_dtype: "auto" as never }),
    ).toThrow(/bnb_4bit_compute_dtype "auto".*not a dtype/);
    expect(() => new BitsAndBytesConfig({ bnb_4bit_quant_type: "int4" as never })).toThrow(
      /bnb_4bit_quant_type/,
    );
    expect(() => new BitsAndBytesConfig({ load_in_4bits: true } as never)).toThrow(
      /unknown field\(s\) load_in_4bits/,
    );
    const c = new BitsAndBytesConfig({
      load_in_4bit: true,
      bnb_4bit_compute_dtype: "torch.bfloat16" as never,
    });
    expect(c.bnb_4bit_quant_type).toBe("fp4");
    expect(c.bnb_4bit_compute_dtype).toBe("bfloat16");
    expect(c.llm_int8_threshold).toBe(6);
    expect(c.bnb_4bit_quant_storage).toBe("uint8");
    expect(c.skips("lm_head")).toBe(true);
    expect(c.skips("model.layers.0.mlp.down_proj")).toBe(false);
    const s = new BitsAndBytesConfig({ load_in_8bit: true, llm_int8_skip_modules: ["down_proj"] });
    expect(s.skips("model.layers.0.mlp.down_proj")).toBe(true);
    expect(BitsAndBytesConfig.fromDict(c.toDict()).toDict()).toEqual(c.toDict());
  });
});

describe("goldens from scripts/gen-fixtures/quant.py (numpy/torch, following the spec)", () => {
  let reader: SafetensorsReader;
  const manifest = JSON.parse(readFileSync(`${FIX}manifest.json`, "utf8")) as {
    cases: { name: string; kind: string; quant_type?: "nf4" | "fp4"; blocksize?: number; shape: number[] }[];
  };
  beforeAll(async () => {
    reader = await openSafetensors(`${FIX}quant.safetensors`);
  });
  afterAll(async () => {
    await reader.close();
  });
  const arr = async (k: string) => (await reader.tensor(k)).dataSync();

  it("dynamic map equals torch's create_dynamic_map", async () => {
    expect(Array.from(await arr("dynamic_map"))).toEqual(Array.from(DYNAMIC_MAP));
  });

  for (const c of manifest.cases.filter((c) => c.kind === "4bit")) {
    it(`4-bit ${c.name}: packed bytes, absmax, dequantized values, double quant`, async () => {
      const input = await arr(`${c.name}.input`);
      const plain = quantize4bitState(input, c.shape, { quantType: c.quant_type, blocksize: c.blocksize });
      expect(hex(plain.packed)).toBe(hex((await arr(`${c.name}.packed`)) as Uint8Array));
      expect(Array.from(plain.state.absmax)).toEqual(Array.from(await arr(`${c.name}.absmax`)));
      expect(Array.from(dequantize4bitArray(plain.packed, plain.state))).toEqual(
        Array.from(await arr(`${c.name}.dequant`)),
      );
      const dq = quantize4bitState(input, c.shape, {
        quantType: c.quant_type,
        blocksize: c.blocksize,
        compressStatistics: true,
      });
      expect(hex(dq.packed)).toBe(hex(plain.packed));
      expect(Array.from(dq.state.absmax)).toEqual(Array.from(await arr(`${c.name}.dq_absmax`)));
      expect(Array.from(dq.state.nested!.absmax)).toEqual(Array.from(await arr(`${c.name}.dq_absmax2`)));
      expect(dq.state.nested!.offset).toBe((await arr(`${c.name}.dq_offset`))[0]);
      expect(Array.from(dequantize4bitArray(dq.packed, dq.state))).toEqual(
        Array.from(await arr(`${c.name}.dq_dequant`)),
      );
    });
  }

  it("8-bit blockwise (dynamic map, blocks of 256, a partial block)", async () => {
    const input = await arr("blockwise8.input");
    const { q, state } = quantizeBlockwiseArray(input, 256);
    expect(Array.from(q)).toEqual(Array.from(await arr("blockwise8.q")));
    expect(Array.from(state.absmax)).toEqual(Array.from(await arr("blockwise8.absmax")));
    const back = dequantize8bit(tensor(q, { dtype: "uint8" }), state).dataSync();
    expect(Array.from(back)).toEqual(Array.from(await arr("blockwise8.dequant")));
  });

  it("LLM.int8 vector-wise weight quantization", async () => {
    const input = await arr("int8.input");
    const { CB, SCB } = int8VectorwiseQuant(input, 8, 16);
    expect(Array.from(CB)).toEqual(Array.from(await arr("int8.CB")));
    expect(Array.from(SCB)).toEqual(Array.from(await arr("int8.SCB")));
  });
});
