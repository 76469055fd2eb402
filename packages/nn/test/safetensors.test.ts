import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  openSafetensors,
  SafetensorsFile,
  ShardedSafetensors,
  saveSafetensors,
  saveShardedSafetensors,
} from "@tsgrad/nn";
import {
  bfloat16BitsToFloat32,
  type DType,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  type Tensor,
  tensor,
} from "@tsgrad/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const FIXTURES = new URL("../../../fixtures/safetensors/", import.meta.url).pathname;
const fixture = (name: string) => join(FIXTURES, name);

interface Decoded {
  dtype: string;
  shape: number[];
  values: (number | string)[];
}
const VALUES = JSON.parse(await readFile(fixture("values.json"), "utf8")) as {
  src_f32_bits: number[];
  all_dtypes: Record<string, Decoded>;
  golden: Record<string, Decoded>;
  bf16_decoded: (number | string)[];
  f16_decoded: (number | string)[];
};
const num = (v: number | string) =>
  v === "nan"
    ? Number.NaN
    : v === "inf"
      ? Number.POSITIVE_INFINITY
      : v === "-inf"
        ? -Infinity
        : (v as number);
const SRC = new Float32Array(new Uint32Array(VALUES.src_f32_bits).buffer);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tsgrad-safetensors-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function withFile<T>(path: string, f: (st: SafetensorsFile) => Promise<T>): Promise<T> {
  const st = await SafetensorsFile.open(path);
  try {
    return await f(st);
  } finally {
    await st.close();
  }
}

/** Values as plain numbers, so NaN and -0 compare exactly with toEqual. */
const list = (t: Tensor) => Array.from(t.dataSync(), Number);

/** Rebuilds a file after editing its header text (and optionally its data); lengths are recomputed. */
function rebuild(
  bytes: Uint8Array,
  editHeader: (h: string) => string,
  editData = (d: Uint8Array) => d,
): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = Buffer.from(editHeader(Buffer.from(bytes.subarray(8, 8 + n)).toString("utf8")), "utf8");
  const data = editData(bytes.subarray(8 + n));
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

describe("reading the reference fixtures", () => {
  it("decodes every dtype to its natural tsgrad dtype with torch's values", async () => {
    const natural: Record<string, DType> = {
      F64: "float64",
      F32: "float32",
      F16: "float32",
      BF16: "float32",
      I64: "int32",
      I32: "int32",
      I16: "int32",
      I8: "int32",
      U8: "uint8",
      BOOL: "bool",
    };
    await withFile(fixture("all-dtypes.safetensors"), async (st) => {
      expect(st.metadata).toEqual({ format: "pt" });
      expect(st.keys()).toEqual(Object.keys(VALUES.all_dtypes).sort());
      for (const [name, want] of Object.entries(VALUES.all_dtypes)) {
        expect(st.has(name)).toBe(true);
        expect(st.info(name).dtype).toBe(want.dtype);
        expect(st.info(name).shape).toEqual(want.shape);
        const t = await st.tensor(name);
        expect(t.dtype, name).toBe(natural[want.dtype]);
        expect(t.shape, name).toEqual(want.shape);
        expect(list(t), name).toEqual(want.values.map(num));
      }
    });
  });

  it("reads the golden file and the BF16/F16 files with torch's decoded values", async () => {
    await withFile(fixture("golden.safetensors"), async (st) => {
      expect(st.keys()).toEqual(["Z.ids", "a", "b.weight", "empty", "flags", "mask", "scale", "\u00e9.bias"]);
      const scale = await st.tensor("scale");
      expect(scale.shape).toEqual([]);
      expect(scale.itemSync()).toBe(0.5);
      expect((await st.tensor("empty")).shape).toEqual([0, 3]);
      expect(list(await st.tensor("a"))).toEqual(VALUES.golden.a!.values.map(num));
    });
    for (const [file, want] of [
      ["golden-bf16.safetensors", VALUES.bf16_decoded],
      ["golden-f16.safetensors", VALUES.f16_decoded],
    ] as const) {
      await withFile(fixture(file), async (st) => {
        expect(st.metadata).toBeNull();
        expect(list(await st.tensor("x"))).toEqual(want.map(num));
        const y = await st.tensor("y", { dtype: "float64" });
        expect(y.dtype).toBe("float64");
        expect(list(y)).toEqual(want.slice(0, 6).map(num));
      });
    }
  });

  it("casts on read with opts.dtype and returns the raw stored bytes", async () => {
    await withFile(fixture("all-dtypes.safetensors"), async (st) => {
      const i = await st.tensor("i32", { dtype: "float64" });
      expect(i.dtype).toBe("float64");
      expect(list(i)).toEqual([7, -7, 2 ** 31 - 1, -(2 ** 31)]);
      const b = await st.tensor("u8", { dtype: "bool" });
      expect(list(b)).toEqual([0, 1, 1, 1]);
      const raw = await st.raw("i16");
      expect(Array.from(new Int16Array(raw.buffer, raw.byteOffset, 3))).toEqual([32767, -32768, 5]);
    });
  });
});

describe("writing", () => {
  it("is byte-identical to the reference writer for tsgrad's default dtypes", async () => {
    const g = VALUES.golden;
    const vals = (k: string) => g[k]!.values.map(num);
    const tensors: Record<string, Tensor> = {
      "b.weight": tensor(Float32Array.from(vals("b.weight")), { shape: [2, 3] }),
      a: tensor(Float64Array.from(vals("a")), { shape: [3] }),
      "Z.ids": tensor(Int32Array.from(vals("Z.ids")), { shape: [2, 2] }),
      mask: tensor(Uint8Array.from(vals("mask")), { shape: [5] }),
      flags: tensor(Uint8Array.from(vals("flags")), { shape: [4], dtype: "bool" }),
      scale: tensor(new Float32Array([0.5]), { shape: [] }),
      empty: tensor(new Float32Array(0), { shape: [0, 3] }),
      "\u00e9.bias": tensor(new Float32Array([-3, 4]), { shape: [2] }),
    };
    const out = join(dir, "golden.safetensors");
    await saveSafetensors(out, tensors, { metadata: { format: "pt" } });
    expect(Buffer.compare(await readFile(out), await readFile(fixture("golden.safetensors")))).toBe(0);
    // Insertion order must not matter: the writer sorts.
    const reversed = new Map(Object.entries(tensors).reverse());
    await saveSafetensors(out, reversed, { metadata: { format: "pt" } });
    expect(Buffer.compare(await readFile(out), await readFile(fixture("golden.safetensors")))).toBe(0);
  });

  it("rounds to BF16 and F16 exactly as torch does, byte for byte", async () => {
    for (const [dtype, file] of [
      ["BF16", "golden-bf16.safetensors"],
      ["F16", "golden-f16.safetensors"],
    ] as const) {
      const out = join(dir, file);
      const x = tensor(SRC, { shape: [SRC.length] });
      const y = tensor(SRC.slice(0, 6), { shape: [2, 3] });
      await saveSafetensors(out, { y, x }, { dtype });
      expect(Buffer.compare(await readFile(out), await readFile(fixture(file))), dtype).toBe(0);
    }
  });

  it("round-trips every writable dtype, with metadata", async () => {
    const src = SRC.slice(0, 28);
    const tensors = {
      f32: tensor(src, { shape: [4, 7] }),
      f64: tensor(Float64Array.from([Math.PI, -1e-300, 1e300, Number.NaN]), { shape: [2, 2] }),
      i32: tensor(Int32Array.from([2 ** 31 - 1, -(2 ** 31), 0]), { shape: [3] }),
      u8: tensor(Uint8Array.from([0, 128, 255]), { shape: [3, 1] }),
      bool: tensor(Uint8Array.from([1, 0, 0, 1]), { shape: [2, 2], dtype: "bool" }),
    };
    const path = join(dir, "roundtrip.safetensors");
    const metadata = { format: "pt", note: 'caf\u00e9 \u2603 "quoted"\n' };
    await saveSafetensors(path, tensors, { metadata });
    await withFile(path, async (st) => {
      expect(st.metadata).toEqual(metadata);
      expect(st.info("f64").dtype).toBe("F64");
      expect(st.info("bool").dtype).toBe("BOOL");
      for (const [k, t] of Object.entries(tensors)) {
        const back = await st.tensor(k);
        expect(back.dtype, k).toBe(t.dtype);
        expect(back.shape, k).toEqual(t.shape);
        expect(list(back), k).toEqual(list(t));
      }
    });
    // 16-bit storage: read back as the rounded float32 values.
    for (const [dtype, round] of [
      ["BF16", (a: Float32Array) => bfloat16BitsToFloat32(float32ToBfloat16Bits(a))],
      ["F16", (a: Float32Array) => float16BitsToFloat32(float32ToFloat16Bits(a))],
    ] as const) {
      await saveSafetensors(path, { w: tensors.f32, d: tensors.f64, i: tensors.i32 }, { dtype });
      await withFile(path, async (st) => {
        expect(st.metadata).toBeNull();
        expect(st.info("w").dtype).toBe(dtype);
        expect(st.info("d").dtype).toBe(dtype);
        expect(st.info("i").dtype).toBe("I32");
        const w = await st.tensor("w");
        expect(w.dtype).toBe("float32");
        expect(list(w)).toEqual(Array.from(round(src), Number));
        expect(list(w)).not.toEqual(Array.from(src, Number));
      });
    }
    await saveSafetensors(path, {}, { metadata: {} });
    await withFile(path, async (st) => {
      expect(st.keys()).toEqual([]);
      expect(st.metadata).toEqual({});
    });
  });

  it("writes atomically: no temporary files remain, and a failed write leaves nothing", async () => {
    const sub = join(dir, "atomic");
    await saveShardedSafetensors(sub, { a: tensor(new Float32Array([1])) });
    const t = tensor(new Float32Array([1, 2]));
    t.dispose();
    const bad = join(sub, "bad.safetensors");
    await expect(saveSafetensors(bad, { t })).rejects.toThrow(/"t" was disposed/);
    await expect(saveSafetensors(bad, { __metadata__: tensor([1]) })).rejects.toThrow(/reserved/);
    expect(await readdir(sub)).toEqual(["model.safetensors"]);
  });
});

describe("I64", () => {
  const i64File = async (values: bigint[]) => {
    const header = JSON.stringify({
      ids: { dtype: "I64", shape: [values.length], data_offsets: [0, 8 * values.length] },
    });
    const data = new Uint8Array(BigInt64Array.from(values).buffer);
    const path = join(dir, "i64.safetensors");
    await writeFile(
      path,
      rebuild(
        new Uint8Array(16),
        () => header,
        () => data,
      ),
    );
    return path;
  };

  it("reads int32-range values and refuses others, naming the value", async () => {
    await withFile(await i64File([5n, -(2n ** 31n)]), async (st) => {
      expect(list(await st.tensor("ids"))).toEqual([5, -(2 ** 31)]);
    });
    await withFile(await i64File([1n, 2n ** 31n]), async (st) => {
      await expect(st.tensor("ids")).rejects.toThrow(
        /I64 value 2147483648 at flat index 1 does not fit in int32/,
      );
      expect(list(await st.tensor("ids", { dtype: "float64" }))).toEqual([1, 2 ** 31]);
    });
    await withFile(await i64File([-(2n ** 40n)]), async (st) => {
      await expect(st.tensor("ids")).rejects.toThrow(/i64\.safetensors.*-1099511627776/);
    });
  });
});

describe("sharded checkpoints", () => {
  const make = () => ({
    "model.embed_tokens.weight": tensor(SRC.slice(0, 24), { shape: [6, 4] }), // 96 bytes
    "model.layers.0.mlp.up_proj.weight": tensor(SRC.slice(24, 40), { shape: [4, 4] }), // 64
    "model.layers.0.input_layernorm.weight": tensor(SRC.slice(40, 44), { shape: [4] }), // 16
    "model.norm.weight": tensor(SRC.slice(43, 47), { shape: [4] }), // 16
  });

  it("splits like transformers and reads back through the index", async () => {
    const out = join(dir, "sharded");
    const tensors = make();
    const files = await saveShardedSafetensors(out, tensors, { maxShardSize: 100, metadata: { note: "x" } });
    // 96 | 64+16 | 16 would pass 100 only for 64+16+16 = 96 <= 100, so the last two join the second shard.
    expect(files).toEqual([
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
    ]);
    const index = JSON.parse(await readFile(join(out, "model.safetensors.index.json"), "utf8"));
    expect(index).toEqual({
      metadata: { total_size: 192 },
      weight_map: {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.layers.0.input_layernorm.weight": "model-00002-of-00002.safetensors",
        "model.layers.0.mlp.up_proj.weight": "model-00002-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors",
      },
    });
    const r = await openSafetensors(out);
    try {
      expect(r).toBeInstanceOf(ShardedSafetensors);
      expect(r.metadata).toEqual({ format: "pt", note: "x" });
      expect((r as ShardedSafetensors).indexMetadata).toEqual({ total_size: 192 });
      expect(r.keys()).toEqual(Object.keys(tensors).sort());
      for (const [k, t] of Object.entries(tensors)) expect(list(await r.tensor(k)), k).toEqual(list(t));
      expect(r.info("model.norm.weight").shape).toEqual([4]);
      await expect(r.tensor("lm_head.weight")).rejects.toThrow(
        /no tensor named "lm_head.weight"; available:/,
      );
    } finally {
      await r.close();
    }
    // A tensor larger than the limit gets its own shard.
    await saveShardedSafetensors(out, tensors, { maxShardSize: "80B" });
    const idx = JSON.parse(await readFile(join(out, "model.safetensors.index.json"), "utf8"));
    expect(new Set(Object.values(idx.weight_map)).size).toBe(3);
    expect((await readdir(out)).filter((f) => f.startsWith("model-")).sort()).toEqual([
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
    ]);
    // Saving again in one file removes the stale shards and index.
    expect(await saveShardedSafetensors(out, tensors)).toEqual(["model.safetensors"]);
    expect((await readdir(out)).sort()).toEqual(["model.safetensors"]);
    const single = await openSafetensors(out);
    expect(single).toBeInstanceOf(SafetensorsFile);
    expect(single.metadata).toEqual({ format: "pt" });
    expect(list(await single.tensor("model.norm.weight"))).toEqual(list(tensors["model.norm.weight"]));
    await single.close();
  });

  it("reports a weight_map that points at the wrong shard, and an empty directory", async () => {
    const out = join(dir, "bad-index");
    await saveShardedSafetensors(out, make(), { maxShardSize: 100 });
    const path = join(out, "model.safetensors.index.json");
    const original = await readFile(path, "utf8");
    const index = JSON.parse(original);
    index.weight_map["model.norm.weight"] = "model-00001-of-00002.safetensors";
    await writeFile(path, JSON.stringify(index));
    await expect(openSafetensors(out)).rejects.toThrow(
      /weight_map puts "model.norm.weight" in model-00001-of-00002.safetensors, which has no such tensor/,
    );
    await writeFile(path, original);
    await rm(join(out, "model-00002-of-00002.safetensors"));
    await expect(openSafetensors(out)).rejects.toThrow(
      /weight_map names model-00002-of-00002.safetensors, which does not exist/,
    );
    await writeFile(path, JSON.stringify({ metadata: {} }));
    await expect(openSafetensors(path)).rejects.toThrow(/no "weight_map"/);
    const empty = join(dir, "empty-dir");
    await saveShardedSafetensors(empty, {});
    await rm(join(empty, "model.safetensors"));
    await expect(openSafetensors(empty)).rejects.toThrow(
      /neither model.safetensors nor model.safetensors.index.json/,
    );
    await expect(openSafetensors(join(dir, "nope"))).rejects.toThrow(/no such file or directory/);
  });
});

describe("validation of corrupted files", () => {
  let good: Uint8Array;
  beforeAll(async () => {
    good = new Uint8Array(await readFile(fixture("golden.safetensors")));
  });
  let n = 0;
  const expectBad = async (bytes: Uint8Array, message: RegExp) => {
    const path = join(dir, `bad-${n++}.safetensors`);
    await writeFile(path, bytes);
    const err = await SafetensorsFile.open(path).then(
      () => null,
      (e: Error) => e,
    );
    expect(err, String(message)).toBeInstanceOf(Error);
    expect(err!.message).toContain(path);
    expect(err!.message).toMatch(message);
  };

  it("a file shorter than 8 bytes", async () => {
    await expectBad(good.subarray(0, 5), /5 bytes, shorter than the 8-byte header length/);
    await expectBad(new Uint8Array(0), /0 bytes/);
  });

  it("a header length that is absurd or runs past the file", async () => {
    const huge = good.slice();
    new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
    await expectBad(huge, /exceeds the 100000000-byte limit/);
    const past = good.slice();
    new DataView(past.buffer).setBigUint64(0, BigInt(good.length), true);
    await expectBad(past, /runs past the end of the file/);
  });

  it("a truncated data section and trailing bytes", async () => {
    await expectBad(good.subarray(0, good.length - 4), /run past the data section/);
    const longer = new Uint8Array(good.length + 8);
    longer.set(good);
    await expectBad(longer, /trailing bytes are not allowed/);
  });

  it("a header that is not JSON, not UTF-8, or not an object", async () => {
    const garbled = good.slice();
    garbled[8] = "X".charCodeAt(0);
    await expectBad(garbled, /header is not valid JSON/);
    const badUtf8 = good.slice();
    badUtf8[12] = 0xff;
    await expectBad(badUtf8, /not valid UTF-8/);
    await expectBad(
      rebuild(
        good,
        () => "[1, 2]",
        () => new Uint8Array(0),
      ),
      /header must be a JSON object, got array/,
    );
    await expectBad(
      rebuild(good, (h) => h.replace('"format":"pt"', '"format":1')),
      /"__metadata__" value for "format" must be a string/,
    );
  });

  it("an unknown dtype and a shape that does not match the span", async () => {
    await expectBad(
      rebuild(good, (h) => h.replace('"dtype":"F64"', '"dtype":"F8_E4M3"')),
      /tensor "a": unknown dtype "F8_E4M3"/,
    );
    await expectBad(
      rebuild(good, (h) => h.replace('"shape":[2,3]', '"shape":[3,3]')),
      /tensor "b.weight": shape \[3, 3\] of F32 needs 36 bytes but data_offsets \[24, 48\] span 24/,
    );
    await expectBad(
      rebuild(good, (h) => h.replace('"shape":[3]', '"shape":[-3]')),
      /non-negative integers/,
    );
    await expectBad(
      rebuild(good, (h) => h.replace('"data_offsets":[0,24]', '"data_offsets":[24,0]')),
      /end before/,
    );
  });

  it("offsets out of range, overlapping, or leaving a gap", async () => {
    await expectBad(
      rebuild(good, (h) => h.replace('"data_offsets":[60,76]', '"data_offsets":[600,616]')),
      /tensor "Z.ids" data_offsets \[600, 616\] run past the data section/,
    );
    await expectBad(
      rebuild(good, (h) => h.replace('"data_offsets":[24,48]', '"data_offsets":[20,44]')),
      /tensor "b.weight" data_offsets \[20, 44\] overlap tensor "a"/,
    );
    await expectBad(
      rebuild(
        good,
        (h) => h.replace('"data_offsets":[0,24]', '"data_offsets":[8,32]'),
        (d) => {
          const out = new Uint8Array(d.length + 8);
          out.set(d, 8);
          return out;
        },
      ),
      /starts at byte 8 but the previous data ends at 0; tensor data must be packed/,
    );
  });

  it("a missing key lists some available keys; reads after close fail", async () => {
    const st = await SafetensorsFile.open(fixture("golden.safetensors"));
    expect(() => st.info("lm_head.weight")).toThrow(
      /golden\.safetensors: no tensor named "lm_head.weight"; available: "Z.ids", "a", "b.weight", "empty", "flags", \.\.\. \(8 in all\)/,
    );
    await expect(st.tensor("missing")).rejects.toThrow(/no tensor named "missing"/);
    await st.close();
    await expect(st.tensor("a")).rejects.toThrow(/read of "a" after close\(\)/);
    expect(existsSync(fixture("golden.safetensors"))).toBe(true);
  });
});
