"""The one-token step in C (`_decode.c`, models/fused_step.py) computes what GPT.forward
with a KV cache computes, and generation gives the same tokens with it as without it."""

import multiprocessing

import numpy as np
import pytest
import torch
from c_build import c_compiler, needs

from chalklm.config import GPTConfig
from chalklm.generation import generate, stream
from chalklm.models import GPT, decode_checked, decode_weights, fused_step
from chalklm.models.kv_cache import KVCache

# These tests are of the C step itself: CHALKLM_PURE_PYTHON=1, if set, does not apply here.
# Those that call it are skipped where it was not built (no C compiler); the others check
# that generation without it gives the same tokens.
needs_c = needs(fused_step._decode, "chalklm.models._decode")


@pytest.fixture(autouse=True)
def c_step_allowed(monkeypatch):
    monkeypatch.delenv("CHALKLM_PURE_PYTHON", raising=False)


def make_model(seed=0, **overrides) -> GPT:
    """Random weights scaled up, so that the scores differ enough to pick clear tokens."""
    config = dict(vocab_size=29, block_size=24, n_layer=2, n_head=4, n_embd=32)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**(config | overrides))).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8 if p.dim() > 1 else 1)
    return model


def test_the_extension_is_built_where_a_compiler_is():
    """An install with a C compiler builds it; fast generation on a CPU needs it."""
    assert fused_step._decode is not None or c_compiler() is None, \
        f"chalklm.models._decode was not built, though {c_compiler()} is here"


def test_without_the_c_module_it_never_applies(monkeypatch):
    model = make_model()
    with monkeypatch.context() as patch:
        patch.setattr(fused_step, "_decode", None)  # as where it was not built
        assert not fused_step.applies(model, KVCache(model.config, 1))
    monkeypatch.setenv("CHALKLM_PURE_PYTHON", "1")  # as where it is switched off
    assert not fused_step.applies(model, KVCache(model.config, 1))


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "gelu_exact", "relu"])
@needs_c
def test_each_step_gives_the_logits_of_a_full_forward(positional, tie, bias, activation):
    model = make_model(positional=positional, tie_embeddings=tie, bias=bias,
                       activation=activation)
    cache = assert_steps_give_the_full_forward(model)
    assert cache.length == 24


def assert_steps_give_the_full_forward(stepped, reference=None, T: int = 24) -> KVCache:
    """Each C step of `stepped`, from the first token to the last position, gives the
    logits of `reference`'s (default: the same model's) full forward; returns the cache."""
    ids = torch.randint(0, 29, (1, T))
    with torch.inference_mode():
        full, _ = (reference or stepped)(ids)
        cache = KVCache(stepped.config, 1)
        step = fused_step.FusedStep(stepped, cache)
        for t in range(T):
            np.testing.assert_allclose(step(int(ids[0, t]))[0], full[0, t].numpy(),
                                       atol=2e-5, rtol=2e-5)
    return cache


LLAMA = dict(norm="rmsnorm", positional="rope", mlp="swiglu", bias=False, n_kv_head=2)


@pytest.mark.parametrize("pieces", [
    dict(norm="rmsnorm"), dict(positional="rope"), dict(mlp="swiglu"), dict(n_kv_head=2),
    dict(n_kv_head=1), dict(qk_norm=True), LLAMA, {**LLAMA, "qk_norm": True, "ffn_dim": 20,
                                                   "rope_theta": 500.0, "norm_eps": 1e-6},
], ids=["rmsnorm", "rope", "swiglu", "gqa", "mqa", "qk_norm", "llama", "llama_more"])
@needs_c
def test_the_llama_pieces_step_as_a_full_forward(pieces):
    assert_steps_give_the_full_forward(make_model(**pieces))


@pytest.mark.parametrize("n_embd, n_head, vocab", [(36, 3, 7), (20, 5, 101)])
@needs_c
def test_sizes_that_are_no_multiple_of_the_vector_width(n_embd, n_head, vocab):
    """Rows of 36 or 20 numbers and heads of 12 or 4: the loops' leftovers count too."""
    model = make_model(n_embd=n_embd, n_head=n_head, vocab_size=vocab)
    ids = torch.randint(0, vocab, (1, 10))
    with torch.inference_mode():
        full, _ = model(ids)
        step = fused_step.FusedStep(model, KVCache(model.config, 1))
        got = np.stack([step(int(i))[0] for i in ids[0]])
    np.testing.assert_allclose(got, full[0].numpy(), atol=2e-5, rtol=2e-5)


@needs_c
def test_one_thread_and_many_agree(monkeypatch):
    model = make_model(n_embd=48, n_head=3)  # rows that do not split evenly
    ids = torch.randint(0, 29, (12,)).tolist()
    logits = {}
    for n in (1, 2, 3, 5):
        monkeypatch.setattr(fused_step, "threads", lambda n=n: n)
        with torch.inference_mode():
            step = fused_step.FusedStep(model, KVCache(model.config, 1))
            logits[n] = np.stack([step(i)[0] for i in ids])
    for n in (2, 3, 5):
        np.testing.assert_allclose(logits[n], logits[1], atol=1e-5, rtol=1e-5)


@needs_c
def test_it_applies_to_one_float32_row_on_a_cpu_only():
    model = make_model()
    assert fused_step.applies(model, KVCache(model.config, 1))
    assert not fused_step.applies(model, KVCache(model.config, 2))
    padded = KVCache(model.config, 1)
    padded.reset(np.array([2]))
    assert not fused_step.applies(model, padded)
    assert not fused_step.applies(make_model().to(torch.float16), KVCache(model.config, 1))
    assert fused_step.applies(model.to(torch.bfloat16), KVCache(model.config, 1))


@pytest.mark.parametrize("pieces", [dict(positional="sinusoidal"), LLAMA],
                         ids=["gpt2", "llama"])
@needs_c
def test_a_bfloat16_model_steps_with_its_own_weights_in_float32_arithmetic(pieces):
    """bfloat16 weights (half the bytes to read), widened as they are read: the logits of
    the same weights in float32, to float32's rounding."""
    import copy

    half = make_model(**pieces).to(torch.bfloat16)
    wide = copy.deepcopy(half).float()  # the same (rounded) numbers, tables included
    assert_steps_give_the_full_forward(half, wide)


@needs_c
def test_what_does_not_fit_the_config_falls_back_instead_of_reading_out_of_bounds():
    """The C step walks every tensor by the config's sizes: a cache of another shape, an
    embedding with more rows than vocab_size, or one half-precision layer, and generation
    takes the PyTorch step instead (the same tokens, no crash)."""
    model = make_model()
    other = GPTConfig(vocab_size=29, block_size=24, n_layer=2, n_head=2, n_embd=32)
    assert not fused_step.applies(model, KVCache(other, 1))  # (2 heads of 16, not 4 of 8)
    assert not fused_step.applies(model, KVCache(model.config.replace(n_layer=1), 1))
    mixed = make_model()
    mixed.blocks[1].mlp.proj.to(torch.bfloat16)
    assert not fused_step.applies(mixed, KVCache(model.config, 1))
    longer = make_model()
    with torch.no_grad():
        longer.token_embedding.weight = torch.nn.Parameter(torch.randn(40, 32))
    assert not fused_step.applies(longer, KVCache(model.config, 1))


@needs_c
def test_a_token_or_position_out_of_range_is_an_error_not_a_read_out_of_bounds():
    model = make_model()
    step = fused_step.FusedStep(model, KVCache(model.config, 1, max_len=3))
    with pytest.raises(ValueError, match="out of range"):
        step(29)
    for token in (1, 2, 3):
        step(token)
    with pytest.raises(ValueError, match="out of range"):
        step(4)  # the cache's 3 columns are full


def greedy_and_sampled(model, prompt, n):
    return (generate(model, prompt, n, temperature=0),
            generate(model, prompt, n, temperature=1.0, top_k=5, seed=3))


@pytest.mark.parametrize("prompt_length", [3, 20])
def test_generation_gives_the_same_tokens_with_and_without_the_c_step(prompt_length,
                                                                      monkeypatch):
    """Past the context too: 40 new tokens slide the 24-position window."""
    model = make_model(seed=1)
    prompt = torch.randint(0, 29, (prompt_length,)).tolist()
    with_c = greedy_and_sampled(model, prompt, 40)
    monkeypatch.setattr(fused_step, "_decode", None)
    assert greedy_and_sampled(model, prompt, 40) == with_c
    assert len(set(with_c[0][0])) > 3  # not one token over and over


def test_changed_weights_are_never_read_from_a_stale_copy(monkeypatch):
    model = make_model(seed=2)
    prompt = [1, 2, 3]
    before = generate(model, prompt, 20, temperature=0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 4)  # in place, as an optimizer step writes
    after = generate(model, prompt, 20, temperature=0)
    monkeypatch.setattr(fused_step, "_decode", None)
    assert after == generate(model, prompt, 20, temperature=0) != before


def test_the_weight_copies_use_one_buffer_shared_with_decode_weights():
    """One copy of the weights, kept until a weight changes: the C step's copies are also
    the ones the PyTorch step (and the prompt) read."""
    model = make_model()
    products, output = fused_step.weights(model)
    again, _ = fused_step.weights(model)
    assert all(a[0] is b[0] for a, b in zip(products, again))
    attn = model.blocks[0].attn
    layers = (attn.query, attn.key, attn.value)
    copy, bias = products[0]
    torch.testing.assert_close(copy, torch.cat([layer.weight for layer in layers], 1).t())
    assert decode_weights.packed(attn, layers)[0] is copy
    assert decode_weights.packed(attn, layers)[1] is bias
    last = products[-1][0]
    assert output.data_ptr() == last.data_ptr() + last.numel() * 4  # one buffer
    with torch.no_grad():
        attn.key.weight.add_(1)
    assert fused_step.weights(model)[0][0][0] is not copy
    assert decode_weights.packed(attn, layers)[0] is not copy


def test_huge_page_buffer_is_aligned_writable_and_sized():
    buffer = fused_step.huge_page_buffer(1000)
    assert buffer.numel() == 1000 and buffer.dtype == torch.float32
    assert buffer.data_ptr() % fused_step.HUGE_PAGE == 0
    buffer.fill_(2.0)
    assert float(buffer.sum()) == 2000.0


def _generate_in_child(queue):
    # PyTorch's own threads (GNU OpenMP) hang in a forked child: keep it to one here,
    # and the C step to two
    torch.set_num_threads(1)
    fused_step.threads = lambda: 2
    queue.put(generate(make_model(seed=1), [1, 2, 3], 10, temperature=0))


def test_a_forked_child_generates_after_the_parent_started_threads():
    """The parent's worker threads do not exist in a forked child: it starts its own."""
    parent = generate(make_model(seed=1), [1, 2, 3], 10, temperature=0)
    assert _generated_in_forked_child() == parent


def _generated_in_forked_child() -> list:
    """What `_generate_in_child` generates in a forked child, which must exit in time."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_generate_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0, "the forked child hung or failed"
    return queue.get(timeout=5)


def test_a_refused_memory_map_gives_ordinary_memory(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(fused_step.mmap, "mmap", refuse)
    buffer = fused_step.huge_page_buffer(1000)
    buffer.fill_(2.0)
    assert buffer.numel() == 1000 and buffer.dtype == torch.float32 and buffer.sum() == 2000


@needs_c
def test_a_child_forked_while_a_step_runs_generates_and_exits():
    """Forked while another thread of the parent is inside C steps (its workers busy, its
    barrier half-passed): the child forgets all of it and generates on its own threads."""
    import threading

    want = generate(make_model(seed=1), [1, 2, 3], 10, temperature=0)
    other = make_model(seed=2)
    cache = KVCache(other.config, 1)
    step = fused_step.FusedStep(other, cache)
    stop = threading.Event()

    def keep_stepping():  # C steps only: PyTorch's own threads do not survive a fork
        while not stop.is_set():
            cache.reset()
            for token in range(other.config.block_size):
                step(token % 29)

    busy = threading.Thread(target=keep_stepping)
    busy.start()
    try:
        for _ in range(4):
            assert _generated_in_forked_child() == want
    finally:
        stop.set()
        busy.join()


def test_the_c_step_was_checked_against_the_python_as_it_is():
    assert decode_checked.changed() == [], (
        "models/gpt.py or a layer it is built of changed: make _decode.c compute the same, then "
        "write the new fingerprints: python -m chalklm.models.decode_checked")


@needs_c
def test_an_edit_to_the_models_code_makes_the_c_step_step_aside(monkeypatch):
    """A learner who edits models/block.py in place sees the edit: the C step, which
    cannot know it, steps aside. Comments and docstrings are not code."""
    source = (decode_checked.HERE / "block.py").read_text()
    assert decode_checked.fingerprint(source + "\n# a note\n") == \
        decode_checked.fingerprint(source.replace('"""', '"""Reworded. ', 1))
    edited = source.replace("F.silu(gate) * up", "F.gelu(gate) * up")
    assert edited != source
    monkeypatch.delenv("CHALKLM_PURE_PYTHON", raising=False)
    monkeypatch.setattr(decode_checked, "current", lambda: {
        **decode_checked.CHECKED, "block.py": decode_checked.fingerprint(edited)})
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    why = fused_step.why_not(model, KVCache(model.config, 1))
    assert why is not None and "models/block.py" in why
    assert "models/block.py" in next(stream(model, [[1, 2]], 2, temperature=0)).path
