// Adapter tensor names in adapter_model.safetensors (trl-peft-spec 5.3): "base_model.model." + the module
// path + the adapter parameter, with the adapter name removed.

export const SAVED_PREFIX = "base_model.model.";

/** Model-side key of an adapter parameter -> its name in the saved file (prefix not included). */
export function stripAdapterName(key: string, adapter: string): string {
  const dora = `.lora_magnitude_vector.${adapter}.weight`;
  if (key.endsWith(dora)) return `${key.slice(0, -dora.length)}.lora_magnitude_vector`;
  const saved = `.modules_to_save.${adapter}.`;
  const at = key.lastIndexOf(saved);
  if (at >= 0) return key.slice(0, at) + "." + key.slice(at + saved.length);
  const parts = key.split(".");
  if (parts.length >= 2 && parts[parts.length - 2] === adapter) {
    parts.splice(parts.length - 2, 1);
    return parts.join(".");
  }
  if (parts[parts.length - 1] === adapter) return parts.slice(0, -1).join(".");
  return key;
}

/** The key under which a parameter is saved: prefix plus the stripped name. */
export function savedKey(modelKey: string, adapter: string): string {
  return SAVED_PREFIX + stripAdapterName(modelKey, adapter);
}
