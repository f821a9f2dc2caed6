"""QLoRA/LoRA trainer: recipe -> adapter, using the task registry's prompts and truncation."""
