import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Tests import each package's source, never its dist/ build.
const src = (p: string) => fileURLToPath(new URL(`./packages/${p}`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: [
      { find: /^@tsgrad\/tensor\/testing$/, replacement: src("tensor/src/testing/index.ts") },
      { find: /^@tsgrad\/tensor$/, replacement: src("tensor/src/index.ts") },
      { find: /^@tsgrad\/nn$/, replacement: src("nn/src/index.ts") },
      { find: /^@tsgrad\/peft$/, replacement: src("peft/src/index.ts") },
      { find: /^@tsgrad\/trl$/, replacement: src("trl/src/index.ts") },
      { find: /^@tsgrad\/backend-gpu$/, replacement: src("backend-gpu/src/index.ts") },
    ],
  },
  test: {
    include: ["packages/*/src/**/*.test.ts", "packages/*/test/**/*.test.ts", "scripts/test/**/*.test.ts"],
    testTimeout: 60_000,
    pool: "forks",
  },
});
