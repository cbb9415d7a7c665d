"""The model an explain server shows for a translation checkpoint (German to English).

`TranslationExplainer` translates a sentence with beam search in the chosen engine
(chalklm/translation/decoding.py `beam_search`, which also hands back every candidate it
weighed, with its score), then runs the finished translation once more through the
glass box, which keeps each attention's weights (`SelfAttention.last_weights`), exactly
as `chalklm translate --attention` does: the encoder's self-attention (source x source),
the decoder's causal self-attention (target x target) and its cross-attention (target x
source: which German token each English token read).
"""

from __future__ import annotations

import threading

import numpy as np

from chalklm.explain.locks import GLASS_LOCK
from chalklm.explain.requests import BadRequest
from chalklm.explain.trace import code_of

MAX_BEAM = 8


class TranslationExplainer:
    kind = "transformer"

    def __init__(self, folder, config):
        from chalklm.checkpoint import load_checkpoint
        from chalklm.translation.translator import Translator

        checkpoint = load_checkpoint(folder)
        self.folder, self.config = checkpoint.path, config
        self._make = lambda engine: Translator(config, checkpoint.weights,
                                               checkpoint.tokenizer, engine)
        self._translators = {"torch": self._make("torch")}
        self.tokenizer = checkpoint.tokenizer
        self._locks = {"torch": threading.Lock(), "scratch": GLASS_LOCK}
        self._loading = threading.Lock()
        self._glass = None

    @property
    def run_folder(self):
        if (self.folder / "metrics.jsonl").is_file() or \
                self.folder.name not in ("best", "last", "averaged"):
            return self.folder
        return self.folder.parent

    def translator(self, engine: str):
        with self._loading:
            if engine not in self._translators:
                self._translators[engine] = self._make(engine)
            return self._translators[engine]

    def glass_model(self):
        with self._loading:
            if self._glass is None:
                self._glass = self._translators["torch"].glass_model()
            return self._glass

    def info(self) -> dict:
        return {"kind": self.kind, "checkpoint": str(self.folder),
                "config": self.config.to_dict(), "engines": ["torch", "scratch"],
                "tokenizer": type(self.tokenizer).__name__, "max_beam": MAX_BEAM}

    def labels(self, ids) -> list[str]:
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def source(self, sentence: str) -> np.ndarray:
        """The sentence's ids + </s>; too long for the model is refused, not cut."""
        from chalklm.data.parallel import encode_sentence

        tokens = encode_sentence(self.tokenizer, sentence)
        if not tokens:
            raise BadRequest("'sentence' has no words; type a sentence to translate")
        if len(tokens) >= self.config.max_len:
            raise BadRequest(f"the sentence is {len(tokens)} tokens; this model reads at "
                             f"most {self.config.max_len - 1} (max_len)")
        return np.asarray(tokens + [self._translators["torch"].ids.eos], dtype=np.int64)

    def translate(self, sentence: str, engine: str, beam_size: int) -> dict:
        from chalklm.translation.decoding import _strip, beam_search

        src = self.source(sentence)
        translator = self.translator(engine)
        found: list = []
        with self._locks[engine]:
            best = beam_search(translator.stepper, src[None, :], translator.ids,
                               self.config.max_len, beam_size, ended=found)[0]
        best = _strip(best, translator.ids)
        # the attention maps re-read <s> + translation: at most max_len tokens (an untrained
        # model may write up to its limit)
        shown = best[: self.config.max_len - 1]
        candidates = [{"text": self.tokenizer.decode(_strip(ids, translator.ids)).strip(),
                       "score": score, "ids": ids} for score, ids in found[0]]
        return {"source_tokens": self.labels(src),
                "target_inputs": self.labels([translator.ids.bos] + shown),
                "target_tokens": self.labels(shown + [translator.ids.eos]),
                "translation": self.tokenizer.decode(best).strip(), "candidates": candidates,
                "beam_size": beam_size, "engine": engine,
                "attention": self.attention(src, [translator.ids.bos] + shown),
                "code": {"search": "chalklm/translation/decoding.py beam_search",
                         "model": code_of(self.glass_model())}}

    def attention(self, src: np.ndarray, tgt_in: list[int]) -> dict:
        """Every attention's weights, (H, rows, cols) per layer, from the glass box."""
        from chalklm.scratch import no_grad

        model = self.glass_model()
        with GLASS_LOCK, no_grad():
            model(src[None, :], np.asarray([tgt_in], dtype=np.int64))
            return {"encoder_self": [_weights(layer.self_attn) for layer in model.encoder.layers],
                    "decoder_self": [_weights(layer.self_attn) for layer in model.decoder.layers],
                    "cross": [_weights(layer.cross_attn) for layer in model.decoder.layers],
                    "code": code_of(model.decoder.layers[0].cross_attn)}


def _weights(attn) -> np.ndarray:
    """The softmax weights the glass box's attention kept from its last call: (H, rows, cols)."""
    return attn.attention.last_weights[0].astype(np.float32)
