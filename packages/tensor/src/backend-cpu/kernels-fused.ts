// The fused kernels of the plain TypeScript backend, for float32 and float64 (double accumulators). They
// are one pass per row instead of the composition's chain of primitives; the compositions in fused/ and
// functional/ stay the reference the tests compare them with (trl-peft spec formulas cited there).

import type { View } from "../backend/backend.js";
import type { FusedKernelTable } from "../fused/signatures.js";
import { dataOf } from "./storage.js";

/** Rows and row length of a contiguous view over its last dim. */
function rowsOf(v: View): [number, number] {
  const s = v.layout.shape;
  const C = s.length === 0 ? 1 : s[s.length - 1]!;
  let n = 1;
  for (const d of s) n *= d;
  return [C === 0 ? 0 : n / C, C];
}

const data = (v: View): Float32Array | Float64Array => dataOf(v) as Float32Array | Float64Array;

function softmaxRows(xv: View, yv: View, log: boolean): void {
  const [R, C] = rowsOf(xv);
  const x = data(xv);
  const y = data(yv);
  const xo = xv.layout.offset;
  for (let r = 0; r < R; r++) {
    const a = xo + r * C;
    const o = r * C;
    let m = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < C; c++) if (x[a + c]! > m) m = x[a + c]!;
    if (m === Number.NEGATIVE_INFINITY) m = 0; // an all -inf row: exp gives 0s, then NaN, as the composition
    let s = 0;
    for (let c = 0; c < C; c++) {
      const e = Math.exp(x[a + c]! - m);
      if (!log) y[o + c] = e;
      s += e;
    }
    if (log) {
      const l = m + Math.log(s);
      for (let c = 0; c < C; c++) y[o + c] = x[a + c]! - l;
    } else {
      const inv = 1 / s;
      for (let c = 0; c < C; c++) y[o + c] = y[o + c]! * inv;
    }
  }
}

function checkTarget(t: number, N: number, C: number, ignore: number, n: number): void {
  if (t !== ignore && !(t >= 0 && t < C))
    throw new RangeError(
      `crossEntropy: every target must be in [0, ${C}) or equal ignore_index ${ignore} (logits [${N}, ${C}]); target[${n}] is ${t}`,
    );
}

/** softmax(x * scale + mask) over rows of x [B, G, T, C] with mask [B, 1, T, C] (see FusedSignatures). */
function maskedSoftmaxRows(xv: View, mv: View, scale: number, yv: View): void {
  const [B, G, T, C] = xv.layout.shape as [number, number, number, number];
  const [x, mask, y] = [data(xv), data(mv), data(yv)];
  const [xo, mo] = [xv.layout.offset, mv.layout.offset];
  for (let b = 0; b < B; b++)
    for (let g = 0; g < G; g++)
      for (let t = 0; t < T; t++) {
        const o = ((b * G + g) * T + t) * C;
        const a = xo + o;
        const k = mo + (b * T + t) * C;
        let m = Number.NEGATIVE_INFINITY;
        for (let c = 0; c < C; c++) {
          const z = x[a + c]! * scale + mask[k + c]!;
          y[o + c] = z;
          if (z > m) m = z;
        }
        if (m === Number.NEGATIVE_INFINITY) m = 0; // all -inf: NaN, as the composition
        let s = 0;
        for (let c = 0; c < C; c++) {
          const e = Math.exp(y[o + c]! - m);
          y[o + c] = e;
          s += e;
        }
        const inv = 1 / s;
        for (let c = 0; c < C; c++) y[o + c] = y[o + c]! * inv;
      }
}

function softmaxBackwardRows(dyv: View, yv: View, dxv: View, scale: number): void {
  const [R, C] = rowsOf(yv);
  const [dy, y, dx] = [data(dyv), data(yv), data(dxv)];
  const [go, yo] = [dyv.layout.offset, yv.layout.offset];
  for (let r = 0; r < R; r++) {
    let dot = 0;
    for (let c = 0; c < C; c++) dot += dy[go + r * C + c]! * y[yo + r * C + c]!;
    for (let c = 0; c < C; c++) dx[r * C + c] = y[yo + r * C + c]! * (dy[go + r * C + c]! - dot) * scale;
  }
}

export const cpuFusedKernels: FusedKernelTable = {
  adamw([pv, gv, mv, vv], a, [po, mo, vo]) {
    const [p, g, m, v] = [data(pv), data(gv), data(mv), data(vv)];
    const [P, M, V] = [data(po), data(mo), data(vo)];
    const [pa, ga, ma, va] = [pv.layout.offset, gv.layout.offset, mv.layout.offset, vv.layout.offset];
    const decay = 1 - a.lr * a.weight_decay;
    const step = a.lr / a.bc1;
    const [b1, b2] = [a.beta1, a.beta2];
    for (let i = 0; i < P.length; i++) {
      const gi = g[ga + i]!;
      const mi = b1 * m[ma + i]! + (1 - b1) * gi;
      const vi = b2 * v[va + i]! + (1 - b2) * gi * gi;
      M[i] = mi;
      V[i] = vi;
      P[i] = p[pa + i]! * decay - (step * mi) / (Math.sqrt(vi) / a.bc2Sqrt + a.eps);
    }
  },
  rmsNorm([xv, wv], { eps }, [yv, sv]) {
    const [R, C] = rowsOf(xv);
    const x = data(xv);
    const w = data(wv);
    const y = data(yv);
    const rstd = data(sv);
    const xo = xv.layout.offset;
    const wo = wv.layout.offset;
    for (let r = 0; r < R; r++) {
      const a = xo + r * C;
      let ss = 0;
      for (let c = 0; c < C; c++) ss += x[a + c]! * x[a + c]!;
      const s = 1 / Math.sqrt(ss / C + eps);
      rstd[r] = s;
      for (let c = 0; c < C; c++) y[r * C + c] = x[a + c]! * s * w[wo + c]!;
    }
  },
  rmsNormBackward([dyv, xv, wv, sv], _, [dxv, dwv]) {
    const [R, C] = rowsOf(xv);
    const [dy, x, w, rstd, dx] = [data(dyv), data(xv), data(wv), data(sv), data(dxv)];
    const [go, xo, wo, so] = [dyv.layout.offset, xv.layout.offset, wv.layout.offset, sv.layout.offset];
    const dw = new Float64Array(C);
    for (let r = 0; r < R; r++) {
      const g = go + r * C;
      const a = xo + r * C;
      const s = rstd[so + r]!;
      let dot = 0;
      for (let c = 0; c < C; c++) dot += dy[g + c]! * w[wo + c]! * x[a + c]!;
      // d/dx of x s w: s (dy w) - x s^3 mean(dy w x)
      const k = (s * s * s * dot) / C;
      for (let c = 0; c < C; c++) {
        dx[r * C + c] = dy[g + c]! * w[wo + c]! * s - x[a + c]! * k;
        dw[c]! += dy[g + c]! * x[a + c]! * s;
      }
    }
    data(dwv).set(dw);
  },
  swiglu([gv, uv], _, [yv]) {
    const [g, u, y] = [data(gv), data(uv), data(yv)];
    const [go, uo] = [gv.layout.offset, uv.layout.offset];
    for (let i = 0; i < y.length; i++) {
      const z = g[go + i]!;
      y[i] = (z / (1 + Math.exp(-z))) * u[uo + i]!;
    }
  },
  swigluBackward([dyv, gv, uv], _, [dgv, duv]) {
    const [dy, g, u, dg, du] = [data(dyv), data(gv), data(uv), data(dgv), data(duv)];
    const [yo, go, uo] = [dyv.layout.offset, gv.layout.offset, uv.layout.offset];
    for (let i = 0; i < dg.length; i++) {
      const z = g[go + i]!;
      const sig = 1 / (1 + Math.exp(-z));
      const d = dy[yo + i]!;
      du[i] = d * z * sig;
      dg[i] = d * u[uo + i]! * sig * (1 + z * (1 - sig));
    }
  },
  rope([xv, cv, sv], { transpose, xBTHD, yBTHD }, [yv]) {
    const s4 = xv.layout.shape as [number, number, number, number];
    const [B, H, T, D] = xBTHD ? [s4[0], s4[2], s4[1], s4[3]] : s4;
    const [x, cs, sn, y] = [data(xv), data(cv), data(sv), data(yv)];
    const [xo, co, so] = [xv.layout.offset, cv.layout.offset, sv.layout.offset];
    const half = D / 2;
    const rowOf = (bthd: boolean, b: number, h: number, t: number): number =>
      (bthd ? (b * T + t) * H + h : (b * H + h) * T + t) * D;
    // forward: [x1 c1 - x2 s1, x2 c2 + x1 s2]; transposed: [x1 c1 + x2 s2, x2 c2 - x1 s1]
    const sg = transpose ? -1 : 1;
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let t = 0; t < T; t++) {
          const xr = xo + rowOf(xBTHD, b, h, t);
          const yr = rowOf(yBTHD, b, h, t);
          const tab = (b * T + t) * D;
          for (let i = 0; i < half; i++) {
            const x1 = x[xr + i]!;
            const x2 = x[xr + half + i]!;
            const c1 = cs[co + tab + i]!;
            const c2 = cs[co + tab + half + i]!;
            const s1 = sn[so + tab + i]!;
            const s2 = sn[so + tab + half + i]!;
            y[yr + i] = x1 * c1 - sg * x2 * (transpose ? s2 : s1);
            y[yr + half + i] = x2 * c2 + sg * x1 * (transpose ? s1 : s2);
          }
        }
  },
  softmax([xv], _, [yv]) {
    softmaxRows(xv, yv, false);
  },
  softmaxBackward([dyv, yv], _, [dxv]) {
    softmaxBackwardRows(dyv, yv, dxv, 1);
  },
  maskedSoftmax([xv, mv], { scale }, [yv]) {
    maskedSoftmaxRows(xv, mv, scale, yv);
  },
  maskedSoftmaxBackward([dyv, yv], { scale }, [dxv]) {
    softmaxBackwardRows(dyv, yv, dxv, scale);
  },
  logSoftmax([xv], _, [yv]) {
    softmaxRows(xv, yv, true);
  },
  logSoftmaxBackward([dyv, yv], _, [dxv]) {
    const [R, C] = rowsOf(yv);
    const [dy, y, dx] = [data(dyv), data(yv), data(dxv)];
    const [go, yo] = [dyv.layout.offset, yv.layout.offset];
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += dy[go + r * C + c]!;
      for (let c = 0; c < C; c++) dx[r * C + c] = dy[go + r * C + c]! - Math.exp(y[yo + r * C + c]!) * s;
    }
  },
  crossEntropy([lv, tv], { ignore_index, label_smoothing: ls }, [nv, sv]) {
    const [N, C] = rowsOf(lv);
    const [x, t, nll, lse] = [data(lv), dataOf(tv), data(nv), data(sv)];
    const [lo, to] = [lv.layout.offset, tv.layout.offset];
    for (let n = 0; n < N; n++) {
      const a = lo + n * C;
      const k = t[to + n]!;
      checkTarget(k, N, C, ignore_index, n);
      let m = Number.NEGATIVE_INFINITY;
      let sum = 0; // for the smoothing term's mean
      for (let c = 0; c < C; c++) {
        if (x[a + c]! > m) m = x[a + c]!;
        sum += x[a + c]!;
      }
      let s = 0;
      for (let c = 0; c < C; c++) s += Math.exp(x[a + c]! - m);
      const l = m + Math.log(s);
      lse[n] = l;
      if (k === ignore_index) {
        nll[n] = 0;
        continue;
      }
      // -log p[k] mixed with the uniform target: (1 - ls) (lse - x[k]) + ls (lse - mean x)
      nll[n] = (1 - ls) * (l - x[a + k]!) + (ls > 0 ? ls * (l - sum / C) : 0);
    }
  },
  crossEntropyBackward([gv, lv, tv, sv], { ignore_index, label_smoothing: ls }, [dv]) {
    const [N, C] = rowsOf(lv);
    const [g, x, t, lse, d] = [data(gv), data(lv), dataOf(tv), data(sv), data(dv)];
    const [go, lo, to, so] = [gv.layout.offset, lv.layout.offset, tv.layout.offset, sv.layout.offset];
    for (let n = 0; n < N; n++) {
      const k = t[to + n]!;
      if (k === ignore_index) {
        d.fill(0, n * C, n * C + C);
        continue;
      }
      const gn = g[go + n]!;
      const l = lse[so + n]!;
      const a = lo + n * C;
      const o = n * C;
      const u = ls / C;
      for (let c = 0; c < C; c++) d[o + c] = gn * (Math.exp(x[a + c]! - l) - u);
      d[o + k] = d[o + k]! - gn * (1 - ls);
    }
  },
};
