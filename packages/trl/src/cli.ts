#!/usr/bin/env node
// The tsgrad executable: `tsgrad sft --model_name_or_path DIR --dataset_name DATA [flags]`.

import { main } from "./cli/main.js";

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
