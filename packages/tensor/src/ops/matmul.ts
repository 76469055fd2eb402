// torch.matmul semantics on top of the batched primitive: 1-D operands gain and lose a dim, batch dims
// broadcast (as expand views, so their gradients are summed back by the engine).

import { isGradEnabled, noGrad } from "../autograd/grad-mode.js";
import type { CausalSpec, View } from "../backend/backend.js";
import { promoteTypes } from "../dtype.js";
import { broadcastShapes, fmt, shapesEqual } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { allocTensor, apply } from "./apply.js";
import { cast } from "./elementwise.js";
import { expand, reshape, squeeze, unsqueeze } from "./movement.js";

/**
 * Matrix product with PyTorch's rules: [..., M, K] x [..., K, N] -> [..., M, N].
 * @example const y = x.matmul(w.transpose(0, 1)); // x [B, T, in], w [out, in] -> [B, T, out]
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.ndim === 0 || b.ndim === 0)
    throw new RangeError(
      `matmul: both arguments need at least 1 dim, got ${fmt(a.shape)} and ${fmt(b.shape)}`,
    );
  const K = a.shape[a.ndim - 1]!;
  const K2 = b.ndim === 1 ? b.shape[0]! : b.shape[b.ndim - 2]!;
  if (K !== K2) {
    throw new RangeError(
      `matmul: shapes ${fmt(a.shape)} and ${fmt(b.shape)} cannot be multiplied (${K} vs ${K2}); expected [..., M, K] x [..., K, N]`,
    );
  }
  const dtype = promoteTypes(a.dtype, b.dtype);
  a = cast(a, dtype);
  b = cast(b, dtype);
  if (a.ndim === 1 && b.ndim === 1) return reshape(matmul(unsqueeze(a, 0), unsqueeze(b, 1)), []);
  if (a.ndim === 1) return squeeze(matmul(unsqueeze(a, 0), b), -2);
  if (b.ndim === 1) return squeeze(matmul(a, unsqueeze(b, 1)), -1);
  const batch = broadcastShapes(
    `matmul (batch dims of ${fmt(a.shape)} x ${fmt(b.shape)})`,
    a.shape.slice(0, -2),
    b.shape.slice(0, -2),
  );
  const a2 = expand(a, [...batch, ...a.shape.slice(-2)]);
  const b2 = expand(b, [...batch, ...b.shape.slice(-2)]);
  return apply("matmul", [a2, b2], {});
}

/**
 * c += a b, in place: for a custom op's forward or backward that adds a product into a temporary it owns
 * (LoRA's x W^T + (x A^T)(s B)^T), without a second [M, N] tensor and an add. a [..., M, K], b [..., K, N]
 * and a contiguous c [..., M, N] with the same batch dims and dtype. Not recorded by autograd: c must not
 * require grad while grad mode is on.
 * @example matmulAccumulate(y, xa, sB.mT); // y += xa sB^T
 */
export function matmulAccumulate(c: Tensor, a: Tensor, b: Tensor): void {
  const bad = (why: string) =>
    new RangeError(`matmulAccumulate: ${why} (c ${fmt(c.shape)}, a ${fmt(a.shape)}, b ${fmt(b.shape)})`);
  if (a.ndim < 2 || b.ndim !== a.ndim || c.ndim !== a.ndim)
    throw bad("a, b and c need the same rank, at least 2");
  const r = a.ndim;
  const want = [...a.shape.slice(0, -2), a.shape[r - 2]!, b.shape[r - 1]!];
  if (
    a.shape[r - 1] !== b.shape[r - 2] ||
    !shapesEqual(a.shape.slice(0, -2), b.shape.slice(0, -2)) ||
    !shapesEqual(c.shape, want)
  )
    throw bad(`expected a [..., M, K], b [..., K, N] and c [..., M, N] with the same batch dims`);
  if (a.dtype !== c.dtype || b.dtype !== c.dtype)
    throw bad(`dtypes differ (${c.dtype}, ${a.dtype}, ${b.dtype})`);
  if (a.backend !== c.backend || b.backend !== c.backend) throw bad("tensors live on different backends");
  if (!c.isContiguous) throw bad("c must be contiguous");
  if (c.requiresGrad && isGradEnabled())
    throw bad("c requires grad; an in-place update would not be recorded");
  const backend = c.backend;
  if (backend.matmulAccumulate) {
    backend.matmulAccumulate(a._view, b._view, c._view);
    return;
  }
  const add = backend.kernels.add;
  if (!add) throw bad(`backend "${backend.name}" has neither matmulAccumulate nor an add kernel`);
  const p = noGrad(() => a.matmul(b));
  add([c._view, p._view] as [View, View], {}, c._view);
  p.dispose();
}

/**
 * a b for causal attention, computing only what the mask lets through (CausalSpec): the scores Q K^T and
 * dO V^T ("cols": entries above the diagonal are 0 where skipped, blocks of rows computing a little more), P V and dS K ("k"), dS^T Q and P^T dO ("kT"), where A is zero in
 * the parts skipped. On a backend without matmulCausal it is the whole product, and the "cols" entries
 * above the diagonal then hold their true values, so callers must not read those. a [..., M, K] and
 * b [..., K, N] with the same batch dims and dtype; rows (k for "kT") in whole groups of `period`. Not
 * recorded by autograd (for a custom op's forward and backward).
 * @example const scores = causalMatmul(q, k.mT, { period: T, offset: 0, kind: "cols" });
 */
export function causalMatmul(a: Tensor, b: Tensor, spec: CausalSpec): Tensor {
  const bad = (why: string) =>
    new RangeError(`causalMatmul: ${why} (a ${fmt(a.shape)}, b ${fmt(b.shape)}, ${JSON.stringify(spec)})`);
  const r = a.ndim;
  if (r < 2 || b.ndim !== r) throw bad("a and b need the same rank, at least 2");
  const [M, K, N] = [a.shape[r - 2]!, a.shape[r - 1]!, b.shape[r - 1]!];
  if (b.shape[r - 2] !== K || !shapesEqual(a.shape.slice(0, -2), b.shape.slice(0, -2)))
    throw bad("expected a [..., M, K] and b [..., K, N] with the same batch dims");
  if (a.dtype !== b.dtype || a.backend !== b.backend) throw bad("a and b differ in dtype or backend");
  const grouped = spec.kind === "kT" ? K : M;
  if (!(spec.period > 0) || grouped % spec.period !== 0 || !(spec.offset >= 0))
    throw bad(`${spec.kind === "kT" ? "K" : "M"} must be whole groups of period, and offset >= 0`);
  return noGrad(() => {
    const backend = a.backend;
    if (!backend.matmulCausal) return a.matmul(b);
    const out = allocTensor(backend, [...a.shape.slice(0, -2), M, N], a.dtype, false);
    backend.matmulCausal(a._view, b._view, out._view, spec);
    return out;
  });
}

/**
 * [a b, a b2] for a [..., M, K], b [..., K, N] and a narrow b2 [..., K, N2] of one dtype and the same batch
 * dims, done in one pass over a where the backend has matmulPair (LoRA: x W^T with x A^T, dy W with
 * dy (s B)), else as two products. With `third`, also scale a^T d for d [..., M, N3] from the same pass
 * (LoRA's dB = s dy^T (x A^T)). Not recorded by autograd (for a custom op's forward and backward).
 * @example const [y, xa] = matmulPair(x, W.mT, A.mT);
 * @example const [dx, g, dB] = matmulPair(dy, W, sB, { d: xa, scale: s });
 */
export function matmulPair(a: Tensor, b: Tensor, b2: Tensor): [Tensor, Tensor];
export function matmulPair(
  a: Tensor,
  b: Tensor,
  b2: Tensor,
  third: { d: Tensor; scale: number },
): [Tensor, Tensor, Tensor];
export function matmulPair(a: Tensor, b: Tensor, b2: Tensor, third?: { d: Tensor; scale: number }): Tensor[] {
  const bad = (why: string) =>
    new RangeError(
      `matmulPair: ${why} (a ${fmt(a.shape)}, b ${fmt(b.shape)}, b2 ${fmt(b2.shape)}${third ? `, d ${fmt(third.d.shape)}` : ""})`,
    );
  const r = a.ndim;
  const d = third?.d;
  if (r < 2 || b.ndim !== r || b2.ndim !== r || (d && d.ndim !== r))
    throw bad("a, b, b2 (and d) need the same rank, at least 2");
  const [M, K] = [a.shape[r - 2]!, a.shape[r - 1]!];
  const batch = a.shape.slice(0, -2);
  for (const x of [b, b2])
    if (x.shape[r - 2] !== K || !shapesEqual(x.shape.slice(0, -2), batch))
      throw bad("expected a [..., M, K], b [..., K, N] and b2 [..., K, N2] with the same batch dims");
  if (d && (d.shape[r - 2] !== M || !shapesEqual(d.shape.slice(0, -2), batch)))
    throw bad("expected d [..., M, N3] with a's rows and batch dims");
  const others = d ? [b, b2, d] : [b, b2];
  if (others.some((x) => x.dtype !== a.dtype)) throw bad("dtypes differ");
  if (others.some((x) => x.backend !== a.backend)) throw bad("tensors live on different backends");
  return noGrad(() => {
    const backend = a.backend;
    const separate = (): Tensor => a.mT.matmul(d!).mul(third!.scale);
    if (!backend.matmulPair) return [a.matmul(b), a.matmul(b2), ...(d ? [separate()] : [])];
    const out = allocTensor(backend, [...batch, M, b.shape[r - 1]!], a.dtype, false);
    const out2 = allocTensor(backend, [...batch, M, b2.shape[r - 1]!], a.dtype, false);
    if (!d) {
      backend.matmulPair(a._view, b._view, b2._view, out._view, out2._view);
      return [out, out2];
    }
    if (a.dtype !== "float32") {
      backend.matmulPair(a._view, b._view, b2._view, out._view, out2._view);
      return [out, out2, separate()];
    }
    const out3 = allocTensor(backend, [...batch, K, d.shape[r - 1]!], a.dtype, true);
    backend.matmulPair(a._view, b._view, b2._view, out._view, out2._view, {
      d: d._view,
      scale: third!.scale,
      out: out3._view,
    });
    return [out, out2, out3];
  });
}
