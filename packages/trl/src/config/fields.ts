// One spec per config class (style guide 3.11): each field's type, default, allowed values and help text.
// The TypeScript type, the constructor's validation, YAML loading and the CLI flags all come from it.

export type FieldKind = "int" | "float" | "bool" | "str" | "list" | "json";

export interface Field<T> {
  kind: FieldKind;
  default: T;
  help: string;
  /** Allowed values of a "str" field. */
  choices?: readonly string[];
  /** Whether null is allowed (it is whenever the default is null). */
  nullable?: boolean;
  /** Smallest allowed value of an int or float field. */
  min?: number;
}

export type Spec = Record<string, Field<unknown>>;
/** The plain object type a spec describes. */
export type FieldsOf<S extends Spec> = { -readonly [K in keyof S]: S[K] extends Field<infer T> ? T : never };

const field =
  <T>(kind: FieldKind, nullable = false) =>
  (def: T, help: string, extra: Partial<Field<T>> = {}): Field<T> => ({
    kind,
    default: def,
    help,
    ...extra,
    nullable: extra.nullable ?? (nullable || def === null),
  });

export const f = {
  int: field<number>("int"),
  intOrNull: field<number | null>("int", true),
  float: field<number>("float"),
  floatOrNull: field<number | null>("float", true),
  bool: field<boolean>("bool"),
  boolOrNull: field<boolean | null>("bool", true),
  str: field<string>("str"),
  strOrNull: field<string | null>("str", true),
  choice: <T extends string>(def: T, choices: readonly T[], help: string): Field<T> => ({
    kind: "str",
    default: def,
    help,
    choices,
  }),
  list: field<string[] | null>("list"),
  json: field<Record<string, unknown> | null>("json"),
};

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The known name closest to `name`, or null when nothing is reasonably close. */
export function closest(name: string, known: Iterable<string>): string | null {
  let best: string | null = null;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== null && bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

export class ConfigFieldError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigFieldError";
  }
}

export function unknownFieldMessage(source: string, name: string, known: Iterable<string>): string {
  const guess = closest(name, known);
  return `${source}: unknown field "${name}"${guess ? `; did you mean "${guess}"?` : ""}`;
}

/** Why `v` does not fit `spec` (null when it does). */
export function checkValue(spec: Field<unknown>, v: unknown): string | null {
  if (v === null) return spec.nullable ? null : "a value (null is not allowed)";
  switch (spec.kind) {
    case "int":
      if (!Number.isInteger(v)) return "an integer";
      break;
    case "float":
      if (typeof v !== "number" || !Number.isFinite(v)) return "a number";
      break;
    case "bool":
      return typeof v === "boolean" ? null : "true or false";
    case "str":
      if (typeof v !== "string") return "a string";
      if (spec.choices && !spec.choices.includes(v))
        return `one of ${spec.choices.map((c) => JSON.stringify(c)).join(", ")}`;
      return null;
    case "list":
      return Array.isArray(v) && v.every((s) => typeof s === "string") ? null : "a list of strings";
    case "json":
      return typeof v === "object" && !Array.isArray(v) ? null : "an object";
  }
  if (spec.min !== undefined && (v as number) < spec.min) return `a number >= ${spec.min}`;
  return null;
}

/**
 * Defaults overlaid with `given`, every field checked: an unknown field names the closest known one, a
 * bad value names the field and what it should be.
 */
export function buildFields<S extends Spec>(
  source: string,
  spec: S,
  given: Record<string, unknown>,
): FieldsOf<S> {
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(spec)) out[k] = structuredClone(s.default);
  for (const [k, v] of Object.entries(given)) {
    const s = spec[k];
    if (!s) throw new ConfigFieldError(unknownFieldMessage(source, k, Object.keys(spec)));
    if (v === undefined) continue;
    const problem = checkValue(s, v);
    if (problem !== null)
      throw new ConfigFieldError(`${source}: field "${k}" is ${JSON.stringify(v)}; expected ${problem}`);
    out[k] = structuredClone(v);
  }
  return out as FieldsOf<S>;
}

/**
 * Parses one command-line or YAML string for a field: numbers, true/false/yes/no/1/0, None/null for
 * nullable fields, JSON for objects. Throws a message naming `label`.
 */
export function parseFieldString(spec: Field<unknown>, raw: string, label: string): unknown {
  if (spec.nullable && (raw === "None" || raw === "null" || raw === "none")) return null;
  const bad = (what: string) => new ConfigFieldError(`${label}: ${JSON.stringify(raw)} is not ${what}`);
  switch (spec.kind) {
    case "int": {
      if (!/^[-+]?\d+$/.test(raw.trim())) throw bad("an integer");
      return Number(raw);
    }
    case "float": {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n)) throw bad("a number");
      return n;
    }
    case "bool": {
      const s = raw.toLowerCase();
      if (["true", "yes", "1", "t", "y"].includes(s)) return true;
      if (["false", "no", "0", "f", "n"].includes(s)) return false;
      throw bad("true or false");
    }
    case "str":
      if (spec.choices && !spec.choices.includes(raw))
        throw bad(`one of ${spec.choices.map((c) => JSON.stringify(c)).join(", ")}`);
      return raw;
    case "list":
      return [raw];
    case "json":
      try {
        return JSON.parse(raw);
      } catch {
        throw bad("a JSON object");
      }
  }
}
