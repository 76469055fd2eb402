// The tsgrad command: subcommands after TRL's CLI (`trl sft ...`). Returns the exit code instead of
// exiting, so tests run it in-process.

import { ConfigFieldError } from "../config/fields.js";
import { CliError } from "./args.js";
import { runSft } from "./sft.js";

const COMMANDS: Record<string, (argv: readonly string[]) => Promise<void>> = { sft: runSft };

const USAGE = `usage: tsgrad <command> [flags]

commands:
  sft     supervised fine-tuning (LoRA, DoRA, QLoRA, prompt tuning or full)

Run "tsgrad <command> --help" for the flags of a command.
`;

/**
 * Runs the CLI with `argv` (without node and the script path); 0 on success, 2 on bad arguments, 1 on a failed run.
 * @example process.exitCode = await main(process.argv.slice(2));
 */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    process.stderr.write(
      `tsgrad: unknown command "${command}"; expected one of ${Object.keys(COMMANDS).join(", ")}\n`,
    );
    return 2;
  }
  try {
    await run(rest);
    return 0;
  } catch (e) {
    const usage = e instanceof CliError || e instanceof ConfigFieldError;
    process.stderr.write(`tsgrad ${command}: error: ${(e as Error).message}\n`);
    return usage ? 2 : 1;
  }
}
