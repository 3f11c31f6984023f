"""Training: the tokenizer trainer (one process to torchrun), its data cache, schedules, checkpoints."""
