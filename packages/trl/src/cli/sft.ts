// `tsgrad sft`: TRL's trl/scripts/sft.py. Everything is validated, the dataset read and the model loaded
// before output_dir is touched, so a bad flag or path never writes over earlier outputs. Example:
//
//   tsgrad sft --model_name_or_path ./Qwen2.5-0.5B --dataset_name data/chat.jsonl --use_peft \
//     --lora_target_modules q_proj v_proj --learning_rate 2e-4 --max_steps 100 --output_dir out/sft

import { existsSync } from "node:fs";
import { join } from "node:path";
import { isAdapterLayer, LoraConfig, PeftModel } from "@tsgrad/peft";
import {
  getPeftConfig,
  getQuantizationConfig,
  MODEL_CONFIG_SPEC,
  ModelConfig,
} from "../config/model-config.js";
import { SCRIPT_ARGS_SPEC, ScriptArguments } from "../config/script-args.js";
import { getSplit, loadDataset } from "../datasets/load.js";
import { SFT_CONFIG_SPEC, SFTConfig } from "../sft/config.js";
import { SFTTrainer } from "../sft/trainer.js";
import { CliError, helpText, parseCli, type SpecGroup } from "./args.js";

export const SFT_GROUPS: SpecGroup[] = [
  { title: "Script arguments (ScriptArguments)", spec: SCRIPT_ARGS_SPEC },
  { title: "Model arguments (ModelConfig)", spec: MODEL_CONFIG_SPEC },
  { title: "Training arguments (SFTConfig)", spec: SFT_CONFIG_SPEC },
];

export const SFT_USAGE =
  "usage: tsgrad sft [--config FILE] --model_name_or_path DIR --dataset_name DATA [flags]";

function pick(values: Record<string, unknown>, spec: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).filter(([k]) => k in spec));
}

/** Runs `tsgrad sft` with `argv` (the arguments after "sft"); resolves when training and saving are done. */
export async function runSft(argv: readonly string[]): Promise<void> {
  const parsed = parseCli(argv, SFT_GROUPS);
  if (parsed.help) {
    process.stdout.write(helpText(SFT_USAGE, SFT_GROUPS));
    return;
  }
  const wrap = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      throw new CliError((e as Error).message);
    }
  };
  const script = wrap(() => new ScriptArguments(pick(parsed.values, SCRIPT_ARGS_SPEC)));
  const modelArgs = wrap(() => new ModelConfig(pick(parsed.values, MODEL_CONFIG_SPEC)));
  const training = wrap(() => new SFTConfig(pick(parsed.values, SFT_CONFIG_SPEC)));
  const modelPath = modelArgs.model_name_or_path;
  if (!modelPath) throw new CliError("--model_name_or_path is required");
  if (!existsSync(join(modelPath, "config.json")))
    throw new CliError(
      `--model_name_or_path ${modelPath}: not a model folder (${join(modelPath, "config.json")} not found)`,
    );
  if (!script.dataset_name) throw new CliError("--dataset_name is required");
  const peftConfig = wrap(() => getPeftConfig(modelArgs));
  const quantization = wrap(() => getQuantizationConfig(modelArgs));
  const data = await loadDataset(script.dataset_name, { config: script.dataset_config });
  const train = getSplit(data, script.dataset_train_split, "--dataset_train_split", script.dataset_name);
  const evalRows =
    training.eval_strategy !== "no"
      ? getSplit(data, script.dataset_test_split, "--dataset_test_split", script.dataset_name)
      : null;
  if (modelArgs.dtype !== "float32")
    training.model_init_kwargs = { ...(training.model_init_kwargs ?? {}), dtype: modelArgs.dtype };
  const trainer = new SFTTrainer({
    model: modelPath,
    args: training,
    train_dataset: train,
    eval_dataset: evalRows,
    peft_config: peftConfig,
    quantization_config: quantization,
  });
  await trainer.ready();
  const model = trainer.model;
  if (model instanceof PeftModel) {
    if (model.activeConfig instanceof LoraConfig) {
      // Pain point 2: say which modules the target list resolved to.
      const paths = [...model.model.namedModules()].filter(([, m]) => isAdapterLayer(m)).map(([p]) => p);
      const names = [...new Set(paths.map((p) => p.split(".").at(-1)))];
      console.log(`LoRA on ${paths.length} modules: ${names.join(", ")}`);
    }
    console.log(model.trainableParametersSummary());
  }
  await trainer.train();
  await trainer.saveModel(training.output_dir);
  console.log(
    `saved ${model instanceof PeftModel ? "the adapter" : "the model"} and tokenizer to ${training.output_dir}`,
  );
}
