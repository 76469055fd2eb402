// RMSNorm, SwiGLU and RoPE: each a composition of primitives (the reference, and the path for dtypes and
// backends without a fused kernel) and a fused forward and backward where the backend has them.

import { isGradEnabled, noGrad } from "../autograd/grad-mode.js";
import { attachNode } from "../ops/apply.js";
import { cat } from "../ops/movement.js";
import { fmt, numel, shapesEqual } from "../shape.js";
import type { Tensor } from "../tensor.js";
import { hasFused, runFused } from "./dispatch.js";

/** A gradient the engine asked for, or null (freeing one it did not). */
function wanted(g: Tensor, need: boolean | undefined): Tensor | null {
  if (need) return g;
  g.dispose();
  return null;
}

/** x * rsqrt(mean(x^2, -1) + eps) * weight (trl-peft spec 3: LlamaRMSNorm), as primitives. */
export function rmsNormComposition(x: Tensor, weight: Tensor, eps: number): Tensor {
  const variance = x.square().mean(-1, true);
  return x.mul(variance.add(eps).rsqrt()).mul(weight);
}

/**
 * RMSNorm over the last dim: x * rsqrt(mean(x^2) + eps) * weight, for weight [C] of x's dtype.
 * @example const y = rmsNorm(hidden, layer.weight, 1e-6);
 */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  const C = x.shape[x.ndim - 1];
  if (x.ndim === 0 || weight.ndim !== 1 || weight.shape[0] !== C)
    throw new RangeError(
      `rmsNorm: expected weight [${C ?? "?"}] for x ${fmt(x.shape)}, got ${fmt(weight.shape)}`,
    );
  if (
    !hasFused("rmsNorm", x) ||
    weight.dtype !== x.dtype ||
    weight.backend !== x.backend ||
    numel(x.shape) === 0
  )
    return rmsNormComposition(x, weight, eps);
  const [xc, wc] = noGrad(() => [x.contiguous(), weight.contiguous()]);
  const rows = numel(x.shape) / C!;
  const [y, rstd] = runFused("rmsNorm", [xc, wc], { eps }, [
    [x.shape, x.dtype],
    [[rows], x.dtype],
  ]);
  return attachNode(y, "rmsNorm", [x, weight], (dy, needs) => {
    if (isGradEnabled()) {
      // createGraph: dx = s (dy w) - x s^3 mean(dy w x), dw = sum over rows of dy x s, from primitives
      const s = x.square().mean(-1, true).add(eps).rsqrt();
      const g = dy.mul(weight);
      const dxr = g.mul(s).sub(x.mul(s.pow(3)).mul(g.mul(x).mean(-1, true)));
      const dwr = dy.mul(x).mul(s).reshape([-1, C!]).sum(0);
      return [needs[0] ? dxr : null, needs[1] ? dwr : null];
    }
    const [dx, dw] = runFused("rmsNormBackward", [dy, xc, wc, rstd], {}, [
      [x.shape, x.dtype],
      [[C!], x.dtype],
    ]);
    return [wanted(dx, needs[0]), wanted(dw, needs[1])];
  });
}

/** silu(gate) * up, as primitives. */
export function swigluComposition(gate: Tensor, up: Tensor): Tensor {
  return gate.mul(gate.sigmoid()).mul(up);
}

/**
 * The SwiGLU gate of Llama's MLP: silu(gate) * up, for gate and up of one shape.
 * @example const h = swiglu(gateProj(x), upProj(x));
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  if (
    !shapesEqual(gate.shape, up.shape) ||
    gate.dtype !== up.dtype ||
    !hasFused("swiglu", gate) ||
    up.backend !== gate.backend
  )
    return swigluComposition(gate, up);
  const [g, u] = noGrad(() => [gate.contiguous(), up.contiguous()]);
  const [y] = runFused("swiglu", [g, u], {}, [[gate.shape, gate.dtype]]);
  return attachNode(y, "swiglu", [gate, up], (dy, needs) => {
    if (isGradEnabled()) {
      // createGraph: d/dgate = dy up sig (1 + gate (1 - sig)), d/dup = dy silu(gate), from primitives
      const sig = gate.sigmoid();
      const dgr = dy
        .mul(up)
        .mul(sig)
        .mul(gate.mul(sig.neg().add(1)).add(1));
      return [needs[0] ? dgr : null, needs[1] ? dy.mul(gate).mul(sig) : null];
    }
    const [dg, du] = runFused("swigluBackward", [dy, g, u], {}, [
      [gate.shape, gate.dtype],
      [gate.shape, gate.dtype],
    ]);
    return [wanted(dg, needs[0]), wanted(du, needs[1])];
  });
}

/** rotate_half: [-x2, x1] over the halves of the last dim (transformers' rotate_half). */
export function rotateHalf(x: Tensor): Tensor {
  const half = x.shape[x.ndim - 1]! / 2;
  return cat([x.slice(-1, half).neg(), x.slice(-1, 0, half)], -1);
}

/** x * cos + rotate_half(x) * sin, as primitives. */
export function ropeComposition(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  return x.mul(cos).add(rotateHalf(x).mul(sin));
}

/**
 * Rotary position embedding (transformers apply_rotary_pos_emb for one tensor): x * cos + rotate_half(x) *
 * sin, for x [B, heads, T, d] and tables cos, sin [B or 1, 1, T, d]. The tables get no gradient on the
 * fused path (they are functions of the positions); tables that require grad take the composition.
 */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const [B, , T, D] = x.shape;
  const tableOk = (t: Tensor) =>
    t.ndim === 4 &&
    (t.shape[0] === B || t.shape[0] === 1) &&
    t.shape[1] === 1 &&
    t.shape[2] === T &&
    t.shape[3] === D;
  if (
    x.ndim !== 4 ||
    D! % 2 !== 0 ||
    !tableOk(cos) ||
    !tableOk(sin) ||
    cos.requiresGrad ||
    sin.requiresGrad ||
    cos.dtype !== x.dtype ||
    sin.dtype !== x.dtype ||
    !hasFused("rope", x)
  )
    return ropeComposition(x, cos, sin);
  // x as the heads-major view [B, H, T, D] of a projection's [B, T, H, D] (attention's q and k): the kernel
  // reads that layout itself, and the gradient goes back in it, so neither way copies.
  const xt = noGrad(() => x.transpose(1, 2));
  const bthd = !x.isContiguous && xt.isContiguous;
  const [xc, c, s] = noGrad(() => [
    bthd ? xt : x.contiguous(),
    cos.expand([B!, 1, T!, D!]).reshape([B!, T!, D!]).contiguous(),
    sin.expand([B!, 1, T!, D!]).reshape([B!, T!, D!]).contiguous(),
  ]);
  const [y] = runFused("rope", [xc, c, s], { transpose: false, xBTHD: bthd, yBTHD: false }, [
    [x.shape, x.dtype],
  ]);
  if (xc !== x && xc !== xt) xc.dispose();
  return attachNode(y, "rope", [x], (dy) => {
    if (isGradEnabled()) {
      // createGraph: the transposed map dy cos + rotate_half^T(dy sin), rotate_half^T([v1, v2]) = [v2, -v1]
      const v = dy.mul(sin);
      const half = D! / 2;
      return [dy.mul(cos).add(cat([v.slice(-1, half), v.slice(-1, 0, half).neg()], -1))];
    }
    const attrs = { transpose: true, xBTHD: false, yBTHD: bthd };
    const [dx] = runFused("rope", [dy, c, s], attrs, [[bthd ? xt.shape : x.shape, x.dtype]]);
    return [bthd ? dx.transpose(1, 2) : dx];
  });
}
