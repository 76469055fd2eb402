// Module trees and Parameters: checkpoint-key naming, state dicts, freezing, modes, submodule surgery.

import { Embedding, Linear, Module, Parameter, RMSNorm } from "@tsgrad/nn";
import { manualSeed, noGrad, randn, type Tensor, tensor, tidy, zeros } from "@tsgrad/tensor";
import { describe, expect, it } from "vitest";

class Block extends Module {
  proj: Linear;
  norm: RMSNorm;
  _cache: Tensor | null = null; // hidden: "_" fields are never walked
  constructor() {
    super();
    this.proj = new Linear(4, 3);
    this.norm = new RMSNorm(3);
  }
}

class Net extends Module {
  embed: Embedding;
  layers: Block[];
  head: Linear;
  scale: Parameter;
  config = { hidden: 4 }; // plain objects are not walked either
  constructor() {
    super();
    this.embed = new Embedding(10, 4);
    this.layers = [new Block(), new Block()];
    this.head = new Linear(3, 10, { bias: false });
    this.scale = new Parameter(tensor([1.5]));
  }
}

describe("Parameter", () => {
  it("requires grad by default, survives tidy, and wraps a copy of a strided view", () => {
    const p = tidy(() => new Parameter(randn([2, 3]).mT));
    expect(p.isDisposed).toBe(false);
    expect(p.requiresGrad).toBe(true);
    expect(p.shape).toEqual([3, 2]);
    expect(p.isContiguous).toBe(true);
    expect(new Parameter(zeros([2]), false).requiresGrad).toBe(false);
    expect(new Parameter(tensor([1, 2], { dtype: "int32" })).requiresGrad).toBe(false);
  });

  it("assign swaps in new data of the same shape, cast to its dtype, and bumps version", () => {
    const p = new Parameter(zeros([2, 2]));
    const src = tensor([
      [1, 2],
      [3, 4],
    ]);
    tidy(() => p.assign(src.mT)); // a strided view, inside a scope that disposes its temporaries
    expect(p.tolistSync()).toEqual([
      [1, 3],
      [2, 4],
    ]);
    expect(p.dtype).toBe("float32");
    expect(p.version).toBe(1);
    expect(() => p.assign(zeros([4]))).toThrow(/expected shape \[2, 2\], got \[4\]/);
  });

  it("gets gradients as a leaf and keeps them across tidy", () => {
    const p = new Parameter(tensor([2, 3], { dtype: "float32" }));
    tidy(() => {
      p.mul(p).sum().backward(); // d(p^2) = 2p
    });
    expect(p.grad!.tolistSync()).toEqual([4, 6]);
  });
});

describe("Module", () => {
  it("names parameters by field path, arrays as .i, skipping _ fields and plain objects", () => {
    const net = new Net();
    expect([...net.namedParameters()].map(([k, p]) => [k, p.shape])).toEqual([
      ["embed.weight", [10, 4]],
      ["layers.0.proj.weight", [3, 4]],
      ["layers.0.proj.bias", [3]],
      ["layers.0.norm.weight", [3]],
      ["layers.1.proj.weight", [3, 4]],
      ["layers.1.proj.bias", [3]],
      ["layers.1.norm.weight", [3]],
      ["head.weight", [10, 3]],
      ["scale", [1]],
    ]);
    expect([...net.namedModules()].map(([k]) => k)).toEqual([
      "",
      "embed",
      "layers.0",
      "layers.0.proj",
      "layers.0.norm",
      "layers.1",
      "layers.1.proj",
      "layers.1.norm",
      "head",
    ]);
    expect(net.numParameters()).toBe(40 + 2 * (12 + 3 + 3) + 30 + 1);
  });

  it("freezes by requiresGrad and counts trainable parameters", () => {
    const net = new Net().freeze();
    expect(net.numParameters({ trainableOnly: true })).toBe(0);
    net.unfreeze({ keys: ["head.weight"] });
    expect([...net.trainableParameters().keys()]).toEqual(["head.weight"]);
    expect(net.numParameters({ trainableOnly: true })).toBe(30);
  });

  it("train() and eval() set the flag on every module", () => {
    const net = new Net().eval();
    expect([...net.namedModules()].every(([, m]) => !m.training)).toBe(true);
    net.train();
    expect(net.layers[1]!.norm.training).toBe(true);
  });

  it("loadStateDict(stateDict()) round-trips, into a fresh copy", () => {
    manualSeed(1);
    const a = new Net();
    manualSeed(2);
    const b = new Net();
    expect(b.head.weight.tolistSync()).not.toEqual(a.head.weight.tolistSync());
    const sd = new Map([...a.stateDict()].map(([k, t]) => [k, noGrad(() => t.clone())]));
    const r = b.loadStateDict(sd);
    expect(r).toEqual({ missingKeys: [], unexpectedKeys: [] });
    for (const [k, t] of a.stateDict()) expect(b.stateDict().get(k)!.tolistSync()).toEqual(t.tolistSync());
    // the round trip loaded copies: changing a does not change b
    a.head.weight.assign(zeros([10, 3]));
    expect(b.head.weight.tolistSync()).not.toEqual(a.head.weight.tolistSync());
  });

  it("loadStateDict lists missing, unexpected and mis-shaped keys in one error", () => {
    const net = new Net();
    const sd = Object.fromEntries(net.stateDict());
    delete sd.scale;
    sd["extra.weight"] = zeros([1]);
    sd["head.weight"] = zeros([3, 10]);
    let message = "";
    try {
      net.loadStateDict(sd);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/mis-shaped keys: head\.weight: got \[3, 10\], expected \[10, 3\]/);
    expect(message).toMatch(/missing keys: scale/);
    expect(message).toMatch(/unexpected keys: extra\.weight/);
    // non-strict still rejects shapes, but tolerates missing and unexpected keys
    sd["head.weight"] = zeros([10, 3]);
    expect(net.loadStateDict(sd, { strict: false })).toEqual({
      missingKeys: ["scale"],
      unexpectedKeys: ["extra.weight"],
    });
    expect(net.head.weight.tolistSync()).toEqual(zeros([10, 3]).tolistSync());
  });

  it("getSubmodule and setSubmodule replace a child by path, in arrays too", () => {
    const net = new Net();
    const replacement = new Linear(4, 3, { bias: false });
    net.setSubmodule("layers.1.proj", replacement);
    expect(net.getSubmodule("layers.1.proj")).toBe(replacement);
    expect([...net.namedParameters()].map(([k]) => k)).not.toContain("layers.1.proj.bias");
    const block = new Block();
    net.setSubmodule("layers.0", block);
    expect(net.layers[0]).toBe(block);
    expect(() => net.getSubmodule("layers.7")).toThrow(/no module at "layers.7"/);
    expect(() => net.setSubmodule("nope", block)).toThrow(/does not name an existing module/);
    expect(() => net.setSubmodule("scale", block)).toThrow(/does not name an existing module/);
  });
});
