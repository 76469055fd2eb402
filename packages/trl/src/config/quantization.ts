// The bridge from --load_in_4bit / --load_in_8bit to @tsgrad/nn's BitsAndBytesConfig.

import { BitsAndBytesConfig, type BitsAndBytesConfigFields } from "@tsgrad/nn";

/** BitsAndBytesConfig from ModelConfig's flags; a bad combination throws naming the field. */
export function createQuantizationConfig(fields: Record<string, unknown>): BitsAndBytesConfig {
  return new BitsAndBytesConfig(fields as BitsAndBytesConfigFields & Record<string, unknown>);
}
