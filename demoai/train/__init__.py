"""LoRA fine-tuning with transformers + peft (a later issue)."""
