// One tolerance table for the whole repo (style guide 6.6); an exception goes here with its reason.
export const TOLERANCES = {
  /** float64 autograd vs central differences (eps 1e-6). */
  gradcheck: { atol: 1e-6, rtol: 1e-5 },
  /** CPU float32 vs a float64 or PyTorch float32 reference. */
  f32: { atol: 1e-5, rtol: 1e-4 },
  /** GPU float32 vs CPU float32. */
  gpu: { atol: 1e-4, rtol: 1e-3 },
  /** Model logits vs a PyTorch fixture. */
  logits: { atol: 1e-4, rtol: 1e-3 },
  /** Parameter gradients vs a PyTorch fixture. */
  paramGrads: { atol: 1e-3, rtol: 1e-2 },
  /** Merged vs unmerged adapter outputs. */
  merged: { atol: 1e-5, rtol: 1e-4 },
} as const;
