// @tsgrad/trl: the SFT trainer, its configs (TRL's field names and defaults) and the tsgrad CLI.

export { AdamW, clipGradNorm, getScheduler } from "@tsgrad/nn";
