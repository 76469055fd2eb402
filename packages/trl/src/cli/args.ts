// Command-line and YAML arguments as TRL's TrlParser (an HfArgumentParser) reads them: every config field
// is a --field flag (also --field-with-dashes), booleans take an optional true/false and bools that
// default to true also have --no_field, list fields take space-separated values, and `--config file.yaml`
// supplies the same keys with the command line winning.

import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { checkValue, closest, type Field, parseFieldString, type Spec } from "../config/fields.js";

export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CliError";
  }
}

export interface SpecGroup {
  title: string;
  spec: Spec;
}

export interface ParsedArgs {
  /** Field values set by YAML or flags, by field name (defaults not filled in). */
  values: Record<string, unknown>;
  help: boolean;
  config: string | null;
}

function lookup(groups: readonly SpecGroup[]): Map<string, Field<unknown>> {
  const all = new Map<string, Field<unknown>>();
  for (const g of groups) for (const [k, f] of Object.entries(g.spec)) all.set(k, f);
  return all;
}

/** The field a flag names: --lora_r, --lora-r, or --no_gradient_checkpointing (value false). */
function resolveFlag(flag: string, fields: Map<string, Field<unknown>>): { name: string; negated: boolean } {
  const name = flag.replace(/-/g, "_");
  if (fields.has(name)) return { name, negated: false };
  if (name.startsWith("no_") && fields.get(name.slice(3))?.kind === "bool")
    return { name: name.slice(3), negated: true };
  const guess = closest(name, [...fields.keys(), "config", "help"]);
  throw new CliError(
    `unrecognized argument --${flag}${guess ? `; did you mean --${guess}?` : ""} (see --help)`,
  );
}

/** A value coming from YAML: typed values are checked, strings are parsed as a flag value would be. */
function fromYaml(name: string, field: Field<unknown>, v: unknown, file: string): unknown {
  const label = `${file}: ${name}`;
  let out = v;
  if (typeof v === "string" && field.kind !== "str" && field.kind !== "list")
    out = parseFieldString(field, v, label);
  if (field.kind === "list" && typeof v === "string") out = [v];
  if (field.kind === "float" && typeof out === "number") out = Number(out);
  const problem = checkValue(field, out);
  if (problem !== null) throw new CliError(`${label} is ${JSON.stringify(v)}; expected ${problem}`);
  return out;
}

function readYamlConfig(path: string, fields: Map<string, Field<unknown>>): Record<string, unknown> {
  if (!existsSync(path)) throw new CliError(`--config ${path}: no such file`);
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CliError(`--config ${path}: not valid YAML (${(e as Error).message.split("\n")[0]})`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc))
    throw new CliError(`--config ${path}: expected a mapping of field: value`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    if (k === "env") {
      // TrlParser exports the "env" mapping as environment variables.
      if (v === null || typeof v !== "object") throw new CliError(`--config ${path}: env must be a mapping`);
      for (const [ek, ev] of Object.entries(v as Record<string, unknown>)) process.env[ek] = String(ev);
      continue;
    }
    const field = fields.get(k);
    if (!field) {
      const guess = closest(k, fields.keys());
      throw new CliError(
        `--config ${path}: unknown field "${k}"${guess ? `; did you mean "${guess}"?` : ""}`,
      );
    }
    out[k] = fromYaml(k, field, v, path);
  }
  return out;
}

/**
 * Parses argv (without the command name) against the groups' fields.
 * @example parseCli(["--lora_target_modules", "q_proj", "v_proj", "--use_peft"], groups).values
 */
export function parseCli(argv: readonly string[], groups: readonly SpecGroup[]): ParsedArgs {
  const fields = lookup(groups);
  const flags: Record<string, unknown> = {};
  let config: string | null = null;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (!tok.startsWith("--") || tok === "--")
      throw new CliError(
        `unexpected argument ${JSON.stringify(tok)}; every value follows a --flag (see --help)`,
      );
    const eq = tok.indexOf("=");
    const flag = eq > 0 ? tok.slice(2, eq) : tok.slice(2);
    const inline = eq > 0 ? tok.slice(eq + 1) : null;
    const following: string[] = [];
    if (inline !== null) following.push(inline);
    else while (i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) following.push(argv[++i]!);
    if (flag === "help" || flag === "h") {
      help = true;
      continue;
    }
    if (flag === "config") {
      if (following.length !== 1) throw new CliError("--config expects one YAML file");
      config = following[0]!;
      continue;
    }
    const { name, negated } = resolveFlag(flag, fields);
    const field = fields.get(name)!;
    const label = `--${flag}`;
    if (field.kind === "list") {
      if (following.length === 0) throw new CliError(`${label} expects one or more values`);
      flags[name] =
        field.nullable && following.length === 1 && ["None", "null"].includes(following[0]!)
          ? null
          : following;
    } else if (field.kind === "bool") {
      if (following.length > 1)
        throw new CliError(`${label} takes at most one value (true or false), got ${following.join(" ")}`);
      const v = following.length === 0 ? true : parseFieldString(field, following[0]!, label);
      flags[name] = negated ? (v === null ? null : !v) : v;
    } else {
      if (following.length !== 1)
        throw new CliError(
          `${label} expects one value${following.length > 1 ? `, got ${following.length}: ${following.join(" ")}` : ""}`,
        );
      flags[name] = parseFieldString(field, following[0]!, label);
    }
    const problem = checkValue(field, flags[name]);
    if (problem !== null)
      throw new CliError(`${label} ${JSON.stringify(following.join(" "))}: expected ${problem}`);
  }
  const yaml = config ? readYamlConfig(config, fields) : {};
  return { values: { ...yaml, ...flags }, help, config };
}

function showDefault(v: unknown): string {
  if (v === null) return "None";
  if (Array.isArray(v)) return v.join(" ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function metavar(f: Field<unknown>): string {
  if (f.choices) return `{${f.choices.join(",")}}`;
  return { int: "INT", float: "FLOAT", bool: "[BOOL]", str: "STR", list: "VALUE [VALUE ...]", json: "JSON" }[
    f.kind
  ];
}

/** The --help text: every flag with its type, help and default, grouped by config class. */
export function helpText(usage: string, groups: readonly SpecGroup[]): string {
  const lines = [
    usage,
    "",
    "  --config FILE                YAML file with any of the fields below (flags override it)",
    "  --help                       show this help and exit",
  ];
  for (const g of groups) {
    lines.push("", `${g.title}:`);
    for (const [name, f] of Object.entries(g.spec)) {
      const head = `  --${name} ${metavar(f)}`;
      lines.push(`${head.padEnd(30)} ${f.help} (default: ${showDefault(f.default)})`);
    }
  }
  return `${lines.join("\n")}\n`;
}
