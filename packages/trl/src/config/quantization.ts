// The bridge from --load_in_4bit / --load_in_8bit to @tsgrad/nn's quantization config.

/** Builds the quantization config; throws while @tsgrad/nn has no BitsAndBytesConfig to build. */
export function createQuantizationConfig(fields: Record<string, unknown>): Record<string, unknown> {
  const flag = fields.load_in_4bit ? "--load_in_4bit" : "--load_in_8bit";
  throw new Error(
    `${flag}: quantized base models are not available yet (@tsgrad/nn does not export BitsAndBytesConfig); train without it`,
  );
}
