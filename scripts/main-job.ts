// The main job (`npm start`): LoRA SFT of the embedded model models/tsgrad-tiny-qwen on the built-in
// capitals dataset (its prompt-completion form) through `tsgrad sft`, with answers to held-back questions
// before and after.
// Extra flags are passed on to `tsgrad sft` and win over the defaults below, e.g.
//   npm start -- --num_train_epochs 1 --output_dir runs/try

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AutoModelForCausalLM, AutoTokenizer, type CausalLM, type PreTrainedTokenizer } from "@tsgrad/nn";
import { PeftModel } from "@tsgrad/peft";
import { initWasmBackend, manualSeed, setBackend, tidy, wasmSimdSupported } from "@tsgrad/tensor";
import { runSft } from "@tsgrad/trl";

const ROOT = join(import.meta.dirname, "..");
const MODEL = "models/tsgrad-tiny-qwen";
// Conversational prompt-completion: TRL then trains on the answers only (completion_only_loss).
const DATASET = "capitals-prompt-completion";

/** The run's flags, TRL's names; the Python equivalent is in README.md ("Main job"). */
const DEFAULT_FLAGS: string[][] = [
  ["--model_name_or_path", MODEL],
  ["--dataset_name", DATASET],
  ["--use_peft"],
  ["--lora_r", "32"],
  ["--lora_alpha", "16"],
  ["--lora_dropout", "0.05"],
  ["--lora_target_modules", "all-linear"],
  ["--learning_rate", "2e-3"],
  ["--num_train_epochs", "10"],
  ["--per_device_train_batch_size", "8"],
  ["--gradient_checkpointing", "false"],
  ["--logging_steps", "28"],
  ["--seed", "42"],
  ["--output_dir", "runs/capitals-sft-lora"],
];

/** Defaults overridden by any flag given on the command line. */
function sftArgv(extra: readonly string[]): string[] {
  const given = new Set(extra.filter((a) => a.startsWith("--")));
  return [...DEFAULT_FLAGS.filter(([k]) => !given.has(k)).flat(), ...extra];
}

function flagValue(argv: readonly string[], flag: string): string {
  const i = argv.lastIndexOf(flag);
  return argv[i + 1]!;
}

interface Question {
  question: string;
  capital: string;
}

function questions(split: "train" | "test"): Question[] {
  const path = join(ROOT, "datasets", DATASET, `${split}.jsonl`);
  type Msg = { content: string };
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const row = JSON.parse(l) as { prompt: Msg[]; completion: Msg[] };
      const answer = row.completion[0]!.content; // "The capital of X is Y."
      return { question: row.prompt[0]!.content, capital: answer.slice(answer.lastIndexOf(" is ") + 4, -1) };
    });
}

function answer(model: CausalLM | PeftModel, tok: PreTrainedTokenizer, question: string): string {
  const prompt = tok.applyChatTemplate([{ role: "user", content: question }], {
    tokenize: true,
    add_generation_prompt: true,
  }) as number[];
  const out = tidy(() => model.generate([prompt], { max_new_tokens: 24 }).dataSync());
  return tok.decode(Array.from(out).slice(prompt.length), { skip_special_tokens: true }).trim();
}

/** Prints the first `show` answers; returns how many answers name the right capital. */
function quiz(
  model: CausalLM | PeftModel,
  tok: PreTrainedTokenizer,
  qs: readonly Question[],
  show: number,
): number {
  model.eval();
  let right = 0;
  qs.forEach((q, i) => {
    const a = answer(model, tok, q.question);
    const ok = a.includes(q.capital);
    if (ok) right++;
    if (i < show) console.log(`  ${ok ? "✓" : "✗"} ${q.question}\n      -> ${JSON.stringify(a)}`);
  });
  return right;
}

/** Answers the held-back questions (five shown) and some training questions; returns both scores. */
function report(model: CausalLM | PeftModel, tok: PreTrainedTokenizer, test: Question[], train: Question[]) {
  const held = quiz(model, tok, test, 5);
  const seen = quiz(model, tok, train, 0);
  console.log(
    `  right capital: ${held}/${test.length} held-back questions, ${seen}/${train.length} training questions`,
  );
  return { held, seen };
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const backend = wasmSimdSupported() ? "wasm" : "cpu";
  if (backend === "wasm") {
    await initWasmBackend();
    setBackend("wasm");
  }
  process.chdir(ROOT);
  const argv = sftArgv(process.argv.slice(2));
  const modelDir = flagValue(argv, "--model_name_or_path");
  const outDir = flagValue(argv, "--output_dir");
  const dataset = flagValue(argv, "--dataset_name");
  console.log(`tsgrad main job: LoRA SFT of ${modelDir} on ${dataset} (backend: ${backend})\n`);
  console.log(`  tsgrad sft ${argv.join(" ")}\n`);

  const tok = await AutoTokenizer.fromPretrained(modelDir);
  const test = questions("test");
  const train = questions("train").filter((_, i) => i % 9 === 0); // 25 of the 223
  const base = await AutoModelForCausalLM.fromPretrained(modelDir);
  console.log(`Before training (the ${test.length} test questions are held back from training):`);
  const before = report(base, tok, test, train);

  console.log("\nTraining:");
  // The adapter's initial weights come from the global generator, which is seeded from the clock at start-up;
  // seeding it here makes the whole run repeatable (the trainer reseeds with --seed for its own loop).
  manualSeed(Number(flagValue(argv, "--seed")));
  await runSft(argv);

  const tuned = await PeftModel.fromPretrained(await AutoModelForCausalLM.fromPretrained(modelDir), outDir);
  console.log(`\nAfter training (adapter reloaded from ${outDir}):`);
  const after = report(tuned, tok, test, train);
  const sec = ((performance.now() - t0) / 1000).toFixed(0);
  console.log(
    `\nright capitals, before -> after: held-back ${before.held} -> ${after.held} of ${test.length}, ` +
      `training ${before.seen} -> ${after.seen} of ${train.length}; total ${sec} s`,
  );
}

await main();
