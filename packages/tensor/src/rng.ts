// The seeded generator behind randn/rand/dropout, so runs reproduce. xoshiro128** (Blackman & Vigna),
// seeded through splitmix32; its whole state can be saved in a checkpoint and restored.

export interface RngState {
  s: [number, number, number, number];
  spare: number | null;
}

let s = new Uint32Array(4);
let spare: number | null = null;

function splitmix32(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** Seeds the global generator, like torch.manual_seed. */
export function manualSeed(seed: number): void {
  const next = splitmix32(seed);
  s = new Uint32Array([next(), next(), next(), next()]);
  if (s.every((v) => v === 0)) s[0] = 1;
  spare = null;
}

// Like PyTorch's default generator, start from a fixed seed, so a program that never calls manualSeed
// still repeats itself run to run (torch's default_rng_seed_val is 67280421310721; its low 32 bits here).
manualSeed(67280421310721 % 2 ** 32);

function nextU32(): number {
  const r = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
  const t = s[1]! << 9;
  s[2]! ^= s[0]!;
  s[3]! ^= s[1]!;
  s[1]! ^= s[2]!;
  s[0]! ^= s[3]!;
  s[2]! ^= t;
  s[3] = rotl(s[3]!, 11);
  return r;
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Uniform in [0, 1) with 53 random bits. */
export function randomUniform(): number {
  const hi = nextU32() >>> 5;
  const lo = nextU32() >>> 6;
  return (hi * 67108864 + lo) / 9007199254740992;
}

/** Standard normal by the Box-Muller transform (the spare value is kept, and saved with the state). */
export function randomNormal(): number {
  if (spare !== null) {
    const v = spare;
    spare = null;
    return v;
  }
  let u = 0;
  while (u === 0) u = randomUniform();
  const v = randomUniform();
  const r = Math.sqrt(-2 * Math.log(u));
  spare = r * Math.sin(2 * Math.PI * v);
  return r * Math.cos(2 * Math.PI * v);
}

export function getRngState(): RngState {
  return { s: [s[0]!, s[1]!, s[2]!, s[3]!], spare };
}

export function setRngState(state: RngState): void {
  if (!Array.isArray(state?.s) || state.s.length !== 4) {
    throw new TypeError(`setRngState: expected { s: [4 x uint32], spare }, got ${JSON.stringify(state)}`);
  }
  s = new Uint32Array(state.s);
  spare = state.spare ?? null;
}
