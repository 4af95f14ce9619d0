"""Shared test material: a tiny random Llama with a LoRA adapter (no downloads), the agent
definition the real SmolLM2 runs use, and a free loopback port."""
from __future__ import annotations

import socket
from pathlib import Path

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")

TASK = "Create a file hello.txt that contains the word hello, then finish."


def agent_yaml(max_steps: int = 3) -> str:
    """A small files agent on the embedded model in the namespace sandbox, greedy."""
    return f"""\
name: t
system: You are an agent in a Linux sandbox. Work in /workspace with the tools, then finish.
model: smollm2
tools: [write_file, shell, python, read_file, finish]
sandbox: {{backend: namespace, cpu_seconds: 5, memory_mb: 256, pids: 32, timeout_s: 10}}
parameters: {{temperature: 0.0, max_tokens: 100}}
seed: 3
max_steps: {max_steps}
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_llama_with_lora(base: Path, adapter: Path, corpus: list[str], *, vocab_size: int,
                         lora_alpha: int) -> tuple[Path, Path]:
    """Save a random 2-layer Llama with a byte-level BPE trained on ``corpus`` (ChatML
    template) to ``base``, and a random LoRA on it to ``adapter``. Callers import-check
    torch, transformers and peft first."""
    import peft
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus * 4, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf_tok.chat_template = CHATML
    hf_tok.save_pretrained(base)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        eos_token_id=hf_tok.eos_token_id, bos_token_id=None, pad_token_id=hf_tok.pad_token_id)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(base)
    lora = peft.get_peft_model(model, peft.LoraConfig(
        r=4, lora_alpha=lora_alpha, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(adapter)
    return base, adapter
