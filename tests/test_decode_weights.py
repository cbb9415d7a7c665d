"""One-token steps on a CPU multiply by row-major copies of the weights: same numbers,
never a stale copy."""

import threading

import pytest
import torch

from chalklm.config import GPTConfig
from chalklm.models import GPT, decode_weights
from chalklm.models.kv_cache import KVCache
from chalklm.models.nn import Linear


def make_layer(n_in=24, n_out=40, bias=True, seed=0):
    torch.manual_seed(seed)
    layer = Linear(n_in, n_out, bias)
    if bias:
        with torch.no_grad():
            layer.bias.normal_()
    return layer


@pytest.fixture
def layer():
    return make_layer()


@pytest.fixture(autouse=True)
def opted_in():
    """These tests call layers as a generation step does: inside `decoding()`."""
    with decode_weights.decoding():
        yield


def ordinary(x, layer):
    return x @ layer.weight + (0 if layer.bias is None else layer.bias)


@pytest.mark.parametrize("rows", [1, 2, 3, 8, 16])
@pytest.mark.parametrize("bias", [True, False])
def test_the_product_is_the_ordinary_one(rows, bias):
    layer = make_layer(bias=bias)
    x = torch.randn(rows, 1, 24)
    with torch.inference_mode():
        got = decode_weights.product(x, *decode_weights.packed(layer, (layer,)))
    assert got.shape == (rows, 1, 40)
    torch.testing.assert_close(got, ordinary(x, layer), atol=1e-5, rtol=1e-5)


def test_layers_reading_one_input_become_one_product():
    """Query, key and value: three layers, one joined copy, one product, split after."""
    owner = torch.nn.Module()
    layers = [make_layer(24, 24, seed=s) for s in range(3)]
    x = torch.randn(2, 1, 24)
    with torch.inference_mode():
        joined = decode_weights.product(x, *decode_weights.packed(owner, layers))
    for part, layer in zip(joined.split(24, dim=-1), layers):
        torch.testing.assert_close(part, ordinary(x, layer), atol=1e-5, rtol=1e-5)


def test_only_generation_opts_in():
    """Outside `decoding()` (training, evaluation, a learner calling the model) every layer
    multiplies the plain way, even for one row without gradients."""
    layer, one = make_layer(8, 4), torch.randn(1, 1, 8)
    outside = []

    def elsewhere():  # another thread: `decoding()` holds for the thread that entered it
        with torch.no_grad():
            outside.append(decode_weights.applies(one))
            layer(one)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert outside == [False]
    assert "_decode_weights" not in layer.__dict__  # no copy made
    with torch.no_grad():
        assert decode_weights.applies(one)  # this thread is inside `decoding()`


def test_it_applies_only_to_a_few_float32_rows_without_gradients():
    one = torch.randn(1, 1, 8)
    assert not decode_weights.applies(one)  # gradients on: training or its backward
    with torch.no_grad():
        assert decode_weights.applies(one)
        rows = decode_weights.MAX_ROWS
        assert decode_weights.applies(torch.randn(rows, 1, 8))
        assert not decode_weights.applies(torch.randn(rows + 1, 1, 8))
        assert not decode_weights.applies(torch.randn(1, rows + 1, 8))  # a longer prompt
        assert not decode_weights.applies(one.to(torch.bfloat16))


def test_a_changed_weight_is_never_read_from_a_stale_copy(layer):
    """An optimizer step and a load write into the weight in place; the next decode step
    must use the new numbers."""
    x = torch.randn(1, 1, 24)
    with torch.inference_mode():
        first = layer(x)
    with torch.no_grad():
        layer.weight.mul_(2)  # as an optimizer step would
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), x @ layer.weight + layer.bias)
        assert not torch.allclose(layer(x), first)
    with torch.no_grad():
        layer.bias.add_(1)  # a bias alone changes too
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), x @ layer.weight + layer.bias)
    state = {k: torch.randn_like(v) for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), x @ state["weight"] + state["bias"])


def test_a_weight_moved_to_a_new_storage_is_never_read_from_a_stale_copy(layer):
    """There and back through bf16: same Parameter, same version, new (rounded) numbers in
    a new storage, which may even sit where the old one was."""
    x = torch.randn(1, 1, 24)
    with torch.inference_mode():
        layer(x)
    layer.to(torch.bfloat16).to(torch.float32)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), x @ layer.weight + layer.bias)


@pytest.mark.parametrize("tie", [True, False])
def test_a_cached_step_gives_the_logits_of_a_full_forward(tie):
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32,
                    tie_embeddings=tie)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    ids = torch.randint(0, 50, (3, 6))
    with torch.inference_mode():
        full, _ = model(ids)
        cache = KVCache(cfg, 3)
        model(ids[:, :5], cache=cache)
        step, _ = model(ids[:, 5:], cache=cache)
    torch.testing.assert_close(step[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)


def test_compiled_code_elsewhere_never_reads_a_copy_unchecked():
    """A compiled model used outside generation (no eager check just before) makes the
    copy inside the step instead of reading a possibly stale one."""
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    ids = torch.randint(0, 50, (1, 5))
    compiled = torch.compile(model)
    with torch.inference_mode():
        model(ids)  # eager: makes the copies (5 rows)
        compiled(ids)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    with torch.inference_mode():
        got, _ = compiled(ids)  # first, before any eager step could remake the copies
        want, _ = model(ids)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_a_check_skipped_in_one_thread_is_not_skipped_in_another(monkeypatch):
    """`checked()` in one thread (generating there) must not let another thread read its
    own model's copies unchecked: a web server generates for two clients at once."""
    import threading

    from chalklm.generation import generate

    monkeypatch.setenv("CHALKLM_PURE_PYTHON", "1")  # the PyTorch step, which reads the copies
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=16)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10 if p.dim() > 1 else 1)
    before = generate(model, [[1, 2]], 8, temperature=0)  # the copies are made
    with torch.no_grad():
        model.token_embedding.weight.mul_(-1)  # a change the copies must follow
    fresh = GPT(config).eval()
    fresh.load_state_dict(model.state_dict())
    want = generate(fresh, [[1, 2]], 8, temperature=0)
    assert want != before
    inside, release = threading.Event(), threading.Event()

    def another_generation():
        with decode_weights.checked():
            inside.set()
            release.wait(30)

    other = threading.Thread(target=another_generation)
    other.start()
    inside.wait(30)
    try:
        got = generate(model, [[1, 2]], 8, temperature=0)
    finally:
        release.set()
        other.join()
    assert got == want
