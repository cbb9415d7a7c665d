"""Generating text: predict the next token, pick one, append it, repeat.

    model, tokenizer = chalklm.load("runs/shakespeare", engine="torch")   # or "scratch"
    ids = tokenizer.encode("ROMEO:")
    new = chalklm.generate(model, ids, max_new_tokens=200, temperature=0.8, top_k=40)
    print(tokenizer.decode(new[0]))
    for step in chalklm.stream(model, ids, 200): ...   # the same, one token at a time

One job per module, in reading order:

1. sampling.py  the sampling controls (`Controls`, `probabilities`, `pick`): NumPy on a
                (rows, vocab) array of scores, the same for both engines.
2. runners.py   what each engine does to produce those scores: a KV cache filled by
                `prefill` and extended by `step`, or the plain loop over a next-token
                function.
3. prompts.py   what a caller may pass as prompts, and what an empty prompt starts from.
4. loop.py      `stream` (one `Step` per new token) and `generate` (the same, collected).
5. load.py      `load`: a checkpoint folder as a model of either engine and its tokenizer.
"""

from chalklm.generation.load import load
from chalklm.generation.loop import Step, generate, stream
from chalklm.generation.prompts import beginning
from chalklm.generation.runners import scratch_next_logits, torch_next_logits
from chalklm.generation.sampling import (
    Controls,
    draw,
    keep_min_p,
    keep_top_k,
    keep_top_p,
    penalize_repeats,
    pick,
    probabilities,
    softmax,
)

__all__ = [
    "Controls",
    "Step",
    "beginning",
    "draw",
    "generate",
    "keep_min_p",
    "keep_top_k",
    "keep_top_p",
    "load",
    "penalize_repeats",
    "pick",
    "probabilities",
    "scratch_next_logits",
    "softmax",
    "stream",
    "torch_next_logits",
]
