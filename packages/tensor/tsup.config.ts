import { defineConfig } from "tsup";

export default defineConfig({
  entry: { index: "src/index.ts", "testing/index": "src/testing/index.ts" },
  format: ["esm", "cjs"],
  dts: true,
  clean: true,
  // One shared chunk for both entries, so "." and "./testing" see the same Tensor class and backend registry.
  splitting: true,
  sourcemap: true,
  target: "node20",
  external: ["fast-check"],
});
