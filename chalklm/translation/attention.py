"""Looking inside a translation: which source token each target token attended to.

When the decoder writes a word, its CrossAttention spreads weights (adding up to 1)
over the source tokens: the part of the German sentence it read to write that English
word. The weights are read from the glass box, which keeps every attention's weights
(`SelfAttention.last_weights`), after re-running the finished translation through it
with the checkpoint's weights.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from chalklm.errors import ConfigError
from chalklm.files import write_atomic

SHADES = " ░▒▓█"  # weight 0 .. 1


@dataclass
class AttentionMap:
    source_tokens: list[str]  # the source's tokens, then </s>
    target_tokens: list[str]  # the translation's tokens, then </s>
    weights: np.ndarray  # (target, source): row i = what was read to write target token i
    layer: int
    heads: int
    translation: str


def token_labels(tokenizer, ids) -> list[str]:
    """Readable pieces: each token's text, a leading space shown as '▁'."""
    labels = []
    for i in ids:
        text = tokenizer.decode([int(i)])
        labels.append(("▁" + text[1:]) if text.startswith(" ") else text)
    return labels


def cross_attention(translator, sentence: str, beam_size: int = 4,
                    layer: int = -1) -> AttentionMap:
    """Translate `sentence` and return the cross-attention of decoder layer `layer`
    (default: the last), averaged over its heads."""
    from chalklm.scratch import no_grad

    n_layers = translator.config.n_layer_dec
    if not -n_layers <= layer < n_layers:
        raise ConfigError(f"the decoder has layers 0..{n_layers - 1} (or -1 for the last), "
                          f"not {layer}")
    if not sentence.strip():
        raise ConfigError("the sentence is empty; give a sentence to translate")
    ids = translator.ids
    src = translator.source_ids(sentence)
    tgt = translator.translate_ids([sentence], beam_size)[0]
    model = translator.glass_model()
    with no_grad():
        model(src[None, :], np.asarray([[ids.bos] + tgt], dtype=np.int64))
    weights = model.decoder.layers[layer].cross_attn.attention.last_weights[0]  # (H, T, S)
    return AttentionMap(token_labels(translator.tokenizer, src),
                        token_labels(translator.tokenizer, tgt + [ids.eos]),
                        weights.mean(axis=0), layer % n_layers, weights.shape[0],
                        translator.tokenizer.decode(tgt).strip())


def format_attention(amap: AttentionMap) -> str:
    """A text picture: one row per target token, one shaded cell per source token."""
    w = amap.weights
    lines = [f"cross-attention, decoder layer {amap.layer}, mean of {amap.heads} heads: "
             "which source token each target token looked at",
             "source: " + "  ".join(f"{j}:{t}" for j, t in enumerate(amap.source_tokens))]
    width = max(len(t) for t in amap.target_tokens)
    header = "".join(f"{j % 100:<3d}" for j in range(len(amap.source_tokens)))
    lines.append(" " * (width + 2) + header)
    for i, token in enumerate(amap.target_tokens):
        cells = "".join(SHADES[min(4, int(round(x * 4)))] * 2 + " " for x in w[i])
        best = int(w[i].argmax())
        lines.append(f"{token:>{width}}  {cells} <- {amap.source_tokens[best]} "
                     f"({w[i, best]:.2f})")
    return "\n".join(lines)


def save_attention_png(amap: AttentionMap, path) -> None:
    """The same picture as a heat map (matplotlib), target tokens down, source across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    S, T = len(amap.source_tokens), len(amap.target_tokens)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * S + 2), max(3, 0.4 * T + 1.5)))
    image = ax.imshow(amap.weights, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(S), amap.source_tokens, rotation=60, ha="right")
    ax.set_yticks(range(T), amap.target_tokens)
    ax.set_xlabel("source token (read)")
    ax.set_ylabel("target token (written)")
    ax.set_title(f"cross-attention, decoder layer {amap.layer}, mean of {amap.heads} heads")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    png = io.BytesIO()  # a PNG whatever the name ends in, written whole or not at all
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    write_atomic(path, png.getvalue())
