"""The Llama-family pieces (RMSNorm, RoPE, SwiGLU, grouped-query attention, qk-norm) as
switches on the same GPT: each proven equal across the two engines, alone and together,
with and without the KV cache, through a checkpoint, and stepped around by the C step."""

import numpy as np
import pytest
import torch
from equivalence import (
    assert_one_adamw_step_leaves_equal_weights,
    assert_same_logits_loss_and_gradients,
)

import chalklm.scratch as cs
from chalklm.checkpoint import load_config, load_weights, save_checkpoint
from chalklm.config import GPTConfig, preset_keys
from chalklm.errors import ConfigError
from chalklm.generation import generate, stream
from chalklm.models import GPT as TorchGPT
from chalklm.models import fused_step
from chalklm.models.kv_cache import KVCache as TorchCache
from chalklm.scratch.models import GPT as GlassGPT
from chalklm.training.config import load_run_config

TINY = dict(vocab_size=13, block_size=16, n_layer=2, n_head=4, n_embd=16)
LLAMA = preset_keys("llama", TINY["n_head"])
# each piece alone, then combinations up to the whole Llama design (and qk-norm on top)
COMBOS = {
    "rmsnorm": dict(norm="rmsnorm"),
    "rope": dict(positional="rope"),
    "swiglu": dict(mlp="swiglu"),
    "gqa": dict(n_kv_head=2),
    "mqa": dict(n_kv_head=1),
    "qk_norm": dict(qk_norm=True),
    "llama": LLAMA,
    "llama_qk_norm_untied": {**LLAMA, "qk_norm": True, "tie_embeddings": False},
    "llama_ffn_theta": {**LLAMA, "ffn_dim": 24, "rope_theta": 500.0, "norm_eps": 1e-6},
}


def _pair(combo, seed=0, fused=True, scale=1.0):
    cs.manual_seed(seed)
    config = GPTConfig(**{**TINY, **COMBOS[combo]})
    glass = GlassGPT(config)
    if scale != 1.0:  # strong, varied preferences, so generated texts differ
        for p in glass.parameters():
            if p.ndim > 1:
                p.data *= scale
    fast = TorchGPT(config, fused_attention=fused)
    fast.load_weights(glass.state_dict())
    return glass, fast


def _batch(seed=1, T=16):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, TINY["vocab_size"], size=(3, T))
    targets = rng.integers(0, TINY["vocab_size"], size=(3, T))
    targets[0, :2] = -1
    return ids, targets


@pytest.mark.parametrize("combo", COMBOS)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "math"])
def test_same_weights_same_logits_loss_and_gradients(combo, fused):
    glass, fast = _pair(combo, fused=fused)
    assert_same_logits_loss_and_gradients(glass, fast, *_batch())


@pytest.mark.parametrize("combo", COMBOS)
def test_one_adamw_step_leaves_equal_weights(combo):
    glass, fast = _pair(combo, seed=2)
    assert_one_adamw_step_leaves_equal_weights(glass, fast, *_batch(3))


def test_the_pieces_have_the_shapes_their_names_promise():
    config = GPTConfig(**{**TINY, **LLAMA, "qk_norm": True})
    shapes = {name: tuple(p.shape) for name, p in TorchGPT(config).named_parameters()}
    hs = config.head_size
    assert shapes["blocks.0.attn.key.weight"] == (16, 2 * hs)  # 2 key/value heads of 4
    assert shapes["blocks.0.attn.q_norm.scale"] == (hs,)
    assert shapes["blocks.0.mlp.gate.weight"] == (16, config.hidden_size)
    assert not any("bias" in n or "position" in n for n in shapes)  # no biases, no table
    assert "blocks.0.ln_1.scale" in shapes  # RMSNorm: a scale and nothing else


@pytest.mark.parametrize("combo", COMBOS)
@pytest.mark.parametrize("engine", [0, 1], ids=["scratch", "torch"])
def test_greedy_is_the_same_with_and_without_the_cache(combo, engine):
    model = _pair(combo, seed=3, scale=20.0)[engine].eval()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 1], [12]]  # left-padded in one batch
    cached = generate(model, prompts, 9, temperature=0)
    assert cached == generate(model, prompts, 9, temperature=0, use_cache=False)
    assert cached == [generate(model, p, 9, temperature=0)[0] for p in prompts]


@pytest.mark.parametrize("combo", COMBOS)
def test_cached_logits_equal_a_full_forward_in_both_engines(combo):
    """Not only the same argmax: the same numbers, token after token, from the cache."""
    from chalklm.scratch.kv_cache import KVCache as GlassCache

    glass, fast = _pair(combo, seed=5)
    ids = _batch(6)[0][:1]
    with cs.no_grad():
        full = glass(ids)[0].data[0]
        cache = GlassCache(glass.config, 1)
        steps = [glass(ids[:, :5], cache=cache)[0].data[0, -1]]
        steps += [glass(ids[:, t:t + 1], cache=cache)[0].data[0, -1] for t in range(5, 16)]
    np.testing.assert_allclose(np.stack(steps), full[4:], atol=1e-5)
    with torch.no_grad():
        cache = TorchCache(fast.config, 1)
        steps = [fast(torch.from_numpy(ids[:, :5]), cache=cache)[0][0, -1]]
        steps += [fast(torch.from_numpy(ids[:, t:t + 1]), cache=cache)[0][0, -1]
                  for t in range(5, 16)]
    np.testing.assert_allclose(torch.stack(steps).numpy(), full[4:], atol=1e-5)


@pytest.mark.parametrize("combo", ["gqa", "llama"])
def test_the_cache_holds_only_the_key_value_heads(combo):
    _, fast = _pair(combo)
    cache = TorchCache(fast.config, 1)
    assert cache.keys.shape[2] == fast.config.kv_heads < fast.config.n_head


@pytest.mark.parametrize("combo", COMBOS)
def test_a_checkpoint_of_any_combination_loads_in_either_engine(combo, tmp_path):
    glass, fast = _pair(combo, seed=4, scale=20.0)
    folder = save_checkpoint(tmp_path / "ckpt", fast.state_dict(), fast.config)
    config = load_config(folder)
    assert config == fast.config
    again = GlassGPT(config).eval()
    again.load_state_dict(load_weights(folder))
    prompt = [[1, 2, 3]]
    assert generate(again, prompt, 8, temperature=0) == \
        generate(fast.eval(), prompt, 8, temperature=0)


@pytest.mark.parametrize("combo", COMBOS)
def test_the_c_step_computes_every_piece_too(combo, monkeypatch):
    """Generating one row in float32 on a CPU, the C step (models/fused_step.py) takes the
    tokens after the prompt: it gives the tokens the PyTorch step gives."""
    monkeypatch.delenv("CHALKLM_PURE_PYTHON", raising=False)
    _, fast = _pair(combo, seed=6, scale=20.0)
    fast.eval()
    if fused_step._decode is not None:
        assert fused_step.applies(fast, TorchCache(fast.config, 1))
    with_c = generate(fast, [[1, 2, 3]], 12, temperature=0)
    monkeypatch.setenv("CHALKLM_PURE_PYTHON", "1")
    assert generate(fast, [[1, 2, 3]], 12, temperature=0) == with_c


def test_the_c_step_steps_aside_for_a_changed_model(monkeypatch):
    """A learner who edits the model sees the edit: a subclass is not chalklm's GPT."""
    monkeypatch.delenv("CHALKLM_PURE_PYTHON", raising=False)  # a test of the C step's choice

    class Doubled(TorchGPT):
        def forward(self, ids, targets=None, cache=None):
            logits, loss = super().forward(ids, targets, cache)
            return -logits, loss

    config = GPTConfig(**TINY)
    torch.manual_seed(0)
    plain = TorchGPT(config).eval()
    changed = Doubled(config).eval()
    changed.load_state_dict(plain.state_dict())
    if fused_step._decode is not None:
        assert fused_step.applies(plain, TorchCache(config, 1))
    assert not fused_step.applies(changed, TorchCache(config, 1))
    # greedy on negated logits picks the least likely token: the change shows
    assert generate(changed, [[1, 2]], 6, temperature=0) != \
        generate(plain, [[1, 2]], 6, temperature=0)
    # and generation says which code ran, and why the C step did not
    step = next(stream(changed, [[1, 2]], 2, temperature=0))
    assert step.path.startswith("PyTorch, models/gpt.py") and "Doubled" in step.path
    plain_path = next(stream(plain, [[1, 2]], 2, temperature=0)).path
    if fused_step._decode is not None:
        assert plain_path == "the C step (models/fused_step.py)"
    else:
        assert "no C step: not built" in plain_path


def test_rope_scores_depend_only_on_the_distance_between_tokens():
    from chalklm.scratch.rope import rope_table, rotate

    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 8))
    table = rope_table(32, 8)

    def score(tq, tk):
        qr = rotate(cs.Tensor(q[None, None, None]), table[tq:tq + 1]).data.ravel()
        kr = rotate(cs.Tensor(k[None, None, None]), table[tk:tk + 1]).data.ravel()
        return qr @ kr

    assert score(5, 2) == pytest.approx(score(25, 22), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)
    # a rotation keeps the length of every pair
    turned = rotate(cs.Tensor(q[None, None, None]), table[7:8]).data.ravel()
    assert np.linalg.norm(turned) == pytest.approx(np.linalg.norm(q), rel=1e-5)


@pytest.mark.parametrize("keys,message", [
    (dict(n_kv_head=3), "multiple of n_kv_head"),
    (dict(positional="rope", n_head=2, n_embd=6), "must be even"),
    (dict(norm="batchnorm"), "norm must be one of"),
    (dict(mlp="geglu"), "mlp must be one of"),
    (dict(ffn_dim=0), "ffn_dim"),
    (dict(rope_theta=-1.0), "rope_theta"),
    (dict(qk_norm="yes"), "qk_norm"),
])
def test_an_impossible_combination_is_one_clear_error(keys, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**{**TINY, **keys})


def test_the_preset_fills_in_what_the_other_keys_do_not_say():
    model, _ = load_run_config(overrides=["preset=llama", "n_head=6", "n_embd=48"])
    assert (model["norm"], model["positional"], model["mlp"], model["bias"]) == \
        ("rmsnorm", "rope", "swiglu", False)
    assert model["n_kv_head"] == 2  # a third of the heads carry keys and values
    model, _ = load_run_config(overrides=["preset=llama", "n_kv_head=1", "norm=layernorm"])
    assert model["n_kv_head"] == 1 and model["norm"] == "layernorm"
    with pytest.raises(ConfigError, match="preset must be one of"):
        load_run_config(overrides=["preset=mistral"])


def test_the_twins_count_and_load_alike():
    glass, fast = _pair("llama")
    assert glass.num_params() == fast.num_params()
    learned_glass, learned_fast = _pair("rmsnorm")  # with learned positions
    assert learned_glass.num_params() == learned_fast.num_params()
    assert learned_glass.num_params(non_embedding=False) == \
        learned_fast.num_params(non_embedding=False)
    glass.load_weights({k: v for k, v in fast.state_dict().items()})  # torch tensors too
    with pytest.raises(Exception, match="blocks.0.attn.key.weight"):
        glass.load_weights({**glass.state_dict(),
                            "blocks.0.attn.key.weight": np.zeros((16, 16))})


def test_chalklm_sample_runs_a_llama_checkpoint_in_both_engines_alike(tmp_path, capsys):
    from chalklm.cli import main
    from chalklm.tokenizers import CharTokenizer

    tokenizer = CharTokenizer("abcdefgh \nROMEO:")
    config = GPTConfig(**{**TINY, **LLAMA, "qk_norm": True,
                          "vocab_size": tokenizer.vocab_size})
    cs.manual_seed(7)
    glass = GlassGPT(config)
    for p in glass.parameters():
        if p.ndim > 1:
            p.data *= 20
    folder = save_checkpoint(tmp_path / "ckpt", glass.state_dict(), config, tokenizer)
    texts = []
    for engine in ("torch", "scratch"):
        with pytest.raises(SystemExit) as done:
            main(["sample", "--checkpoint", str(folder), "--prompt", "ROMEO:",
                  "--max-new-tokens", "8", "--temperature", "0", "--engine", engine])
        assert done.value.code == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and texts[0].startswith("ROMEO:") and len(texts[0]) > 8
