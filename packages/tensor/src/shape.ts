// Shapes, strides and the error messages that name the op, the shapes and what was expected.

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

export function isContiguous(shape: Shape, strides: readonly number[]): boolean {
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && strides[i] !== s) return false;
    s *= shape[i]!;
  }
  return true;
}

export function fmt(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Turns a possibly negative dim into 0..rank-1, or throws naming the op. */
export function normalizeDim(op: string, dim: number, rank: number): number {
  const r = Math.max(rank, 1);
  if (!Number.isInteger(dim) || dim < -r || dim >= r) {
    throw new RangeError(
      `${op}: dim ${dim} is out of range for a tensor of rank ${rank}; expected ${-r}..${r - 1}`,
    );
  }
  return dim < 0 ? dim + r : dim;
}

export function normalizeDims(
  op: string,
  dims: number | readonly number[] | undefined,
  rank: number,
): number[] {
  if (dims === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof dims === "number" ? [dims] : dims;
  const out = list.map((d) => normalizeDim(op, d, rank));
  if (new Set(out).size !== out.length)
    throw new RangeError(`${op}: dim ${JSON.stringify(dims)} repeats a dimension`);
  return out.sort((a, b) => a - b);
}

/** NumPy/PyTorch broadcasting: align from the right; each pair equal or one of them 1. */
export function broadcastShapes(op: string, ...shapes: Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i]!;
      if (d === out[o] || d === 1) continue;
      if (out[o] === 1) out[o] = d;
      else {
        throw new RangeError(
          `${op}: shapes ${shapes.map(fmt).join(" and ")} cannot be broadcast together: dim ${o - rank} is ${out[o]} vs ${d}`,
        );
      }
    }
  }
  return out;
}

export function checkShape(op: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0)
      throw new RangeError(`${op}: invalid shape ${fmt(shape)}; dims must be integers >= 0`);
  }
}

/** Resolves a single -1 in a target shape for reshape/view. */
export function inferReshape(op: string, from: Shape, to: readonly number[]): number[] {
  const total = numel(from);
  const free = to.filter((d) => d === -1).length;
  if (free > 1) throw new RangeError(`${op}: only one dimension can be -1, got ${fmt(to)}`);
  const known = to.reduce((p, d) => (d === -1 ? p : p * d), 1);
  const out = to.map((d) => (d === -1 ? (known === 0 ? 0 : total / known) : d));
  // NOTE: the size check comes first so a -1 that cannot be inferred (6 / 4) is reported with both shapes
  if (numel(out) !== total || out.some((d) => !Number.isInteger(d))) {
    throw new RangeError(
      `${op}: shape ${fmt(to)} is invalid for a tensor of shape ${fmt(from)} (${total} elements)`,
    );
  }
  checkShape(op, out);
  return out;
}
