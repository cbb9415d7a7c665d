"""One GPT forward pass, piece by piece, keeping every number it makes on the way.

`trace(model, ids)` runs the model's OWN modules in the order `GPT.forward` runs them
(token_embedding, positions, then for each block ln_1, attn.query/key/value, the
attention, attn.proj, ln_2, mlp, then ln_f and the output layer) and records what each
returns. Nothing is recomputed from copied weights: the logits at the end are the
model's own (tests/test_explain_trace.py checks them against `model(ids)`), so the page
shows the computation the model really does. The only numbers made here, for showing,
are the layer norm's mean and std and each head's scores and softmax weights (the
model's attention module fuses them away; here they are spelled out with the engine's own
causal_mask and softmax, beside the module's call that produces the output).

Both engines run through the same steps: `Engine` says how each one turns ids into
its tensors and its tensors into NumPy arrays. Each section names the code that
computed it (`code_of`), so a reader can open that file.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from pathlib import Path

import numpy as np

from chalklm.errors import ConfigError

POSITIONAL = ("learned", "sinusoidal", "rope")  # the position kinds the trace opens up


def check_supported(config) -> None:
    """A clear error naming the option when the config asks for a piece this trace lacks
    (each piece is one small function below; a new one goes beside them)."""
    kind = getattr(config, "positional", "learned")
    if kind not in POSITIONAL:
        raise ConfigError(f"explain cannot trace positional={kind!r} yet (it traces "
                          f"{', '.join(POSITIONAL)}); `chalklm sample` runs this model")


def code_of(obj) -> str:
    """'chalklm/scratch/nn.py LayerNorm': the file and class that define `obj`'s type."""
    return _code_of_class(obj if isinstance(obj, type) else type(obj))


@functools.cache
def _code_of_class(cls: type) -> str:
    try:
        file = Path(inspect.getsourcefile(cls)).resolve()
    except (TypeError, OSError):
        return cls.__qualname__
    parts = file.parts
    for root in ("chalklm", "torch"):
        if root in parts:
            i = len(parts) - 1 - parts[::-1].index(root)
            return f"{'/'.join(parts[i:])} {cls.__qualname__}"
    return f"{file.name} {cls.__qualname__}"


class Engine:
    """How one engine's tensors are made and read; the arithmetic is the model's."""

    name = ""

    def __init__(self, model):
        self.model = model

    @staticmethod
    def for_model(model) -> Engine:
        """The fast engine's GPT lives in chalklm.models, the glass box's in chalklm.scratch."""
        fast = type(model).__module__.startswith("chalklm.models")
        return TorchEngine(model) if fast else GlassEngine(model)


class GlassEngine(Engine):
    """The glass box (chalklm.scratch): NumPy arrays inside Tensors."""

    name = "scratch"

    def running(self):
        from chalklm.scratch import no_grad
        return no_grad()

    def ids(self, ids):
        return np.asarray([ids], dtype=np.int64)

    def array(self, t) -> np.ndarray:
        from chalklm.scratch import Tensor
        return np.asarray(t.data if isinstance(t, Tensor) else t, dtype=np.float32)

    def causal_mask(self, T: int):
        from chalklm.scratch.attention import causal_mask
        return causal_mask(T, T)

    def merge_heads(self, attn, y):
        return attn.merge_heads(y)

    def rotate(self, x, rows):
        from chalklm.scratch.rope import rotate
        return rotate(x, rows)

    def repeat_heads(self, x, group: int):
        from chalklm.scratch.attention import repeat_heads
        return repeat_heads(x, group)

    def mask_code(self) -> str:
        return "chalklm/scratch/attention.py causal_mask"


class TorchEngine(Engine):
    """The fast engine (chalklm.models, PyTorch)."""

    name = "torch"

    def running(self):
        import torch
        return torch.inference_mode()

    def ids(self, ids):
        import torch
        return torch.tensor([ids], dtype=torch.long, device=self._device())

    def _device(self):
        return self.model.token_embedding.weight.device

    def array(self, t) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    def causal_mask(self, T: int):
        from chalklm.models.attention import causal_mask
        return causal_mask(T, T, self._device())

    def merge_heads(self, attn, y):
        B, H, T, hs = y.shape
        return y.transpose(1, 2).reshape(B, T, H * hs)

    def rotate(self, x, rows):
        from chalklm.models.rope import rotate
        return rotate(x, rows)

    def repeat_heads(self, x, group: int):
        from chalklm.models.attention import repeat_heads
        return repeat_heads(x, group)

    def mask_code(self) -> str:
        return "chalklm/models/attention.py causal_mask"


def norm_piece(engine: Engine, norm, x) -> tuple[object, dict]:
    """A normalisation: what it divides each token's vector by (LayerNorm: the std around
    the mean it first subtracts; RMSNorm: the root mean square, nothing subtracted), its
    learned scale and bias (one per number; 0 without biases, and always for RMSNorm),
    then its output."""
    before = engine.array(x)[0]
    out = norm(x)
    centred = getattr(norm, "bias", "none") != "none"  # LayerNorm has .bias (maybe None)
    mean = before.mean(axis=-1) if centred else np.zeros(before.shape[0], np.float32)
    divisor = np.sqrt(((before - mean[:, None]) ** 2).mean(axis=-1) + norm.eps)
    bias = getattr(norm, "bias", None)
    bias = engine.array(bias) if bias is not None else np.zeros(before.shape[-1], np.float32)
    return out, {"kind": "layernorm" if centred else "rmsnorm", "mean": mean, "std": divisor,
                 "scale": engine.array(norm.scale), "bias": bias,
                 "out": engine.array(out)[0], "eps": norm.eps, "code": code_of(norm)}


def attention_piece(engine: Engine, attn, h, rope=None) -> tuple[object, dict]:
    """Multi-head attention: each head's q.k scores, the causal mask, the softmax weights,
    the heads side by side (concat) and the projection. The output is the module's own.
    Llama's pieces, where the model has them: q_norm and k_norm (qk_norm), queries and
    keys turned by their positions (RoPE), key/value heads shared by groups of query heads
    (grouped-query attention: repeated here, as the glass box's MultiHeadAttention does)."""
    q = attn.split_heads(attn.query(h))
    k = attn.split_heads(attn.key(h))
    v = attn.split_heads(attn.value(h))
    if getattr(attn, "q_norm", None) is not None:
        q, k = attn.q_norm(q), attn.k_norm(k)
    if rope is not None:
        q, k = engine.rotate(q, rope), engine.rotate(k, rope)
    group = q.shape[1] // k.shape[1]
    k, v = engine.repeat_heads(k, group), engine.repeat_heads(v, group)
    T, hs = q.shape[-2], q.shape[-1]
    keep = engine.causal_mask(T)  # True where a query may look at a key
    scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(hs))
    weights = scores.masked_fill(~keep, -math.inf).softmax(-1)
    y = attn.attention(q, k, v, causal=True)  # the model's attention, not a copy of it
    concat = engine.merge_heads(attn, y)
    proj = attn.proj(concat)
    return proj, {
        "scores": engine.array(scores)[0], "weights": engine.array(weights)[0],
        "concat": engine.array(concat)[0], "proj": engine.array(proj)[0],
        "kv_group": group, "rope": rope is not None,
        "qk_norm": getattr(attn, "q_norm", None) is not None,
        "code": f"{code_of(attn)}; {code_of(attn.attention)}; {engine.mask_code()}",
    }


def residual_piece(engine: Engine, x, added, keep: bool = True) -> tuple[object, dict]:
    """The residual connection: x + what the part computed; its size (norm) per token.
    (`keep=False`: the size only, to keep the page's payload small.)"""
    out = x + added
    values = engine.array(out)[0]
    size = {"norm": np.linalg.norm(values, axis=-1)}
    return out, ({"out": values} | size) if keep else size


def block_piece(engine: Engine, block, x, rope=None) -> tuple[object, dict]:
    """One Transformer block, as `Block.forward` runs it (pre-norm, two residual paths)."""
    h, ln_1 = norm_piece(engine, block.ln_1, x)
    added, attention = attention_piece(engine, block.attn, h, rope)
    x, residual_1 = residual_piece(engine, x, added, keep=False)
    h, ln_2 = norm_piece(engine, block.ln_2, x)
    mlp_out = block.mlp(h)
    x, residual_2 = residual_piece(engine, x, mlp_out)
    gated = getattr(block.mlp, "gate", None) is not None  # SwiGLU: proj(silu(gate(x)) * fc(x))
    mlp = {"out": engine.array(mlp_out)[0], "code": code_of(block.mlp),
           "activation": "swiglu" if gated else block.mlp.activation}
    return x, {"code": code_of(block), "ln_1": ln_1, "attention": attention,
               "residual_1": residual_1, "ln_2": ln_2, "mlp": mlp, "residual_2": residual_2}


def embedding_piece(engine: Engine, model, ids) -> tuple[object, object, dict]:
    """Token embedding rows, position rows (learned or sinusoidal), and their sum; with
    RoPE nothing is added: the position rows are the angles (cos, then sin) each block
    turns its queries and keys by, returned as `rope` for the blocks."""
    tokens = model.token_embedding(engine.ids(ids))
    kind = model.config.positional
    table = {"learned": "position_embedding", "sinusoidal": "position_encoding"}.get(kind, kind)
    positions = model.positions(len(ids))
    rope = positions if kind == "rope" else None
    x = tokens if rope is not None else tokens + positions
    return x, rope, {"token": engine.array(tokens)[0], "position": engine.array(positions),
                     "sum": engine.array(x)[0], "positional": kind,
                     "code": f"{code_of(model)}.token_embedding "
                             f"({code_of(model.token_embedding)}); "
                             f"{code_of(getattr(model, table))}"}


def output_piece(engine: Engine, model, x) -> dict:
    """ln_f, then the output layer (tied: each token's own embedding row), then softmax."""
    h, ln_f = norm_piece(engine, model.ln_f, x)
    if model.lm_head is None:
        logits = h @ model.token_embedding.weight.T
        layer = f"{code_of(model)}.forward (tied to token_embedding)"
    else:
        logits = model.lm_head(h)
        layer = code_of(model.lm_head)
    probs = logits.softmax(-1)
    return {"ln_f": ln_f, "logits": engine.array(logits)[0], "probs": engine.array(probs)[0],
            "code": layer}


def trace(model, ids: list[int]) -> dict:
    """Every intermediate of `model`'s forward pass on one prompt of token ids, as NumPy."""
    check_supported(model.config)
    if not ids:
        raise ConfigError("the prompt is empty; give at least one token")
    if len(ids) > model.config.block_size:
        raise ConfigError(f"{len(ids)} tokens is more than the context "
                          f"(block_size {model.config.block_size})")
    engine = Engine.for_model(model)
    with contextlib.ExitStack() as stack:
        stack.enter_context(engine.running())
        x, rope, embedding = embedding_piece(engine, model, ids)
        layers = []
        for block in model.blocks:
            x, layer = block_piece(engine, block, x, rope)
            layers.append(layer)
        output = output_piece(engine, model, x)
    hidden = ~engine.causal_mask(len(ids))  # the API's mask: 1 where a query may not look
    return {"engine": engine.name, "ids": list(ids), "embedding": embedding, "layers": layers,
            "mask": engine.array(hidden),
            "output": output, "model_code": code_of(model)}
