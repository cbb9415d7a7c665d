"""A trained translation model with its tokenizer: sentences in, translations out.

    translator = Translator.from_checkpoint("runs/multi30k_de_en/best")
    translator.translate(["Ein Mann fährt Fahrrad."])   # ['A man is riding a bike.']

Sentences are tokenized (+ </s>), grouped into batches of similar length, decoded with
beam search (or greedy, beam_size=0) and turned back into text. The fast engine runs
the model by default; `engine="scratch"` runs the same weights in the glass box.
"""

from __future__ import annotations

import sys

import numpy as np

from chalklm.config import TransformerConfig
from chalklm.data.parallel import SpecialIds, encode_sentence, pad_rows
from chalklm.errors import CheckpointError, ConfigError
from chalklm.translation.decoding import GlassStepper, TorchStepper, beam_search, greedy

DEFAULT_BEAM_SIZE = 4
DEFAULT_ALPHA = 0.6


class Translator:
    def __init__(self, config: TransformerConfig, weights: dict, tokenizer,
                 engine: str = "torch", device: str = "cpu"):
        if not isinstance(config, TransformerConfig):
            kind = getattr(config, "model_type", type(config).__name__)
            raise CheckpointError(f"this checkpoint holds a {kind!r} model, not a translation "
                                  "Transformer; train one with chalklm train --config "
                                  "multi30k_de_en")
        self.config, self.tokenizer = config, tokenizer
        self.ids = SpecialIds.of(tokenizer)
        self.weights = weights
        if engine == "torch":
            from chalklm.models.transformer import Transformer

            model = Transformer(config).to(device)
            model.load_weights(weights)
            self.stepper = TorchStepper(model, device)
        elif engine == "scratch":
            self.stepper = GlassStepper(self.glass_model())
        else:
            raise ConfigError(f"engine must be torch or scratch, got {engine!r}")

    @classmethod
    def from_checkpoint(cls, path, engine: str = "torch", device: str = "cpu") -> Translator:
        from chalklm.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        return cls(ckpt.config, ckpt.weights, ckpt.tokenizer, engine, device)

    def glass_model(self):
        """The same weights in the glass box (to look inside: attention weights, ...)."""
        from chalklm.scratch.models import Transformer

        model = Transformer(self.config)
        model.load_weights(self.weights)
        return model.eval()

    def source_ids(self, sentence: str) -> np.ndarray:
        """Token ids of a source sentence + </s>, cut to the model's max_len (with a note)."""
        tokens = encode_sentence(self.tokenizer, sentence)
        if len(tokens) + 1 > self.config.max_len:
            print(f"chalklm: a sentence of {len(tokens)} tokens was cut to the model's "
                  f"max_len of {self.config.max_len}", file=sys.stderr)
            tokens = tokens[: self.config.max_len - 1]
        return np.asarray(tokens + [self.ids.eos], dtype=np.int64)

    def translate_ids(self, sentences: list[str], beam_size: int = DEFAULT_BEAM_SIZE,
                      alpha: float = DEFAULT_ALPHA, batch_size: int = 64,
                      progress: bool = False) -> list[list[int]]:
        """Target token ids for each sentence (empty lines give empty translations)."""
        from tqdm import tqdm

        if beam_size < 0:
            raise ConfigError(f"beam_size must be 0 (greedy) or more, got {beam_size}")
        out: list[list[int]] = [[] for _ in sentences]
        todo = [i for i, s in enumerate(sentences) if s.strip()]
        sources = {i: self.source_ids(sentences[i]) for i in todo}
        todo.sort(key=lambda i: len(sources[i]))  # similar lengths share a batch
        bar = tqdm(total=len(todo), desc="translating", unit="sentence", disable=not progress,
                   file=sys.stderr, leave=False)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start: start + batch_size]
            src = pad_rows([sources[i] for i in chunk], self.ids.pad)
            if beam_size <= 1:
                results = greedy(self.stepper, src, self.ids, self.config.max_len)
            else:
                results = beam_search(self.stepper, src, self.ids, self.config.max_len,
                                      beam_size, alpha)
            for i, tokens in zip(chunk, results):
                out[i] = tokens
            bar.update(len(chunk))
        bar.close()
        return out

    def translate(self, sentences: list[str], beam_size: int = DEFAULT_BEAM_SIZE,
                  alpha: float = DEFAULT_ALPHA, batch_size: int = 64,
                  progress: bool = False) -> list[str]:
        """The translation of each sentence, as text."""
        ids = self.translate_ids(sentences, beam_size, alpha, batch_size, progress)
        return [self.tokenizer.decode(tokens).strip() for tokens in ids]
