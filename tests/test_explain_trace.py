"""The explain trace runs the model's own modules: its logits are the model's, and both
engines give the same numbers for every intermediate."""

import numpy as np
import pytest
import torch

from chalklm.config import GPTConfig
from chalklm.errors import ConfigError
from chalklm.explain.trace import check_supported, trace
from chalklm.models import GPT as FastGPT
from chalklm.scratch import manual_seed
from chalklm.scratch.gpt import GPT as GlassGPT

IDS = [3, 1, 4, 1, 5, 9, 2, 6]


def twins(**changes):
    """The same random weights in the glass box and the fast engine, in eval mode."""
    manual_seed(0)
    config = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8, **changes)
    glass = GlassGPT(config)
    fast = FastGPT(config)
    fast.load_weights(glass.state_dict())
    glass.eval()
    fast.eval()
    return glass, fast


def flat(tree, prefix=""):
    """name -> array for every array in a trace."""
    if isinstance(tree, np.ndarray):
        return {prefix: tree}
    if isinstance(tree, dict):
        pairs = [(f"{prefix}.{key}", value) for key, value in tree.items()]
    elif isinstance(tree, list):
        pairs = [(f"{prefix}[{i}]", value) for i, value in enumerate(tree)]
    else:
        return {}
    return {k: v for name, value in pairs for k, v in flat(value, name).items()}
    return {}


@pytest.mark.parametrize("changes", [{}, {"positional": "sinusoidal", "tie_embeddings": False},
                                     {"activation": "relu", "bias": False},
                                     {"activation": "gelu_exact", "ffn_dim": 24},
                                     {"norm": "rmsnorm", "mlp": "swiglu"},
                                     {"positional": "rope", "n_kv_head": 1, "qk_norm": True,
                                      "norm": "rmsnorm", "mlp": "swiglu", "bias": False}])
def test_both_engines_give_the_same_numbers(changes):
    glass, fast = twins(**changes)
    a, b = flat(trace(glass, IDS)), flat(trace(fast, IDS))
    assert a.keys() == b.keys() and len(a) > 30
    for name in a:
        assert a[name].shape == b[name].shape, name
        finite = np.isfinite(a[name])
        assert (finite == np.isfinite(b[name])).all(), name
        np.testing.assert_allclose(a[name][finite], b[name][finite], atol=1e-5, err_msg=name)


@pytest.mark.parametrize("engine", ["scratch", "torch"])
@pytest.mark.parametrize("changes", [{}, {"norm": "rmsnorm", "mlp": "swiglu"},
                                     {"positional": "rope", "n_kv_head": 1, "qk_norm": True}])
def test_traced_logits_are_the_models_own(engine, changes):
    glass, fast = twins(**changes)
    model = glass if engine == "scratch" else fast
    traced = trace(model, IDS)["output"]["logits"]
    if engine == "scratch":
        own = model(np.array([IDS]))[0].data[0]
    else:
        with torch.no_grad():
            own = model(torch.tensor([IDS]))[0][0].numpy()
    np.testing.assert_allclose(traced, own, atol=1e-6)


def test_attention_weights_are_what_the_model_mixes_with():
    _, fast = twins()
    result = trace(fast, IDS)
    T = len(IDS)
    for layer in result["layers"]:
        att = layer["attention"]
        weights = att["weights"]
        assert weights.shape == (2, T, T)
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
        assert (weights[:, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0).all()
        assert np.isfinite(att["scores"]).all()  # the scores before the mask hides any
        scores = np.where(np.triu(np.ones((T, T)), 1) > 0, -np.inf, att["scores"])
        softmax = np.exp(scores - scores.max(-1, keepdims=True))
        np.testing.assert_allclose(weights, softmax / softmax.sum(-1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(result["output"]["probs"].sum(-1), 1.0, atol=1e-5)
    assert result["mask"].tolist() == np.triu(np.ones((T, T)), 1).tolist()


def test_layer_norm_statistics_and_residual_sizes():
    glass, _ = twins()
    result = trace(glass, IDS)
    first = result["layers"][0]
    x = result["embedding"]["sum"]
    np.testing.assert_allclose(first["ln_1"]["mean"], x.mean(-1), atol=1e-6)
    out = first["residual_2"]["out"]
    np.testing.assert_allclose(first["residual_2"]["norm"], np.linalg.norm(out, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(result["embedding"]["sum"],
                               result["embedding"]["token"] + result["embedding"]["position"])
    assert "chalklm/scratch/attention.py SelfAttention" in first["attention"]["code"]
    assert first["ln_1"]["code"] == "chalklm/scratch/nn.py LayerNorm"


def test_an_untraced_piece_is_named():
    from types import SimpleNamespace

    with pytest.raises(ConfigError, match="positional='alibi'"):
        check_supported(SimpleNamespace(positional="alibi"))  # a kind chalklm may add later


def test_rope_adds_nothing_and_gqa_shares_key_heads():
    glass, _ = twins(positional="rope", n_kv_head=1)
    result = trace(glass, IDS)
    np.testing.assert_allclose(result["embedding"]["sum"], result["embedding"]["token"])
    assert result["embedding"]["position"].shape == (len(IDS), 4)  # cos, sin per head number
    attention = result["layers"][0]["attention"]
    assert attention["rope"] and attention["kv_group"] == 2
    assert attention["weights"].shape == (2, len(IDS), len(IDS))  # one map per query head


def test_prompt_longer_than_the_context_is_refused():
    glass, _ = twins()
    with pytest.raises(ConfigError, match="block_size"):
        trace(glass, [1] * 17)


def test_rmsnorm_divides_by_the_root_mean_square_and_subtracts_nothing():
    glass, _ = twins(norm="rmsnorm")
    result = trace(glass, IDS)
    norm = result["layers"][0]["ln_1"]
    x = result["embedding"]["sum"]
    assert norm["kind"] == "rmsnorm" and not norm["mean"].any() and not norm["bias"].any()
    np.testing.assert_allclose(norm["std"], np.sqrt((x * x).mean(-1) + 1e-5), rtol=1e-5)
    assert norm["code"] == "chalklm/scratch/nn.py RMSNorm"
