"""The proof that both engines compute the same GPT: identical weights in the glass box
(NumPy) and the fast engine (PyTorch) give equal logits, loss, gradients and AdamW steps.

Tolerances. Both run in float32 but add up products in different orders (NumPy's BLAS
against PyTorch's kernels), so results differ by rounding: about 1e-7 here. Logits and
loss must agree within 1e-5. Gradients must agree within 1e-5 absolute + 1e-4 relative.
After one AdamW step weights must agree within 1e-5 (1% of the learning rate): Adam's
first step is lr * g / (|g| + eps), and a few parameters have a true gradient of exactly
zero (the key bias: adding the same number to all of a query's scores leaves softmax
unchanged), so there both engines step by their rounding noise, which can differ.
"""

import itertools

import numpy as np
import pytest
import torch
from equivalence import (
    assert_one_adamw_step_leaves_equal_weights,
    assert_same_logits_loss_and_gradients,
)

import chalklm.scratch as cs
from chalklm.config import GPTConfig
from chalklm.models import GPT as TorchGPT
from chalklm.scratch.models import GPT as GlassGPT

TINY = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
VARIANTS = [(*v, "gelu") for v in
            itertools.product(["learned", "sinusoidal"], [True, False], [True, False])]
VARIANTS += [("learned", True, True, "gelu_exact"), ("learned", True, True, "relu")]


def _pair(seed=0, fused=True, **overrides):
    cs.manual_seed(seed)
    config = GPTConfig(**{**TINY, **overrides})
    glass = GlassGPT(config)
    fast = TorchGPT(config, fused_attention=fused)
    fast.load_weights(glass.state_dict())
    return glass, fast


def _batch(seed=1, T=8):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, TINY["vocab_size"], size=(3, T))
    targets = rng.integers(0, TINY["vocab_size"], size=(3, T))
    targets[0, :2] = -1  # ignored positions
    return ids, targets


@pytest.mark.parametrize("positional,tie,bias,activation", VARIANTS)
def test_same_weights_same_logits_loss_and_gradients(positional, tie, bias, activation):
    glass, fast = _pair(positional=positional, tie_embeddings=tie, bias=bias,
                        activation=activation)
    assert_same_logits_loss_and_gradients(glass, fast, *_batch())


@pytest.mark.parametrize("positional,tie,bias,activation", VARIANTS)
def test_one_adamw_step_leaves_equal_weights(positional, tie, bias, activation):
    glass, fast = _pair(2, positional=positional, tie_embeddings=tie, bias=bias,
                        activation=activation)
    assert_one_adamw_step_leaves_equal_weights(glass, fast, *_batch(3))


def test_explicit_attention_math_path_matches_too():
    glass, fast = _pair(4, fused=False)
    ids, _ = _batch(5, T=6)  # shorter than block_size
    np.testing.assert_allclose(glass(ids)[0].data, fast(torch.from_numpy(ids))[0].detach(),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("queries,keys", [(1, 1), (5, 5), (2, 6), (1, 4)])
def test_both_causal_masks_say_true_where_a_query_may_look(queries, keys):
    from chalklm.models.attention import causal_mask as fast_mask
    from chalklm.scratch.attention import causal_mask as glass_mask

    glass = glass_mask(queries, keys)
    np.testing.assert_array_equal(glass, fast_mask(queries, keys, torch.device("cpu")).numpy())
    assert glass[-1].all()  # the newest query sees every key, itself included
    assert glass.sum() == sum(keys - queries + i + 1 for i in range(queries))


TORCH_ONLY = ("fused", "fused_attention", "assign", "device", "return_logits")


def _arguments(function, torch_only=TORCH_ONLY):
    """Each argument's name and default, leaving out what only the fast engine has: its
    speed switches (fused kernels, logits of the scored positions only, loading without
    a copy) and the device a tensor lives on."""
    import inspect

    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()
            if p.name not in torch_only]


def _twins():
    from chalklm import models, scratch
    from chalklm.models.transformer import Transformer as FastTransformer
    from chalklm.scratch import gpt
    from chalklm.scratch.transformer import Transformer as GlassTransformer

    # file for file: scratch/nn.py and models/nn.py, scratch/attention.py and
    # models/attention.py...
    twins = {"nn": ("Linear", "LayerNorm", "RMSNorm", "Dropout"), "block": ("MLP", "Block"),
             "attention": ("SelfAttention", "MultiHeadAttention", "causal_mask"),
             "positional": ("PositionalEmbedding", "PositionalEncoding")}
    pieces = [(getattr(getattr(scratch, module), name), getattr(getattr(models, module), name))
              for module, names in twins.items() for name in names]
    for glass, twin in [(gpt.GPT, TorchGPT), (GlassTransformer, FastTransformer)]:
        pieces += [(glass, twin), (glass.forward, twin.forward),
                   (glass.load_weights, twin.load_weights), (glass.num_params, twin.num_params)]
    return pieces


@pytest.mark.parametrize("glass,fast", _twins(), ids=lambda f: f.__qualname__)
def test_the_twins_take_the_same_arguments(glass, fast):
    assert _arguments(glass) == _arguments(fast)


def test_a_fast_engine_checkpoint_greedy_generates_the_same_text_in_the_glass_box(tmp_path):
    from chalklm.checkpoint import load_config, load_weights, save_checkpoint
    from chalklm.generation import generate, torch_next_logits

    torch.manual_seed(0)
    fast = TorchGPT(GPTConfig(**TINY))
    opt = torch.optim.AdamW(fast.parameters(), lr=1e-2)
    ids, _ = _batch(6)
    for _ in range(20):  # train a little so the model has preferences worth comparing
        _, loss = fast(torch.from_numpy(ids), torch.from_numpy(np.roll(ids, -1, 1)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    folder = save_checkpoint(tmp_path / "ckpt", fast.state_dict(), fast.config)
    glass = GlassGPT(load_config(folder)).eval()
    glass.load_state_dict(load_weights(folder))

    def glass_next_logits(context):
        with cs.no_grad():
            return glass(context)[0].data[0, -1]

    prompt = list(ids[0, :3])
    block = TINY["block_size"]
    want = generate(torch_next_logits(fast.eval()), prompt, 20, block_size=block, temperature=0)
    got = generate(glass_next_logits, prompt, 20, block_size=block, temperature=0)
    assert got == want and len(set(want[0])) > 1
