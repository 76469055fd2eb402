// Every public op function, in one namespace (Tensor methods and vjp rules call through here).

export * from "../functional/activations.js";
export * from "../functional/losses.js";
export * from "./creation.js";
export * from "./elementwise.js";
export * from "./indexing.js";
export * from "./matmul.js";
export * from "./movement.js";
export * from "./reduce.js";
