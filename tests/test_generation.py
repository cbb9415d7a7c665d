"""Generation: KV cache in both engines, sampling controls, batches, sliding, errors, CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import chalklm
from chalklm.checkpoint import save_checkpoint
from chalklm.cli import main
from chalklm.config import GPTConfig
from chalklm.errors import ChalkError, ConfigError, TokenizerError
from chalklm.generation import (
    Controls,
    beginning,
    draw,
    generate,
    keep_min_p,
    keep_top_k,
    keep_top_p,
    penalize_repeats,
    pick,
    probabilities,
    stream,
)
from chalklm.models import GPT, fused_step
from chalklm.scratch import no_grad
from chalklm.scratch.gpt import GPT as ScratchGPT
from chalklm.scratch.kv_cache import KVCache
from chalklm.tokenizers import BPETokenizer, CharTokenizer

TEXT = "abcdefgh \nROMEO:"


def make_models(positional="learned", block_size=16, vocab_size=13, seed=2):
    """The same random weights in both engines, scaled up so the model has strong,
    varied preferences (a freshly initialised GPT gives nearly flat scores)."""
    cfg = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2,
                    n_embd=16, positional=positional)
    torch.manual_seed(seed)
    fast = GPT(cfg)
    with torch.no_grad():
        for p in fast.parameters():
            if p.dim() > 1:
                p.mul_(20)
    glass = ScratchGPT(cfg)
    glass.load_state_dict({k: v.numpy() for k, v in fast.state_dict().items()})
    return fast.eval(), glass.eval()


@pytest.fixture(scope="module")
def models():
    return make_models()


@pytest.fixture
def checkpoint(tmp_path):
    tok = CharTokenizer(TEXT)
    fast, _ = make_models(vocab_size=tok.vocab_size)
    return save_checkpoint(tmp_path / "ckpt", fast.state_dict(), fast.config, tok)


def run_cli(argv) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 1], [12]]


# ---------------------------------------------------------------- the KV cache


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
@pytest.mark.parametrize("engine", [0, 1], ids=["torch", "scratch"])
def test_greedy_is_the_same_with_and_without_the_cache(positional, engine):
    model = make_models(positional)[engine]
    within = 16 - 7  # the longest prompt plus these new tokens fill the context exactly
    cached = generate(model, PROMPTS, within, temperature=0)
    plain = generate(model, PROMPTS, within, temperature=0, use_cache=False)
    assert cached == plain
    assert len({tuple(r) for r in cached}) > 1  # the prompts lead to different texts
    # past the context: slide=1 re-reads a full window every step, as the plain loop does
    long_cached = generate(model, PROMPTS[:1], 40, temperature=0, slide=1)
    assert long_cached == generate(model, PROMPTS[:1], 40, temperature=0, use_cache=False)


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_past_the_context_both_engines_slide_alike(positional):
    fast, glass = make_models(positional)
    a = generate(fast, PROMPTS, 45, temperature=0)
    assert [len(r) for r in a] == [45, 45, 45]
    assert a == generate(glass, PROMPTS, 45, temperature=0)


def test_a_batch_gives_each_prompt_what_it_gets_alone(models):
    for model in models:
        batch = generate(model, PROMPTS, 9, temperature=0)
        assert batch == [generate(model, p, 9, temperature=0)[0] for p in PROMPTS]


def test_cached_logits_equal_a_full_forward_both_engines(models):
    fast, glass = models
    ids = np.array([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        full, _ = fast(torch.from_numpy(ids))
        from chalklm.models.kv_cache import KVCache as TorchCache

        cache = TorchCache(fast.config, 1)
        first, _ = fast(torch.from_numpy(ids[:, :5]), cache=cache)
        steps = [fast(torch.from_numpy(ids[:, t:t + 1]), cache=cache)[0] for t in range(5, 8)]
    torch.testing.assert_close(first[:, -1], full[:, 4])
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 5:])
    assert cache.length == 8
    with no_grad():
        g_full, _ = glass(ids)
        cache = KVCache(glass.config, 1)
        glass(ids[:, :5], cache=cache)
        g_last, _ = glass(ids[:, 5:6], cache=cache)
    np.testing.assert_allclose(g_last.data[:, -1], g_full.data[:, 5], atol=1e-5)


def test_the_glass_box_cache_holds_each_tokens_key_and_value(models):
    _, glass = models
    ids = np.array([[3, 1, 4, 1, 5]])
    with no_grad():
        cache = KVCache(glass.config, 1)
        glass(ids, cache=cache)
        x = glass.token_embedding(ids) + glass.positions(5)
        attn = glass.blocks[0].attn
        h = glass.blocks[0].ln_1(x)
        keys, values = attn.split_heads(attn.key(h)), attn.split_heads(attn.value(h))
    np.testing.assert_allclose(cache.keys[0][:, :, :5], keys.data, atol=1e-6)
    np.testing.assert_allclose(cache.values[0][:, :, :5], values.data, atol=1e-6)
    assert not cache.keys[:, :, :, 5:].any()  # nothing beyond the filled columns


def test_a_full_cache_refuses_more_columns(models):
    _, glass = models
    cache = KVCache(glass.config, 1)
    with no_grad():
        glass(np.zeros((1, 16), dtype=np.int64), cache=cache)
        with pytest.raises(ChalkError, match="block_size"):
            glass(np.zeros((1, 1), dtype=np.int64), cache=cache)


def test_bfloat16_model_generates(models):
    fast = make_models()[0].to(torch.bfloat16)
    out = generate(fast, PROMPTS, 20, temperature=0)
    assert [len(r) for r in out] == [20, 20, 20]


def test_a_bfloat16_model_caches_fp32_on_cpu():
    """bf16 attention over one query row is slow on a CPU, so the cache holds fp32; a step's
    scores are still the bf16 model's (a full bf16 forward), up to bf16 rounding."""
    from chalklm.generation.runners import TorchRunner

    fast = make_models()[0].to(torch.bfloat16)
    runner = TorchRunner(fast)
    runner.prefill([PROMPTS[0]])
    assert runner.cache.keys.dtype == torch.float32
    step = runner.step(np.array([3]))
    with torch.inference_mode():
        full, _ = fast(torch.tensor([PROMPTS[0] + [3]]))
    full = full[0, -1].float().numpy()
    np.testing.assert_allclose(step[0], full, atol=0.02 * np.abs(full).max())


# ---------------------------------------------------------------- the controls


def test_top_k_keeps_the_k_best():
    scores = np.array([[1.0, 5.0, 3.0, 4.0, 2.0]])
    kept = keep_top_k(scores, 2)
    assert np.isfinite(kept).tolist() == [[False, True, False, True, False]]
    assert keep_top_k(scores, 10) is scores


def test_top_p_keeps_the_nucleus():
    scores = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    assert np.isfinite(keep_top_p(scores, 0.5)).tolist() == [[True, False, False, False]]
    assert np.isfinite(keep_top_p(scores, 0.79)).tolist() == [[True, True, False, False]]
    assert np.isfinite(keep_top_p(scores, 0.85)).tolist() == [[True, True, True, False]]
    assert np.isfinite(keep_top_p(scores, 1.0)).all()


def test_min_p_drops_what_is_much_less_likely_than_the_best():
    scores = np.log(np.array([[0.6, 0.3, 0.06, 0.04]]))
    assert np.isfinite(keep_min_p(scores, 0.1)).tolist() == [[True, True, False, False]]


def test_repetition_penalty_lowers_seen_tokens_both_signs():
    scores = np.array([[2.0, -2.0, 2.0]])
    seen = np.array([[True, True, False]])
    assert penalize_repeats(scores, seen, 2.0).tolist() == [[1.0, -4.0, 2.0]]


def test_temperature_sharpens_and_flattens():
    scores = np.array([[2.0, 1.0, 0.0]])
    cold = probabilities(scores, Controls(temperature=0.5))[0]
    warm = probabilities(scores, Controls(temperature=2.0))[0]
    plain = probabilities(scores, Controls(temperature=1.0))[0]
    assert cold[0] > plain[0] > warm[0]
    np.testing.assert_allclose(cold.sum(), 1.0)


def test_draws_follow_the_chances():
    chances = np.tile(np.array([0.1, 0.0, 0.6, 0.3]), (20000, 1))
    ids = draw(chances, np.random.default_rng(0))
    counts = np.bincount(ids, minlength=4) / len(ids)
    np.testing.assert_allclose(counts, [0.1, 0.0, 0.6, 0.3], atol=0.015)
    assert counts[1] == 0


@pytest.mark.parametrize("controls", [Controls(1.0, 50), Controls(0.7, 40, 0.9, 0.01),
                                      Controls(1.3, None, 0.95), Controls(1.0, 1)])
def test_pick_draws_what_probabilities_says(controls):
    """`pick` takes a short cut with top_k (only the k candidates); it must draw exactly
    what `draw(probabilities(...))` over the whole vocabulary draws."""
    scores = np.random.default_rng(0).standard_normal((8, 5000)).astype(np.float32)
    for seed in range(20):
        assert pick(scores, controls, np.random.default_rng(seed)).tolist() == \
            draw(probabilities(scores, controls), np.random.default_rng(seed)).tolist()
    chances = probabilities(scores, controls)
    if controls.top_k:
        assert ((chances > 0).sum(1) <= controls.top_k).all()


def test_sampling_is_seeded_and_the_same_in_both_engines(models):
    fast, glass = models
    kw = dict(temperature=0.9, top_k=8, top_p=0.95, min_p=0.01, repetition_penalty=1.2,
              seed=7, num_samples=2)
    a = generate(fast, PROMPTS, 12, **kw)
    assert len(a) == 6 and a == generate(fast, PROMPTS, 12, **kw)
    assert a == generate(glass, PROMPTS, 12, **kw)
    assert a != generate(fast, PROMPTS, 12, **{**kw, "seed": 8})
    assert a[0] != a[1]  # two samples of one prompt differ


def test_top_k_1_is_greedy(models):
    fast, _ = models
    assert generate(fast, PROMPTS, 10, temperature=1.5, top_k=1, seed=3) == \
        generate(fast, PROMPTS, 10, temperature=0)


def test_stream_yields_what_generate_returns(models):
    fast, _ = models
    steps = list(stream(fast, PROMPTS, 6, temperature=0, probs=True))
    assert len(steps) == 6
    assert [[s.ids[b] for s in steps] for b in range(3)] == generate(fast, PROMPTS, 6,
                                                                    temperature=0)
    for s in steps:  # greedy picks the likeliest; the chances are a distribution
        assert s.probs.shape == (3, 13)
        np.testing.assert_allclose(s.probs.sum(1), 1.0)
        assert s.ids == s.probs.argmax(1).tolist()


def test_stop_strings_end_a_row():
    tok = CharTokenizer(TEXT)
    fast, _ = make_models(vocab_size=tok.vocab_size)
    free = generate(fast, [tok.encode("ab"), tok.encode("ROMEO")], 12, temperature=0)
    first = tok.decode(free[0][2:4])
    out = generate(fast, [tok.encode("ab"), tok.encode("ROMEO")], 12, temperature=0,
                   stop=[first], tokenizer=tok)
    assert tok.decode(out[0]).endswith(first) and first not in tok.decode(out[0][:-1])
    assert len(out[0]) == 4


def test_empty_prompt_starts_from_newline_or_endoftext(models):
    tok = CharTokenizer(TEXT)
    assert beginning(tok) == (tok.encode("\n"), "a newline")
    bpe = BPETokenizer(special_tokens={"<|endoftext|>": 256})
    assert beginning(bpe) == ([256], "the <|endoftext|> token")
    fast, _ = models
    assert generate(fast, [], 5, temperature=0, tokenizer=tok) == \
        generate(fast, tok.encode("\n"), 5, temperature=0)


def test_text_prompts_with_a_tokenizer():
    tok = CharTokenizer(TEXT)
    fast, _ = make_models(vocab_size=tok.vocab_size)
    assert generate(fast, ["ab", "ROMEO"], 4, temperature=0, tokenizer=tok) == \
        generate(fast, [tok.encode("ab"), tok.encode("ROMEO")], 4, temperature=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_new_tokens": 0}, "max_new_tokens must be a whole number above 0"),
    ({"max_new_tokens": -3}, "max_new_tokens must be"),
    ({"temperature": -0.1}, "temperature must be 0"),
    ({"temperature": float("nan")}, "temperature must be 0"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"top_k": 0}, "top_k must be"),
    ({"min_p": 2}, "min_p must be"),
    ({"repetition_penalty": 0}, "repetition_penalty must be above 0"),
    ({"num_samples": 0}, "num_samples must be"),
    ({"slide": 17}, "slide"),
    ({"stop": ["x"]}, "stop strings need tokenizer"),
    ({"prompts": [[]]}, "prompt 0 is empty"),
    ({"prompts": [[1, 99]]}, "id 99 is outside the vocabulary"),
    ({"prompts": [[1, 2], "ab"]}, "prompt 1 must be a list"),
])
def test_bad_input_is_one_clear_error(models, kwargs, message):
    args = {"prompts": [[1, 2]], "max_new_tokens": 3, **kwargs}
    with pytest.raises(ConfigError, match=message):
        generate(models[0], **args)


def test_a_next_token_function_generates_like_a_model():
    def next_logits(ids):  # favours (last id + 1) mod 5
        scores = np.zeros(5)
        scores[(ids[0, -1] + 1) % 5] = 10
        return scores

    assert generate(next_logits, [3], 4, block_size=8, temperature=0) == [[4, 0, 1, 2]]
    assert generate(next_logits, [[3], [1, 2]], 2, block_size=8, temperature=0) == \
        [[4, 0], [3, 4]]
    with pytest.raises(ConfigError, match="empty"):
        generate(next_logits, [], 4, block_size=8)
    with pytest.raises(ConfigError, match="needs block_size"):
        generate(next_logits, [3], 4)
    with pytest.raises(TypeError):  # the controls go by name
        generate(next_logits, [3], 4, 8)


# ---------------------------------------------------------------- load and the CLI


def test_load_opens_a_checkpoint_in_either_engine(checkpoint):
    fast, tok = chalklm.load(checkpoint, engine="torch")
    glass, _ = chalklm.load(checkpoint, engine="scratch")
    ids = tok.encode("ROMEO:")
    assert chalklm.generate(fast, ids, 8, temperature=0) == \
        chalklm.generate(glass, ids, 8, temperature=0)
    with pytest.raises(ConfigError, match="engine must be"):
        chalklm.load(checkpoint, engine="jax")
    with pytest.raises(ChalkError, match="no such checkpoint"):
        chalklm.load(checkpoint.parent / "nothing")


def test_load_rebuilds_sinusoidal_positions(tmp_path):
    tok = CharTokenizer(TEXT)
    fast, glass = make_models("sinusoidal", vocab_size=tok.vocab_size)
    folder = save_checkpoint(tmp_path / "sin", fast.state_dict(), fast.config, tok)
    loaded, _ = chalklm.load(folder)
    ids = torch.tensor([tok.encode("ROMEO: ab")])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], fast(ids)[0])


def test_import_chalklm_does_not_import_torch():
    code = "import sys, chalklm; chalklm.generate; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_streams_text_and_repeats_with_a_seed(checkpoint, capsys):
    argv = ["sample", "--checkpoint", str(checkpoint), "--prompt", "ROMEO:",
            "--max-new-tokens", "20", "--seed", "3", "--top-p", "0.9"]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO:") and len(out) == 6 + 20 + 1
    assert run_cli(argv) == 0
    assert capsys.readouterr().out == out


def test_cli_json_and_stop(checkpoint, capsys):
    tok = CharTokenizer(TEXT)
    fast, _ = chalklm.load(checkpoint)
    free = tok.decode(chalklm.generate(fast, tok.encode("ab"), 10, temperature=0)[0])
    stop = free[3:5]
    argv = ["sample", "--checkpoint", str(checkpoint), "--prompt", "ab", "--temperature", "0",
            "--max-new-tokens", "10", "--json", "--stop", stop, "--num-samples", "2"]
    assert run_cli(argv) == 0
    result = json.loads(capsys.readouterr().out)
    sample = result["samples"][0]
    assert sample["stopped_by"] == stop and sample["text"] == free[:free.find(stop)]
    assert result["controls"]["num_samples"] == 2 and len(result["samples"]) == 2
    # two rows: PyTorch's step (the C step takes one row), and it says so
    assert result["path"] == "PyTorch, models/gpt.py, with the KV cache; no C step: " + (
        "2 rows (it takes one)" if fused_step._decode is not None and
        os.environ.get("CHALKLM_PURE_PYTHON") != "1" else fused_step.why_not(fast, None))
    assert run_cli(argv[:-5] + ["--stop", stop]) == 0  # streamed: cut before the stop
    assert capsys.readouterr().out == "ab" + free[:free.find(stop)] + "\n"


def test_cli_verbose_says_which_code_computed_the_tokens(checkpoint, capsys):
    argv = ["sample", "--checkpoint", str(checkpoint), "--prompt", "ab",
            "--max-new-tokens", "5", "--verbose", "--engine", "scratch"]
    assert run_cli(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("ab") and len(captured.out) == 2 + 5 + 1  # text alone
    assert captured.err.startswith("5 tokens in ")
    assert captured.err.rstrip().endswith("computed by the glass box (NumPy), scratch/gpt.py, "
                                          "with the KV cache")


def test_cli_show_probs(checkpoint, capsys):
    argv = ["sample", "--checkpoint", str(checkpoint), "--prompt", "ab", "--temperature", "0",
            "--max-new-tokens", "4", "--show-probs", "3", "--engine", "scratch"]
    assert run_cli(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if "<-" in line]
    assert len(rows) == 4
    for row in rows:
        token, cands = row.split("<-")
        percents = [float(p.rstrip("%")) for p in cands.split() if p.endswith("%")]
        assert len(percents) == 3 and percents == sorted(percents, reverse=True)
        assert cands.split()[0] == token.strip()  # greedy: the token is the top candidate


@pytest.mark.parametrize("extra, message", [
    (["--prompt", "xyz"], "not in the vocabulary"),
    (["--top-p", "0"], "top_p must be in"),
    (["--temperature", "-1"], "expected 0 or more"),
    (["--max-new-tokens", "-5"], "above 0"),
])
def test_cli_bad_input_is_one_line(checkpoint, capsys, extra, message):
    assert run_cli(["sample", "--checkpoint", str(checkpoint), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_tokenizer_error_is_a_chalk_error():
    assert issubclass(TokenizerError, ChalkError)


def test_compiled_steps_never_read_stale_weight_copies():
    """Compiled steps read decode_weights' copies without checking them; the eager first
    step of each call checks. A prompt longer than MAX_ROWS makes no copies in its
    prefill, so that first step is the only check before the compiled ones."""
    from chalklm.models.decode_weights import MAX_ROWS

    model = make_models(block_size=64)[0]
    prompt = [[(3 * i) % 13 for i in range(MAX_ROWS + 4)]]
    eager = generate(model, prompt, 12, temperature=0)
    assert generate(model, prompt, 12, temperature=0, compile=True) == eager
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 2)  # as training between two calls would
    compiled = generate(model, prompt, 12, temperature=0, compile=True)
    assert compiled == generate(model, prompt, 12, temperature=0) != eager


@pytest.mark.slow
def test_compiled_step_gives_the_same_tokens(models):
    fast, _ = models
    assert generate(fast, PROMPTS, 30, temperature=0, compile=True) == \
        generate(fast, PROMPTS, 30, temperature=0)
    assert generate(fast, PROMPTS[0], 30, temperature=0, compile=True) == \
        generate(fast, PROMPTS[0], 30, temperature=0)


def test_compile_is_for_the_fast_engine(models):
    with pytest.raises(ConfigError, match="compile=True is for the fast engine"):
        generate(models[1], PROMPTS, 3, compile=True)


def test_streamed_text_waits_for_whole_characters_and_stops_before_the_stop():
    import io

    from chalklm.cli.sample import TextStream

    bpe = BPETokenizer()  # bytes only: "é" and "☃" arrive a byte at a time
    out = io.StringIO()
    stream_ = TextStream(bpe, [], out)
    text = "café ☃ ok"
    for i in bpe.encode(text):
        stream_.add(i)
        assert "\ufffd" not in out.getvalue()
    stream_.finish()
    assert out.getvalue() == text + "\n"
    out = io.StringIO()
    stream_ = TextStream(bpe, ["☃ o"], out)
    for i in bpe.encode(text):
        stream_.add(i)
    stream_.finish()
    assert out.getvalue() == "café \n"


def test_a_model_without_a_cache_is_told_to_use_a_function():
    from chalklm.scratch.models import NextCharacterModel

    with pytest.raises(ConfigError, match="has no KV cache"):
        generate(NextCharacterModel(5, context=2), [1, 2], 3)


def test_load_refuses_a_damaged_weights_file(checkpoint):
    (checkpoint / "model.safetensors").write_bytes(b"not safetensors")
    for engine in ("torch", "scratch"):
        with pytest.raises(ChalkError, match="corrupt or not a safetensors file"):
            chalklm.load(checkpoint, engine=engine)


def test_a_finished_cache_is_freed_without_the_cycle_collector(models):
    import gc
    import weakref

    from chalklm.models.kv_cache import KVCache as TorchCache

    gc.disable()
    try:
        for Cache, model in ((TorchCache, models[0]), (KVCache, models[1])):
            cache = Cache(model.config, 2)
            gone = weakref.ref(cache)
            del cache
            assert gone() is None  # no reference cycle holds it (and its arrays)
    finally:
        gc.enable()


def test_sample_into_a_closed_pipe_stops_quietly(checkpoint):
    """`chalklm sample ... | head`: the reader leaves early; no traceback, status 141."""
    command = [sys.executable, "-m", "chalklm", "sample", "--checkpoint", str(checkpoint),
               "--prompt", "ab", "--max-new-tokens", "100000"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout.read(20)
        proc.stdout.close()
        status = proc.wait(timeout=120)
        error = proc.stderr.read().decode()
    assert status == 141, error
    assert "Traceback" not in error
