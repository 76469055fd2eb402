#!/usr/bin/env node
// The tsgrad command line (the sft command is added with the trainer).

console.error("tsgrad: no commands yet");
process.exit(2);
