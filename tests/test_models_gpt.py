"""The fast engine's GPT: the contract's names and shapes, attention's masks, the math."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from chalklm.config import GPTConfig
from chalklm.errors import ShapeError
from chalklm.models import GPT, training_speed
from chalklm.models.attention import MultiHeadAttention, SelfAttention
from chalklm.models.nn import Dropout, LayerNorm, Linear
from chalklm.models.positional import sinusoidal_table

TINY = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)


def contract_shapes(c: GPTConfig) -> dict[str, tuple]:
    """docs/contract.md's table, written out independently of the model code."""
    C, V = c.n_embd, c.vocab_size
    shapes = {"token_embedding.weight": (V, C), "ln_f.scale": (C,)}
    if c.positional == "learned":
        shapes["position_embedding.weight"] = (c.block_size, C)
    if c.bias:
        shapes["ln_f.bias"] = (C,)
    if not c.tie_embeddings:
        shapes["lm_head.weight"] = (C, V)
    for i in range(c.n_layer):
        p = f"blocks.{i}."
        for ln in ("ln_1", "ln_2"):
            shapes[p + ln + ".scale"] = (C,)
            if c.bias:
                shapes[p + ln + ".bias"] = (C,)
        linears = {"attn.query": (C, C), "attn.key": (C, C), "attn.value": (C, C),
                   "attn.proj": (C, C), "mlp.fc": (C, 4 * C), "mlp.proj": (4 * C, C)}
        for name, shape in linears.items():
            shapes[p + name + ".weight"] = shape
            if c.bias:
                shapes[p + name + ".bias"] = (shape[1],)
    return shapes


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_parameter_names_and_shapes_follow_the_contract(positional, tie, bias):
    config = GPTConfig(**TINY, positional=positional, tie_embeddings=tie, bias=bias)
    model = GPT(config)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == contract_shapes(config)


def test_logits_shape_and_loss_is_mean_cross_entropy_ignoring_minus_one():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY))
    ids = torch.randint(0, 13, (3, 8))
    targets = torch.randint(0, 13, (3, 8))
    targets[0, :3] = -1
    logits, loss = model(ids, targets)
    assert logits.shape == (3, 8, 13)
    keep = targets != -1
    by_hand = -torch.log_softmax(logits, -1)[keep].gather(1, targets[keep][:, None]).mean()
    assert torch.allclose(loss, by_hand, atol=1e-6)
    assert model(ids)[1] is None
    # at initialisation every token is about equally likely: loss near ln(vocab)
    assert abs(loss.item() - math.log(13)) < 0.3


def test_gpt2_initialisation():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50, block_size=32, n_layer=4, n_head=4, n_embd=128)
    sd = GPT(config).state_dict()
    assert abs(sd["blocks.0.attn.query.weight"].std().item() - 0.02) < 0.002
    residual = 0.02 / math.sqrt(2 * 4)
    assert abs(sd["blocks.1.mlp.proj.weight"].std().item() - residual) < 0.001
    assert abs(sd["blocks.1.attn.proj.weight"].std().item() - residual) < 0.001
    assert torch.all(sd["blocks.0.ln_1.scale"] == 1) and torch.all(sd["blocks.0.mlp.fc.bias"] == 0)


def test_linear_is_x_times_weight_plus_bias():
    layer = Linear(3, 5)
    x = torch.randn(2, 4, 3)
    assert torch.allclose(layer(x), x @ layer.weight + layer.bias, atol=1e-6)


def test_layer_norm_formula():
    ln = LayerNorm(6)
    with torch.no_grad():
        ln.scale.uniform_(0.5, 2)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(4, 6)
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    assert torch.allclose(ln(x), (x - mean) / torch.sqrt(var + 1e-5) * ln.scale + ln.bias,
                          atol=1e-5)


def test_sinusoidal_table_formula():
    table = sinusoidal_table(10, 6).numpy()
    for pos in (0, 3, 9):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)


def test_fused_and_explicit_attention_agree_in_outputs_and_gradients():
    torch.manual_seed(0)
    fused = GPT(GPTConfig(**TINY), fused_attention=True)
    explicit = GPT(GPTConfig(**TINY), fused_attention=False)
    explicit.load_state_dict(fused.state_dict())
    ids = torch.randint(0, 13, (2, 8))
    losses = [m(ids, ids)[1] for m in (fused, explicit)]
    for loss in losses:
        loss.backward()
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    for (name, a), (_, b) in zip(fused.named_parameters(), explicit.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_causal_mask_hides_the_future():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).eval()
    ids = torch.randint(0, 13, (1, 8))
    changed = ids.clone()
    changed[0, 5] = (ids[0, 5] + 1) % 13
    a, b = model(ids)[0], model(changed)[0]
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6)
    assert not torch.allclose(a[0, 5:], b[0, 5:], atol=1e-4)


@pytest.mark.parametrize("fused", [True, False])
def test_cross_attention_with_padding_ignores_padded_keys(fused):
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 2, causal=False, fused=fused).eval()
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    padding = torch.tensor([[False, False, False, True, True], [False] * 5])
    out = attn(x, context=memory, padding_mask=padding)
    assert out.shape == (2, 3, 16)
    altered = memory.clone()
    altered[0, 3:] = torch.randn(2, 16) * 10  # change only the padded positions
    again = attn(x, context=altered, padding_mask=padding)
    assert torch.allclose(out, again, atol=1e-5)


def test_explicit_attention_is_softmax_of_scaled_scores():
    q, k, v = torch.randn(1, 1, 4, 8), torch.randn(1, 1, 4, 8), torch.randn(1, 1, 4, 8)
    out = SelfAttention(fused=False)(q, k, v, causal=True)
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    scores = scores.masked_fill(torch.triu(torch.ones(4, 4, dtype=torch.bool), 1), -math.inf)
    assert torch.allclose(out, F.softmax(scores, -1) @ v, atol=1e-6)
    assert torch.allclose(SelfAttention(fused=True)(q, k, v, causal=True), out, atol=1e-6)


def test_too_long_input_and_mismatched_weights_are_shape_errors():
    model = GPT(GPTConfig(**TINY))
    with pytest.raises(ShapeError, match="block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    weights["ln_f.scale"] = np.ones(3, dtype=np.float32)
    with pytest.raises(ShapeError, match="ln_f.scale"):
        model.load_weights(weights)
    del weights["ln_f.scale"]
    with pytest.raises(ShapeError, match="missing"):
        model.load_weights(weights)


def test_bf16_autocast_runs_and_stays_close():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY))
    ids = torch.randint(0, 13, (2, 8))
    _, fp32 = model(ids, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, bf16 = model(ids, ids)
    assert bf16.dtype == torch.float32
    assert abs(bf16.item() - fp32.item()) < 0.05


def test_fused_causal_attention_with_fewer_queries_than_keys_matches_the_math_path():
    """The last query of a longer sequence sees every key (bottom-right causal mask)."""
    import torch

    from chalklm.models.attention import SelfAttention

    torch.manual_seed(0)
    q = torch.randn(2, 3, 2, 4)
    k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    fused = SelfAttention(fused=True)(q, k, v, causal=True)
    explicit = SelfAttention(fused=False)(q, k, v, causal=True)
    torch.testing.assert_close(fused, explicit)


def test_dropout_drops_p_of_the_numbers_keeps_the_mean_and_routes_gradients_through_the_mask():
    torch.manual_seed(0)
    x = torch.ones(400, 500, requires_grad=True)
    layer = Dropout(0.1)
    plain = layer(x)  # outside the trainer: F.dropout's own mask and scale
    assert torch.allclose(plain[plain != 0], torch.full_like(plain[plain != 0], 1 / 0.9))
    with training_speed.enabled():  # the trainer's cheaper mask: p rounded to 1/65536
        y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.003  # 200,000 draws: 3e-3 is ~4.5 sd
    assert torch.allclose(y[kept], torch.full_like(y[kept], 65536 / (65536 - 6554)))
    assert abs(y.mean().item() - 1.0) < 0.004
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * m)/dx = m: the same mask and scale
    for dtype in (torch.bfloat16, torch.float32):  # odd sizes, other dtypes: same rule
        with training_speed.enabled():
            z = layer(torch.ones(3, 7, dtype=dtype))
        assert z.dtype == dtype and z.shape == (3, 7)


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_the_trainers_speed_ups_change_no_number(mlp):
    """Joined products (query, key, value; gate and fc): the loss and every gradient of a
    training forward are the plain layers' (no dropout, whose draws would differ)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16,
                          mlp=mlp)).train()
    ids = torch.randint(0, 20, (3, 8))

    def loss_and_grads():
        model.zero_grad()
        _, loss = model(ids, ids)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain, plain_grads = loss_and_grads()
    with training_speed.enabled():
        fast, fast_grads = loss_and_grads()
    torch.testing.assert_close(fast, plain)
    for a, b in zip(fast_grads, plain_grads):
        torch.testing.assert_close(a, b)


def test_dropout_is_seeded_by_torch_and_off_in_eval_mode():
    layer = Dropout(0.5)
    torch.manual_seed(3)
    first = layer(torch.ones(64))
    torch.manual_seed(3)
    assert torch.equal(layer(torch.ones(64)), first)
    assert not torch.equal(layer(torch.ones(64)), first)
    layer.eval()
    assert torch.equal(layer(torch.ones(64)), torch.ones(64))


def test_the_shared_causal_mask_made_under_inference_mode_still_trains():
    from chalklm.models.attention import _kept_causal_mask

    _kept_causal_mask.cache_clear()
    attention = SelfAttention(fused=False)
    q = torch.randn(1, 1, 5, 4)
    with torch.inference_mode():
        attention(q, q, q, causal=True)  # the (5, 5) mask is made here first
    trained = q.clone().requires_grad_()
    attention(trained, trained, trained, causal=True).sum().backward()
    assert trained.grad is not None


def test_causal_attention_in_halves_equals_the_whole_square():
    """From HALVES_FROM tokens the trainer's math path skips the hidden top-right quarter
    of the scores; values and gradients must be those of the whole masked square."""
    torch.manual_seed(0)
    T = training_speed.HALVES_FROM
    q, k, v = (torch.randn(2, 3, T, 8, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    assert not training_speed.halves_apply(q, k)  # only where the trainer opts in
    with training_speed.enabled():
        assert training_speed.halves_apply(q, k)
        halves = SelfAttention(fused=False)(q, k, v, causal=True)
    whole = SelfAttention(fused=False)._math(
        q, k, v, torch.ones(T, T, dtype=torch.bool).tril(), 0.0)
    torch.testing.assert_close(halves, whole)
    g = torch.randn_like(halves)
    got = torch.autograd.grad(halves, (q, k, v), g)
    want = torch.autograd.grad(whole, (q, k, v), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    # an odd length, or fewer tokens, takes the whole square
    odd = SelfAttention(fused=False)(q[..., 1:, :], k[..., 1:, :], v[..., 1:, :], causal=True)
    torch.testing.assert_close(odd, F.scaled_dot_product_attention(
        q[..., 1:, :], k[..., 1:, :], v[..., 1:, :], is_causal=True))
