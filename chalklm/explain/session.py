"""The model a `chalklm explain` server shows: one GPT checkpoint, fixed when it starts.

`Explainer` loads the checkpoint once in the fast engine (and, the first time the page
asks, in the glass box too) and answers the API's questions about a prompt: its tokens,
the forward pass with every intermediate (trace.py), the next token's chances, and a
generation streamed token by token. Each engine's model sits behind its own lock, so two
browsers asking at once each get their own, correct, answer.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from chalklm import checkpoint, generation
from chalklm.config import GPTConfig
from chalklm.errors import ChalkError, ConfigError, TokenizerError
from chalklm.explain import trace as tracing
from chalklm.explain.locks import GLASS_LOCK
from chalklm.explain.requests import BadRequest

TOP_CANDIDATES = 20  # next-token candidates /api/next lists
TOP_EACH = 5  # candidates /api/forward lists for every position


def open_checkpoint(path):
    """The explainer for a checkpoint: a GPT's (`Explainer`) or a translation model's."""
    from chalklm.config import TransformerConfig

    folder = checkpoint.resolve(path)
    config = checkpoint.load_config(folder)
    if isinstance(config, TransformerConfig):
        from chalklm.explain.translation import TranslationExplainer

        return TranslationExplainer(folder, config)
    return Explainer(folder)


class Explainer:
    """A GPT checkpoint, its tokenizer and a model per engine, each behind a lock."""

    kind = "gpt"

    def __init__(self, path):
        self.folder = checkpoint.resolve(path)
        self.config = checkpoint.load_config(self.folder)
        if not isinstance(self.config, GPTConfig):
            raise ConfigError(f"{self.folder}: a {self.config.model_type!r} checkpoint; "
                              "Explainer opens GPT checkpoints (open_checkpoint: any)")
        tracing.check_supported(self.config)
        self.tokenizer = checkpoint.load_tokenizer(self.folder)
        self._models: dict[str, object] = {}
        self._locks = {"torch": threading.Lock(), "scratch": GLASS_LOCK}
        self._loading = threading.Lock()
        self.model("torch")  # load now: a broken checkpoint stops the server at start

    def model(self, engine: str):
        with self._loading:
            if engine not in self._models:
                self._models[engine] = generation.load(self.folder, engine=engine)[0]
            return self._models[engine]

    @property
    def run_folder(self) -> Path:
        """Where metrics.jsonl is: the checkpoint's run folder (best/ and last/ sit in it)."""
        if (self.folder / "metrics.jsonl").is_file() or self.folder.name not in ("best", "last"):
            return self.folder
        return self.folder.parent

    def info(self) -> dict:
        vocab = [self.token_text(i) for i in range(self.config.vocab_size)]
        return {"kind": "gpt", "checkpoint": str(self.folder), "config": self.config.to_dict(),
                "engines": ["torch", "scratch"], "vocab": vocab,
                "tokenizer": type(self.tokenizer).__name__,
                "tokenizer_code": tracing.code_of(self.tokenizer)}

    # ------------------------------------------------------------------ tokens
    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def encode(self, prompt: str) -> list[int]:
        """The prompt's ids; characters the tokenizer lacks, or too many tokens, are a 400."""
        try:
            ids = self.tokenizer.encode(prompt)
        except TokenizerError as exc:
            problem = getattr(exc, "problem", str(exc))  # without the hint for Python callers
            raise BadRequest(f"the prompt has text this tokenizer lacks: {problem}; "
                             "leave it out (the model was trained without it)") from None
        if not ids:
            raise BadRequest("the prompt makes no tokens; type at least one character")
        if len(ids) > self.config.block_size:
            raise BadRequest(f"the prompt is {len(ids)} tokens; this model's context "
                             f"holds {self.config.block_size} (block_size)")
        return ids

    def tokens(self, prompt: str) -> dict:
        ids = self.encode(prompt)
        return {"tokens": [{"id": i, "text": self.token_text(i), "merges": self.merges(i)}
                           for i in ids],
                "code": tracing.code_of(self.tokenizer)}

    def merges(self, token_id: int) -> dict | None:
        """For BPE: the tree of merges that built this token (leaves are single bytes)."""
        merges = getattr(self.tokenizer, "merges", None)
        if merges is None:
            return None
        offset = getattr(self.tokenizer, "id_offset", 0)
        rank = token_id - offset
        node = {"id": token_id, "text": self.token_text(token_id)}
        if 256 <= rank < 256 + len(merges):
            left, right = merges[rank - 256]
            node["merge"] = rank - 256
            node["parts"] = [self.merges(left), self.merges(right)]
        return node

    # ------------------------------------------------------------------ forward
    def forward(self, prompt: str, engine: str) -> dict:
        ids = self.encode(prompt)
        model = self.model(engine)
        with self._locks[engine]:
            result = tracing.trace(model, ids)
        result["tokens"] = [self.token_text(i) for i in ids]
        result["last_logits"] = [float(v) for v in result["output"]["logits"][-1]]
        result["output"] = self.compact_output(result["output"])
        return result

    def compact_output(self, output: dict) -> dict:
        """What the page needs of the (T, vocab) scores: the last position's softmax in
        full, and at every position its TOP_EACH likeliest next tokens (a GPT-2-sized
        vocabulary would otherwise send 3 million numbers for 64 tokens)."""
        probs = output.pop("probs")
        output.pop("logits")
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :TOP_EACH]
        output["probs"] = probs[-1]
        output["top_ids"] = top.tolist()
        output["top_probs"] = np.take_along_axis(probs, top, axis=-1)
        output["top_texts"] = [[self.token_text(int(i)) for i in row] for row in top]
        return output

    def next_token(self, prompt: str, engine: str, controls: generation.Controls) -> dict:
        """The last position's scores and the chances each control leaves, as
        chalklm/generation/sampling.py computes them."""
        ids = self.encode(prompt)
        model = self.model(engine)
        with self._locks[engine]:
            logits = tracing.trace(model, ids)["output"]["logits"][-1]
        chances = generation.probabilities(logits[None, :], controls)[0]
        top = np.argsort(-chances, kind="stable")[:TOP_CANDIDATES]
        return {"logits": [float(v) for v in logits],
                "candidates": [{"id": int(i), "text": self.token_text(int(i)),
                                "prob": float(chances[i])} for i in top if chances[i] > 0],
                "greedy": int(np.argmax(logits)),
                "code": "chalklm/generation/sampling.py probabilities"}

    def generate(self, prompt: str, engine: str, count: int, controls: generation.Controls,
                 seed: int | None):
        """Yield {"id", "text"} per new token, as each is made; the model is locked only
        while one token is computed, so other requests are answered in between."""
        ids = self.encode(prompt)
        model = self.model(engine)
        lock = self._locks[engine]
        steps = generation.stream(
            model, [ids], count, temperature=controls.temperature, top_k=controls.top_k,
            top_p=controls.top_p, seed=seed)
        while True:
            with lock:
                try:
                    step = next(steps)
                except StopIteration:
                    return
                except ChalkError as exc:
                    yield {"error": str(exc)}
                    return
            token = step.ids[0]
            if token is not None:
                yield {"id": token, "text": self.token_text(token)}
