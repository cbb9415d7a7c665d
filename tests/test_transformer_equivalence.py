"""The encoder-decoder Transformer computes the same numbers in both engines.

Identical weights in the glass box (NumPy) and the fast engine (PyTorch) give equal
logits, loss, gradients and Adam steps, on right-padded batches, for post-norm and
pre-norm, tied and untied embeddings, sinusoidal and learned positions. Tolerances as
in test_gpt_equivalence.py (float32 rounding in different summation orders).
"""

import itertools

import numpy as np
import pytest
import torch
from equivalence import assert_same_logits_loss_and_gradients

import chalklm.scratch as cs
from chalklm.checkpoint import load_config, load_weights, save_checkpoint
from chalklm.config import TransformerConfig
from chalklm.errors import ConfigError, ShapeError
from chalklm.models.transformer import Transformer as FastTransformer
from chalklm.scratch import optim
from chalklm.scratch.models import Transformer as GlassTransformer

PAD, BOS, EOS = 0, 1, 2
TINY = dict(src_vocab_size=13, tgt_vocab_size=13, n_layer_enc=2, n_layer_dec=2, n_head=2,
            n_embd=16, ffn_dim=40, dropout=0.0, max_len=12, pad_id=PAD)  # ffn_dim: any width
VARIANTS = list(itertools.product([False, True], [True, False], ["sinusoidal", "learned"],
                                  ["relu", "gelu"]))
VARIANTS += [(False, True, "sinusoidal", "gelu_exact")]


def _pair(seed=0, fused=True, **overrides):
    cs.manual_seed(seed)
    config = TransformerConfig(**{**TINY, **overrides})
    glass = GlassTransformer(config)
    fast = FastTransformer(config, fused_attention=fused)
    fast.load_weights(glass.state_dict())
    return glass, fast


def _padded_batch():
    """Three pairs of different lengths, right-padded with PAD."""
    src = np.array([[5, 6, 7, 8, 9, EOS], [3, 4, EOS, PAD, PAD, PAD], [10, 11, 12, EOS, PAD, PAD]])
    tgt_in = np.array([[BOS, 5, 6, 7, 8], [BOS, 3, PAD, PAD, PAD], [BOS, 12, 11, PAD, PAD]])
    tgt_out = np.array([[5, 6, 7, 8, EOS], [3, EOS, PAD, PAD, PAD], [12, 11, EOS, PAD, PAD]])
    return src, tgt_in, tgt_out


def _t(*arrays):
    return [torch.from_numpy(a) for a in arrays]


@pytest.mark.parametrize("norm_first,tie,positional,activation", VARIANTS)
def test_same_weights_same_logits_loss_and_gradients(norm_first, tie, positional, activation):
    overrides = dict(norm_first=norm_first, tie_embeddings=tie, positional=positional,
                     activation=activation)
    if not tie:
        overrides["tgt_vocab_size"] = 15  # untied: the two vocabularies may differ
    glass, fast = _pair(**overrides)
    logits = assert_same_logits_loss_and_gradients(glass, fast, *_padded_batch())
    assert logits.shape == (3, 5, TINY["tgt_vocab_size"] + (0 if tie else 2))


@pytest.mark.parametrize("norm_first", [False, True])
def test_one_adam_step_leaves_equal_weights(norm_first):
    glass, fast = _pair(2, norm_first=norm_first)
    src, tgt_in, tgt_out = _padded_batch()
    glass(src, tgt_in, tgt_out)[1].backward()
    fast(*_t(src, tgt_in, tgt_out))[1].backward()
    # the paper's Adam: betas (0.9, 0.98), eps 1e-9, no weight decay
    optim.AdamW(glass.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9,
                weight_decay=0.0).step()
    torch.optim.AdamW(fast.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9,
                      weight_decay=0.0).step()
    theirs = dict(fast.named_parameters())
    for name, p in glass.named_parameters():
        if name.endswith("key.bias"):
            # Its true gradient is 0 (one number added to all of a query's scores leaves
            # softmax unchanged), so Adam with eps 1e-9 steps by +-lr on rounding noise.
            assert np.abs(p.grad).max() < 1e-6 and theirs[name].grad.abs().max() < 1e-6
            continue
        np.testing.assert_allclose(p.data, theirs[name].detach().numpy(), rtol=0, atol=1e-5,
                                   err_msg=name)


def test_explicit_attention_math_path_matches_the_fused_kernel():
    glass, fast = _pair(4, fused=False)
    _, fused = _pair(4, fused=True)
    src, tgt_in, _ = _padded_batch()
    explicit = fast(*_t(src, tgt_in))[0].detach().numpy()
    np.testing.assert_allclose(explicit, fused(*_t(src, tgt_in))[0].detach().numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(glass(src, tgt_in)[0].data, explicit, atol=1e-5)


@pytest.mark.parametrize("engine", ["glass", "fast"])
def test_padding_changes_nothing(engine):
    """A sentence alone and the same sentence padded inside a batch get the same logits:
    the padding mask hides the padded source positions from every query."""
    glass, fast = _pair(5)
    src, tgt_in, _ = _padded_batch()

    def logits(s, t):
        if engine == "glass":
            return glass(s, t)[0].data
        return fast(*_t(s, t))[0].detach().numpy()

    batch = logits(src, tgt_in)
    alone = logits(src[1:2, :3], tgt_in[1:2, :2])
    np.testing.assert_allclose(batch[1, :2], alone[0], atol=1e-5)
    # and the padding really was hidden: without the mask the numbers would differ
    unmasked = glass.config.replace(pad_id=TINY["src_vocab_size"] - 1)
    other = GlassTransformer(unmasked)
    other.load_state_dict(glass.state_dict())
    assert not np.allclose(other(src, tgt_in)[0].data[1, :2], alone[0], atol=1e-4)


def test_loss_ignores_padding_and_smooths_labels():
    glass, _ = _pair(6, label_smoothing=0.1)
    src, tgt_in, tgt_out = _padded_batch()
    logits, loss = glass(src, tgt_in, tgt_out)
    z = logits.data.astype(np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    keep = tgt_out != PAD
    picked = np.take_along_axis(logp, tgt_out[..., None], -1)[..., 0]
    nll = -picked[keep].mean()
    smooth = -logp.mean(-1)[keep].mean()
    assert abs(loss.item() - (0.9 * nll + 0.1 * smooth)) < 1e-5
    _, plain = glass(src, tgt_in, tgt_out, label_smoothing=0.0)
    assert abs(plain.item() - nll) < 1e-5


def test_decoder_is_causal_and_reads_the_source():
    _, fast = _pair(7)
    src, tgt_in, _ = _padded_batch()
    base = fast(*_t(src, tgt_in))[0].detach()
    later = tgt_in.copy()
    later[0, 3] = 11  # change a later target token: earlier positions must not move
    changed = fast(*_t(src, later))[0].detach()
    torch.testing.assert_close(changed[0, :3], base[0, :3])
    assert not torch.allclose(changed[0, 3], base[0, 3])
    other_src = src.copy()
    other_src[0, 0] = 3  # change the source: every target position may move
    assert not torch.allclose(fast(*_t(other_src, tgt_in))[0][0, 0].detach(), base[0, 0])


def test_checkpoint_from_one_engine_loads_in_the_other(tmp_path):
    glass, fast = _pair(8, norm_first=True)
    save_checkpoint(tmp_path / "ckpt", fast.state_dict(), fast.config)
    config = load_config(tmp_path / "ckpt")
    assert config == glass.config
    reborn = GlassTransformer(config)
    reborn.load_weights(load_weights(tmp_path / "ckpt"))
    src, tgt_in, _ = _padded_batch()
    np.testing.assert_allclose(reborn(src, tgt_in)[0].data,
                               fast(*_t(src, tgt_in))[0].detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_both_engines_count_and_load_weights_alike(positional):
    glass, fast = _pair(9, positional=positional)
    weights = glass.state_dict()
    assert glass.num_params() == fast.num_params() == sum(w.size for w in weights.values())
    first = next(iter(weights))
    for model in (glass, fast):
        with pytest.raises(ShapeError, match=first):
            model.load_weights({k: w for k, w in weights.items() if k != first})
        with pytest.raises(ShapeError, match=first):
            model.load_weights({**weights, first: np.zeros((1, *weights[first].shape))})


def test_parameter_names_and_shapes_follow_the_contract():
    glass, _ = _pair(9, norm_first=True, tie_embeddings=False, tgt_vocab_size=15)
    shapes = {n: p.shape for n, p in glass.named_parameters()}
    assert shapes["src_embedding.weight"] == (13, 16)
    assert shapes["tgt_embedding.weight"] == (15, 16)
    assert shapes["lm_head.weight"] == (16, 15)
    assert shapes["encoder.layers.1.self_attn.query.weight"] == (16, 16)
    assert shapes["decoder.layers.0.cross_attn.key.weight"] == (16, 16)
    assert shapes["decoder.layers.0.mlp.fc.weight"] == (16, 40)  # (n_embd, ffn_dim)
    assert shapes["decoder.layers.1.ln_3.scale"] == (16,)
    assert shapes["encoder.ln_f.bias"] == (16,) and "decoder.ln_f.scale" in shapes
    post, _ = _pair(9)  # post-norm: no final norms; tied: one table, no lm_head
    names = {n for n, _ in post.named_parameters()}
    assert "encoder.ln_f.scale" not in names and "lm_head.weight" not in names
    assert "token_embedding.weight" in names and "src_embedding.weight" not in names


def test_bad_configs_and_inputs_are_one_line_errors():
    with pytest.raises(ConfigError, match="shared vocabulary"):
        TransformerConfig(src_vocab_size=10, tgt_vocab_size=12, tie_embeddings=True)
    with pytest.raises(ConfigError, match="ffn_dim"):
        TransformerConfig(n_embd=16, n_head=2, ffn_dim=0)
    with pytest.raises(ConfigError, match="activation must be one of gelu, gelu_exact, relu"):
        TransformerConfig(activation="swish")
    with pytest.raises(ConfigError, match="pad_id"):
        TransformerConfig(pad_id=-1)
    glass, fast = _pair(10)
    with pytest.raises(ShapeError, match="max_len"):
        glass(np.ones((1, 13), dtype=np.int64), np.ones((1, 2), dtype=np.int64))
    with pytest.raises(ShapeError, match="batch, time"):
        fast(torch.ones(3, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))


@pytest.mark.parametrize("tie", [True, False])
def test_loss_without_logits_scores_only_real_targets_and_is_the_same(tie):
    """Training asks for the loss only (`return_logits=False`): the output layer then
    scores just the non-padding target positions. Same loss and gradients as the full
    logits, and as the glass box's."""
    overrides = {"tie_embeddings": tie, "label_smoothing": 0.1}
    glass, fast = _pair(**overrides)
    src, tgt_in, tgt_out = _padded_batch()
    _, g_loss = glass(src, tgt_in, tgt_out)
    logits, full = fast(*_t(src, tgt_in, tgt_out))
    full.backward()
    full_grads = {n: p.grad.clone() for n, p in fast.named_parameters()}
    fast.zero_grad()
    none, loss = fast(*_t(src, tgt_in, tgt_out), return_logits=False)
    loss.backward()
    assert none is None and logits.shape == (3, 5, 13)
    assert abs(loss.item() - full.item()) < 1e-6 and abs(loss.item() - g_loss.item()) < 1e-5
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p.grad, full_grads[name], rtol=1e-5, atol=1e-6,
                                   msg=name)
