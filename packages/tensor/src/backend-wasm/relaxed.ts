// Whether the runtime has relaxed SIMD's fused multiply-add (f32x4.relaxed_madd), which the matmul's
// 5 x 8 register tile needs (gemm.ts). Node 22 and current browsers have relaxed SIMD on. Node 20's V8
// (11.3) has it complete behind the V8 flag --experimental-wasm-relaxed-simd (it shipped unchanged in the
// next V8); wasm features are read when a module is validated or compiled, so setting the flag here,
// before the gemm module is compiled, is enough, and the worker threads receive the compiled module.
// TSGRAD_WASM_FMA=0 keeps the 4 x 8 mul + add tile.
//
// relaxed_madd rounds once where the CPU has FMA (as OpenBLAS's kernels do) and twice where it has not;
// either way a product is within the same float32 tolerance of the exact one.

import { envVar, nodeBuiltin } from "../env.js";
import { encodeModule, Func, f32x4madd, v128zero } from "./emit.js";

interface Validator {
  validate(bytes: Uint8Array): boolean;
}

/** A module whose one function computes relaxed_madd(0, 0, 0) and drops it. */
function probeBytes(): Uint8Array {
  const f = new Func("probe", 0);
  f.body = [...f32x4madd(v128zero(), v128zero(), v128zero()), 0x1a];
  return encodeModule([f], { initial: 1, maximum: 1 });
}

let cached: boolean | undefined;

/** True when fused multiply-add is available to wasm (after turning the Node 20 flag on if need be). */
export function relaxedSimdAvailable(api: Validator): boolean {
  if (cached === undefined) cached = envVar("TSGRAD_WASM_FMA") !== "0" && probe(api);
  return cached;
}

function probe(api: Validator): boolean {
  const bytes = probeBytes();
  if (api.validate(bytes)) return true;
  nodeBuiltin<{ setFlagsFromString?: (f: string) => void }>("node:v8")?.setFlagsFromString?.(
    "--experimental-wasm-relaxed-simd",
  );
  return api.validate(bytes);
}
