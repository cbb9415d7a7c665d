"""The glass-box GPT: the contract's names and shapes, a loss that falls, a causal mask."""

import numpy as np
import pytest

import chalklm.scratch as cs
from chalklm.config import GPTConfig
from chalklm.errors import ShapeError
from chalklm.scratch import optim
from chalklm.scratch.attention import MultiHeadAttention, causal_mask
from chalklm.scratch.models import GPT
from chalklm.scratch.positional import PositionalEncoding

TINY = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)


def contract_shapes(c: GPTConfig) -> dict:
    """The table in docs/contract.md, written out for one config."""
    C, bias = c.n_embd, c.bias
    shapes = {"token_embedding.weight": (c.vocab_size, C)}
    if c.positional == "learned":
        shapes["position_embedding.weight"] = (c.block_size, C)

    def linear(name, n_in, n_out, with_bias=bias):
        shapes[f"{name}.weight"] = (n_in, n_out)
        if with_bias:
            shapes[f"{name}.bias"] = (n_out,)

    def norm(name):
        shapes[f"{name}.scale"] = (C,)
        if bias:
            shapes[f"{name}.bias"] = (C,)

    for i in range(c.n_layer):
        norm(f"blocks.{i}.ln_1")
        for part in ("query", "key", "value", "proj"):
            linear(f"blocks.{i}.attn.{part}", C, C)
        norm(f"blocks.{i}.ln_2")
        linear(f"blocks.{i}.mlp.fc", C, 4 * C)
        linear(f"blocks.{i}.mlp.proj", 4 * C, C)
    norm("ln_f")
    if not c.tie_embeddings:
        linear("lm_head", C, c.vocab_size, with_bias=False)
    return shapes


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_parameter_names_and_shapes_follow_the_contract(positional, tie, bias):
    config = GPTConfig(**TINY, positional=positional, tie_embeddings=tie, bias=bias)
    model = GPT(config)
    got = {name: p.shape for name, p in model.named_parameters()}
    assert got == contract_shapes(config)
    assert set(model.state_dict()) == set(got)  # the sinusoidal table is not saved


def test_logits_shape_and_loss():
    cs.manual_seed(0)
    model = GPT(GPTConfig(**TINY))
    ids = np.random.default_rng(0).integers(0, 13, size=(3, 5))
    logits, loss = model(ids)
    assert logits.shape == (3, 5, 13) and loss is None
    _, loss = model(ids, targets=ids)
    assert loss.shape == () and abs(loss.item() - np.log(13)) < 0.3  # near-uniform at start


def test_too_long_or_bad_ids_are_clear_errors():
    model = GPT(GPTConfig(**TINY))
    with pytest.raises(ShapeError, match="more than block_size 8"):
        model(np.zeros((1, 9), dtype=int))
    with pytest.raises(ShapeError, match="outside the embedding table"):
        model(np.full((1, 3), 13))
    with pytest.raises(ShapeError, match="batch, time"):
        model(np.zeros(3, dtype=int))


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_loss_falls_over_a_few_adamw_steps(positional):
    cs.manual_seed(1)
    model = GPT(GPTConfig(**TINY, positional=positional, dropout=0.1))
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 13, size=(4, 8))
    targets = np.roll(ids, -1, axis=1)  # a pattern the model can memorise
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        _, loss = model(ids, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0]


def test_causal_mask_later_tokens_do_not_change_earlier_logits():
    cs.manual_seed(2)
    model = GPT(GPTConfig(**TINY)).eval()
    ids = np.random.default_rng(2).integers(0, 13, size=(2, 8))
    changed = ids.copy()
    changed[:, 5:] = (changed[:, 5:] + 1) % 13
    a, _ = model(ids)
    b, _ = model(changed)
    np.testing.assert_array_equal(a.data[:, :5], b.data[:, :5])
    assert not np.allclose(a.data[:, 5:], b.data[:, 5:])


def test_causal_mask_lets_each_query_look_exactly_at_itself_and_earlier_positions():
    np.testing.assert_array_equal(causal_mask(3, 3), np.tril(np.ones((3, 3), bool)))
    # two new queries at the end of a 4-token sequence see everything up to themselves
    np.testing.assert_array_equal(causal_mask(2, 4), [[1, 1, 1, 0], [1, 1, 1, 1]])


def test_attention_weights_rows_sum_to_one_and_respect_the_mask():
    cs.manual_seed(3)
    attn = MultiHeadAttention(8, 2)
    x = cs.Tensor(np.random.default_rng(3).standard_normal((2, 4, 8)))
    attn(x)
    w = attn.attention.last_weights
    assert w.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    assert np.all(w[..., ~causal_mask(4, 4)] == 0)
    assert np.all(w[..., causal_mask(4, 4)] > 0)


def test_cross_attention_reads_keys_from_context_and_honours_padding():
    cs.manual_seed(4)
    attn = MultiHeadAttention(8, 2, causal=True)
    rng = np.random.default_rng(4)
    x = cs.Tensor(rng.standard_normal((2, 3, 8)))
    memory = rng.standard_normal((2, 5, 8)).astype(np.float32)
    padding = np.array([[False] * 5, [False, False, False, True, True]])
    y = attn(x, context=cs.Tensor(memory), padding_mask=padding)
    assert y.shape == (2, 3, 8)
    w = attn.attention.last_weights
    assert np.all(w[1, :, :, 3:] == 0) and np.all(w[0] > 0)  # no causal mask across sequences
    memory[1, 3:] = 100.0  # changing padded positions changes nothing
    y2 = attn(x, context=cs.Tensor(memory), padding_mask=padding)
    np.testing.assert_allclose(y.data[1], y2.data[1], rtol=1e-6)


def test_positional_encoding_matches_the_formula():
    table = PositionalEncoding(10, 6).table
    pos, i = 7, 1
    assert table[pos, 2 * i] == pytest.approx(np.sin(pos / 10000 ** (2 * i / 6)), abs=1e-6)
    assert table[pos, 2 * i + 1] == pytest.approx(np.cos(pos / 10000 ** (2 * i / 6)), abs=1e-6)
