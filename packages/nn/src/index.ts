// @tsgrad/nn: modules named like Hugging Face checkpoint keys, layers, Qwen2 and Llama, safetensors,
// tokenizers, chat templates and generation.

// io: safetensors, tokenizers, chat templates

// modules, layers, models, generation
