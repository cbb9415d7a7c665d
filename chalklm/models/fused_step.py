"""Generation's one-token step in one call to C (`_decode.c`): CPU, one sequence.

A one-token step reads every weight once for two flops each, so its speed is the speed
of reading weights from memory. Built from PyTorch operations it spends most of its time
elsewhere: a few hundred operator calls, each a few microseconds of dispatch, and a
matrix-vector product that reads at half the memory's speed. `_decode.c` computes the
same step, the same arithmetic as `GPT.forward` with a KV cache, in one C call: each
product a loop of dot products over the rows of row-major (outputs, inputs) weight
copies (`weights`: one huge-page buffer, shared with decode_weights), split between
threads. On the benchmark's 6-layer model (2 cores) that is 2.8-3x the tokens/s of the
PyTorch step, and 4.7-5.4x transformers' (benchmarks/generation.py).

`FusedStep(model, cache)` applies (`applies`) to a chalklm GPT in float32 or bfloat16 on
a CPU (bfloat16: half the bytes to read; the arithmetic stays float32), a float32 cache of
one row without padding, and a built `_decode` (the C file compiles when
chalklm installs; without a compiler, or with CHALKLM_PURE_PYTHON=1, generation uses the
PyTorch step). It reads the weights and the cache in place: make a new one after the
weights or the cache change (generation makes one per call).
"""

from __future__ import annotations

import mmap
import os

import numpy as np
import torch

from chalklm.config import ACTIVATIONS
from chalklm.models import decode_checked, decode_weights, gpt
from chalklm.models.attention import MultiHeadAttention, SelfAttention
from chalklm.models.block import MLP, Block
from chalklm.models.nn import Dropout, LayerNorm, Linear, RMSNorm
from chalklm.models.positional import PositionalEmbedding, PositionalEncoding
from chalklm.models.rope import RotaryEmbedding

try:
    from chalklm.models import _decode
except ImportError:  # not built: no C compiler when chalklm was installed
    _decode = None

# the layout `_decode.c` reads: its S_* names, in order
SIZES = ("n_layer", "n_head", "n_embd", "n_hidden", "vocab", "max_len", "pos", "token",
         "activation", "threads", "n_kv_head", "rmsnorm", "gated", "rope", "qk_norm", "bf16")
DTYPES = (torch.float32, torch.bfloat16)  # the weights the C step reads
POS, TOKEN = SIZES.index("pos"), SIZES.index("token")


def applies(model, cache) -> bool:
    """True where the C step computes what `model(ids, cache=cache)` computes (`why_not`)."""
    return why_not(model, cache) is None


def why_not(model, cache) -> str | None:
    """Why the C step would not compute what `model(ids, cache=cache)` computes; None where
    it does: the code of models/gpt.py and its layers as the C step was checked against
    (decode_checked.py), every module of chalklm's own classes (a model whose
    code someone changed steps aside on its own: the C step cannot know the change),
    every parameter float32 (or every one bfloat16) on a CPU, one row of float32 cache
    without padding, of the model's own shape."""
    if _decode is None:
        return "not built (chalklm was installed without a C compiler)"
    if os.environ.get("CHALKLM_PURE_PYTHON") == "1":
        return "CHALKLM_PURE_PYTHON=1"
    edited = decode_checked.changed()
    if edited:  # a learner's edit shows: the C step cannot know it
        files = " and ".join(f"models/{name}" for name in edited)
        return f"{files} differ from the code the C step repeats (decode_checked.py)"
    changed = sorted({type(m).__name__ for m in model.modules() if type(m) not in _STOCK})
    if changed:
        return f"{', '.join(changed)}: not chalklm's own code, which the C step repeats"
    c = model.config
    dtype = model.token_embedding.weight.dtype
    if dtype not in DTYPES or any(p.dtype != dtype or p.device.type != "cpu"
                                  for p in model.parameters()):
        return "the weights are not all float32 (or all bfloat16) on a CPU"
    if cache.batch != 1 or cache.padded:
        return f"{cache.batch} rows{' with padding' if cache.padded else ''} (it takes one)"
    fits = (cache.keys.dtype == torch.float32 and cache.keys.device.type == "cpu"
            and tuple(cache.keys.shape) == (c.n_layer, 1, c.kv_heads, cache.max_len,
                                            c.head_size)
            and cache.keys.shape == cache.values.shape and cache.max_len <= c.block_size
            and tuple(model.token_embedding.weight.shape) == (c.vocab_size, c.n_embd))
    return None if fits else "the cache or a weight does not fit the model's config"


# the classes whose arithmetic `_decode.c` repeats
_STOCK = {gpt.GPT, Block, MultiHeadAttention, SelfAttention, MLP, LayerNorm, RMSNorm, Linear,
          Dropout, PositionalEmbedding, PositionalEncoding, RotaryEmbedding,
          torch.nn.Embedding, torch.nn.ModuleList}


def threads() -> int:
    """PyTorch's thread count, at most one per core this process may use: the C step's
    threads wait for each other by spinning, which more threads than cores would stall."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(torch.get_num_threads(), cores or 1))


HUGE_PAGE = 2 << 20


def huge_page_buffer(numel: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An empty tensor (float32, or `dtype`) in memory that asks Linux for 2 MB pages.

    Read once a token, the weights stream through the memory; with 4 kB pages every 4 kB
    costs an address translation and restarts the CPU's prefetcher, with 2 MB pages
    almost none do (measured: 10-25% faster reads on the benchmark's model). Where the
    system does not offer them, ordinary pages serve."""
    # private and anonymous (not shared: shared memory has huge pages of its own, mostly off)
    size = numel * dtype.itemsize
    if not hasattr(mmap, "MAP_ANONYMOUS"):  # not Linux or macOS
        return torch.empty(numel, dtype=dtype)
    try:
        area = mmap.mmap(-1, size + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError:  # refused (a memory limit): ordinary memory serves
        return torch.empty(numel, dtype=dtype)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            area.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # a kernel without transparent huge pages
            pass
    raw = torch.frombuffer(area, dtype=torch.uint8)  # keeps `area` alive
    start = -raw.data_ptr() % HUGE_PAGE
    return raw[start:start + size].view(dtype)


def _products(model) -> list[tuple]:
    """Each product of a step as (owner, layers), in `_decode.c`'s order (query, key and
    value as one, kept on the attention; the others on their layer; SwiGLU's gate last)."""
    groups = []
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        groups += [(attn, (attn.query, attn.key, attn.value)), (attn.proj, (attn.proj,)),
                   (mlp.fc, (mlp.fc,)), (mlp.proj, (mlp.proj,))]
        if mlp.gate is not None:
            groups.append((mlp.gate, (mlp.gate,)))
    return groups


def weights(model) -> tuple[list, torch.Tensor]:
    """Each product's (weight copy, bias column or None), the copy (outputs, inputs)
    row-major, and the output layer's (vocab, n_embd): all copies in one huge-page buffer,
    in the model's dtype, kept on the model until a parameter changes (checked as
    decode_weights checks its copies). In float32 each product's copy is also
    decode_weights' copy for that layer (`adopt`): PyTorch's steps, and the prompt, read
    the same numbers from the same memory."""
    groups = _products(model)
    output = model.token_embedding if model.lm_head is None else model.lm_head
    params = [p for _, layers in groups for p in decode_weights.parameters(layers)]
    params.append(output.weight)
    kept = model.__dict__.get("_fused_weights")
    if kept is not None and decode_weights.unchanged(kept[0], params):
        return kept[1], kept[2]
    model.__dict__.pop("_fused_weights", None)  # free the old buffer before the new one
    dtype = output.weight.dtype
    buffer = huge_page_buffer(sum(p.numel() for p in params if p.dim() == 2), dtype)
    products, offset = [], 0
    with torch.no_grad():
        for owner, layers in groups:
            rows = sum(layer.weight.shape[1] for layer in layers)
            copy = buffer[offset:offset + rows * layers[0].weight.shape[0]].view(rows, -1)
            copy, bias = decode_weights.stacked(layers, out=copy)
            offset += copy.numel()
            if dtype == torch.float32:  # decode_weights multiplies float32 only
                decode_weights.adopt(owner, layers, copy, bias)
            products.append((copy, bias))
        weight = output.weight if model.lm_head is None else output.weight.t()  # (vocab, C)
        out = buffer[offset:offset + weight.numel()].view(weight.shape)
        out.copy_(weight)
    model.__dict__["_fused_weights"] = (decode_weights.fingerprint(params), products, out)
    return products, out


def _wide(t):
    """t as float32 numbers laid out plainly (None stays None)."""
    return None if t is None else t.detach().float().contiguous()


def _bias(norm):
    """A LayerNorm's bias; None for RMSNorm or bias=False."""
    return getattr(norm, "bias", None)


def _scale(norm):
    return None if norm is None else norm.scale


class FusedStep:
    """`step(token) -> logits (1, vocab)`: one new token into `cache`, as the model computes."""

    def __init__(self, model, cache):
        if not applies(model, cache):
            raise ValueError("the C step is for a float32 or bfloat16 GPT on a CPU, one row "
                             "of float32 cache, no padding")
        c = model.config
        if cache.max_len > c.block_size:
            raise ValueError(f"a cache of {cache.max_len} columns is longer than the "
                             f"model's {c.block_size} positions")
        self.cache, self.eps = cache, float(model.ln_f.eps)
        self.logits = torch.empty(c.vocab_size)
        self.tensors = self._tensors(model)  # kept here: the C step reads them in place
        self.pointers = np.array([0 if t is None else t.data_ptr() for t in self.tensors],
                                 dtype=np.uint64)
        hidden = model.blocks[0].mlp.fc.weight.shape[1]
        self.sizes = np.array([c.n_layer, c.n_head, c.n_embd, hidden, c.vocab_size,
                               cache.max_len, 0, 0, ACTIVATIONS.index(c.activation),
                               threads(), c.kv_heads, c.norm == "rmsnorm", c.mlp == "swiglu",
                               c.positional == "rope", c.qk_norm,
                               self.tensors[0].dtype == torch.bfloat16], dtype=np.int64)

    def _tensors(self, model) -> list:
        """Everything `_decode.c` reads, in its P_* and L_* order; None for no bias. The
        matrices in the model's dtype (float32 or bfloat16), the rest float32 (`_wide`:
        small copies where the model is bfloat16). Contiguous, as the C step walks each
        one as a plain array (no copy when it is one already)."""
        products, output = weights(model)
        with torch.no_grad():
            tensors = [model.token_embedding.weight.contiguous(),
                       _wide(model.positions(model.config.block_size)),
                       _wide(model.ln_f.scale), _wide(_bias(model.ln_f)), output,
                       self.cache.keys, self.cache.values, self.logits]
            products = iter(products)
            for block in model.blocks:
                attn, mlp = block.attn, block.mlp
                layer = [next(products) for _ in range(4)]
                layer.append(next(products) if mlp.gate is not None else (None, None))
                qkv, proj, fc, mlp_proj, gate = ((w, _wide(b)) for w, b in layer)
                tensors += [_wide(block.ln_1.scale), _wide(_bias(block.ln_1)), *qkv, *proj,
                            _wide(block.ln_2.scale), _wide(_bias(block.ln_2)), *fc,
                            *mlp_proj, *gate, _wide(_scale(attn.q_norm)),
                            _wide(_scale(attn.k_norm))]
        return tensors

    def __call__(self, token: int) -> np.ndarray:
        self.sizes[POS], self.sizes[TOKEN] = self.cache.length, token
        _decode.step(self.pointers, self.sizes, self.eps)
        self.cache.advance(1)
        return self.logits.numpy()[None].copy()
