"""Hugging Face Llama-family folders built here, with random weights and locally trained
tokenizers (no network): what a user downloads, in the same files and layouts."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

DATA = Path(os.environ["CHALKLM_DATA_DIR"])
# Llama 3's split pattern, as its tokenizer.json writes it.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen2's: Llama 3's with one digit a chunk.
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# SmolLM2-135M-Instruct's chat template (ChatML with a default system message).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# SmolLM2-135M's shape (HuggingFaceTB/SmolLM2-135M config.json).
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                    max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
TINY = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1000, max_position_embeddings=64,
            rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)


def train_tokenizer(style: str, vocab_size: int = 900) -> Tokenizer:
    """A byte-level BPE trained by `tokenizers` on Tiny Shakespeare: "llama3" (Split on
    Llama 3's regex, then ByteLevel; special tokens added after the vocabulary),
    "qwen2" (the same with NFC first and one digit a chunk) or "smollm2" (Digits one by
    one, then ByteLevel's own regex; special tokens first)."""
    tok = Tokenizer(models.BPE())
    split = style in ("llama3", "qwen2")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not split)
    pattern = QWEN2_PATTERN if style == "qwen2" else LLAMA3_PATTERN
    first = [pre_tokenizers.Split(Regex(pattern), "isolated")] if split \
        else [pre_tokenizers.Digits(individual_digits=True)]
    if style == "qwen2":
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([*first, byte_level])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False,
        special_tokens=[] if split else CHATML_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = (DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:200_000]
    tok.train_from_iterator([text + "你好世界 😀 12345 안녕 مرحبا"], trainer)
    if split:
        tok.add_special_tokens(["<|begin_of_text|>", *CHATML_SPECIALS[1:]])
    return tok


def save_tokenizer(folder: Path, tok: Tokenizer, chat_template: str | None = None) -> None:
    """tokenizer.json and tokenizer_config.json as transformers saves them."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>",
                                   eos_token="<|im_end|>")
    if chat_template is not None:
        fast.chat_template = chat_template
    fast.save_pretrained(folder)


def llama_model(seed: int = 0, kind: str = "llama", **config):
    """A LlamaForCausalLM (or Qwen2ForCausalLM) with random weights, norm scales and
    biases moved off their ones and zeros, so that a swapped or dropped one shows."""
    import transformers

    torch.manual_seed(seed)
    if kind == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**config))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("norm.weight", ".bias")):
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def llama_folder(folder: Path, seed: int = 0, save: dict | None = None, kind: str = "llama",
                 **config):
    """`llama_model(**config)` written by save_pretrained into `folder`; returns the model."""
    model = llama_model(seed, kind, **config)
    model.save_pretrained(folder, **(save or {}))
    return model
