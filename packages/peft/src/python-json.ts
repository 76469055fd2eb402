// adapter_config.json is written by Python's json.dumps(config, indent=2, sort_keys=True) (trl-peft-spec 5.2):
// sorted keys, two-space indent, ASCII escapes, no trailing newline, and floats keep a ".0" when integral.
// Matching it byte for byte keeps diffs against files written by Python PEFT empty.

/** Fields whose Python type is float, so 0 is written "0.0" as Python would. */
export const FLOAT_FIELDS = new Set(["lora_dropout"]);

function escapeAscii(s: string): string {
  return JSON.stringify(s).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function dumpNumber(v: number, asFloat: boolean): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (asFloat && Number.isInteger(v)) return `${v}.0`;
  return JSON.stringify(v);
}

function dump(value: unknown, indent: string, key: string | null): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return dumpNumber(value, key !== null && FLOAT_FIELDS.has(key));
  if (typeof value === "string") return escapeAscii(value);
  const inner = `${indent}  `;
  if (Array.isArray(value) || value instanceof Set) {
    const items = [...value];
    if (items.length === 0) return "[]";
    return `[\n${items.map((v) => inner + dump(v, inner, null)).join(",\n")}\n${indent}]`;
  }
  if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0,
    );
    if (entries.length === 0) return "{}";
    return `{\n${entries.map(([k, v]) => `${inner}${escapeAscii(k)}: ${dump(v, inner, k)}`).join(",\n")}\n${indent}}`;
  }
  throw new TypeError(`adapter_config.json: cannot serialise a value of type ${typeof value}`);
}

/** json.dumps(value, indent=2, sort_keys=True) as Python writes it. */
export function pythonJsonDumps(value: unknown): string {
  return dump(value, "", null);
}
