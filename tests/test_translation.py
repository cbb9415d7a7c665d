"""Translation: decoding (greedy, beam search), a tiny model trained in seconds to copy
sentences, the translate/evaluate commands, BLEU scoring, the run config and schedule."""

import io
import math

import numpy as np
import pytest
import torch

from chalklm.checkpoint import save_checkpoint
from chalklm.cli import main
from chalklm.config import GPTConfig, TransformerConfig
from chalklm.data.parallel import SpecialIds, encode_sentence, make_batch, train_tokenizer
from chalklm.errors import CheckpointError, ConfigError, DataError
from chalklm.models.transformer import Transformer
from chalklm.translation.decoding import (
    GlassStepper,
    TorchStepper,
    beam_search,
    greedy,
    length_penalty,
)
from chalklm.translation.evaluation import score
from chalklm.translation.training import average_weights, inverse_sqrt_lr
from chalklm.translation.translator import Translator

WORDS = ["red", "green", "blue", "cat", "dog", "sun", "moon", "tree", "big", "small"]


def _sentences(rng, n):
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 6))) for _ in range(n)]


@pytest.fixture(scope="module")
def copier():
    # One thread: matrices this small gain nothing from two, and on a busy machine
    # threads that wait for each other made this 15x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield train_copier()
    finally:
        torch.set_num_threads(threads)


def train_copier(steps=800):
    """A tiny Transformer trained (seconds) to copy a sentence: the simplest translation,
    checkable word for word. (tokenizer, model) 600 steps copied 29 or 30 of the 30 test
    sentences depending on the last bits of rounding in the loss; 800 leave a margin."""
    rng = np.random.default_rng(0)
    pairs = [(s, s) for s in _sentences(rng, 300)]
    tokenizer = train_tokenizer(pairs, vocab_size=320, progress=False)
    ids = SpecialIds.of(tokenizer)
    V = tokenizer.vocab_size
    config = TransformerConfig(src_vocab_size=V, tgt_vocab_size=V, n_layer_enc=1,
                               n_layer_dec=1, n_head=2, n_embd=32, ffn_dim=128, dropout=0.0,
                               max_len=32, norm_first=True, pad_id=ids.pad,
                               label_smoothing=0.0)
    torch.manual_seed(0)
    model = Transformer(config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    for _ in range(steps):
        rows = [encode_sentence(tokenizer, s) for s in _sentences(rng, 64)]
        (src, tgt_in), tgt_out = make_batch([r + [ids.eos] for r in rows],
                                            [[ids.bos] + r + [ids.eos] for r in rows], ids.pad)
        _, loss = model(torch.from_numpy(src), torch.from_numpy(tgt_in),
                        torch.from_numpy(tgt_out))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return tokenizer, model.eval()


@pytest.fixture(scope="module")
def checkpoint(copier, tmp_path_factory):
    tokenizer, model = copier
    folder = tmp_path_factory.mktemp("copier") / "ckpt"
    save_checkpoint(folder, model.state_dict(), model.config, tokenizer)
    return folder


def _sources(tokenizer, sentences):
    from chalklm.data.parallel import pad_rows

    ids = SpecialIds.of(tokenizer)
    return pad_rows([np.array(encode_sentence(tokenizer, s) + [ids.eos]) for s in sentences],
                    ids.pad)


def test_a_tiny_model_learns_to_copy_and_both_decoders_get_it_right(copier):
    tokenizer, model = copier
    sentences = _sentences(np.random.default_rng(1), 30)
    translator = Translator(model.config, model.state_dict(), tokenizer)
    assert translator.translate(sentences, beam_size=1) == sentences
    assert translator.translate(sentences, beam_size=4) == sentences


def test_beam_size_one_is_greedy_even_for_an_untrained_model(copier):
    tokenizer, _ = copier
    torch.manual_seed(3)
    untrained = Transformer(copier[1].config).eval()
    src = _sources(tokenizer, _sentences(np.random.default_rng(2), 8))
    ids = SpecialIds.of(tokenizer)
    stepper = TorchStepper(untrained)
    assert beam_search(stepper, src, ids, 32, beam_size=1) == greedy(stepper, src, ids, 32)


def test_the_glass_box_decodes_the_same_weights_to_the_same_words(copier):
    tokenizer, model = copier
    glass = Translator(model.config, model.state_dict(), tokenizer, engine="scratch")
    src = _sources(tokenizer, ["red cat", "big blue moon"])
    ids = SpecialIds.of(tokenizer)
    fast = TorchStepper(model)
    assert beam_search(glass.stepper, src, ids, 32, 3) == beam_search(fast, src, ids, 32, 3)
    state = glass.stepper.encode(src)
    prefix = np.array([[ids.bos], [ids.bos]])
    np.testing.assert_allclose(glass.stepper.log_probs(state, np.arange(2), prefix),
                               fast.log_probs(fast.encode(src), np.arange(2), prefix),
                               atol=1e-4)
    assert isinstance(glass.stepper, GlassStepper)


class TableStepper:
    """A hand-made model over tokens pad 0, <s> 1, </s> 2, a 3, b 4: after <s>, a 0.6 and
    b 0.4; after "a", </s> 0.4, a 0.3, b 0.3; after "b", </s> 1. Greedy writes "a" (0.6 x
    0.4 = 0.24); the best sentence is "b" (0.4 x 1 = 0.4)."""

    def encode(self, src):
        return None

    def log_probs(self, state, rows, prefix):
        table = {1: [0, 0, 0, 0.6, 0.4], 3: [0, 0, 0.4, 0.3, 0.3], 4: [0, 0, 1.0, 0, 0]}
        with np.errstate(divide="ignore"):
            return np.log(np.array([table[int(p[-1])] for p in prefix]))


def test_beam_search_finds_the_better_sentence_greedy_misses():
    ids = SpecialIds(0, 1, 2)
    src = np.array([[3, 2], [4, 2]])
    assert greedy(TableStepper(), src, ids, 16) == [[3], [3]]
    assert beam_search(TableStepper(), src, ids, 16, beam_size=2, alpha=0.0) == [[4], [4]]
    assert beam_search(TableStepper(), src, ids, 16, beam_size=1) == [[3], [3]]


class EndlessStepper:
    """Never ends: </s> always least likely."""

    def encode(self, src):
        return None

    def log_probs(self, state, rows, prefix):
        return np.log(np.tile([0.01, 0.01, 0.01, 0.5, 0.47], (len(prefix), 1)))


def test_length_limit_is_source_length_plus_50_and_within_max_len():
    ids = SpecialIds(0, 1, 2)
    src = np.array([[3, 3, 3, 2], [3, 2, 0, 0]])  # 3 and 1 tokens (+ </s>)
    out = beam_search(EndlessStepper(), src, ids, max_len=200, beam_size=2)
    assert [len(o) for o in out] == [53, 51]
    assert [len(o) for o in greedy(EndlessStepper(), src, ids, max_len=200)] == [53, 51]
    assert [len(o) for o in greedy(EndlessStepper(), src, ids, max_len=20)] == [20, 20]


def test_length_penalty_is_gnmt_and_bad_settings_are_errors():
    assert length_penalty(1, 0.6) == 1.0
    assert math.isclose(length_penalty(7, 0.6), 2**0.6)
    assert length_penalty(30, 0.0) == 1.0
    with pytest.raises(ConfigError, match="beam_size"):
        beam_search(EndlessStepper(), np.array([[3, 2]]), SpecialIds(0, 1, 2), 10, 0)


def test_scores_are_sacrebleu_with_signatures():
    refs = ["A man rides a bike.", "Two dogs play in the snow."]
    perfect = score(refs, refs)
    assert perfect.bleu == pytest.approx(100.0) and perfect.chrf == pytest.approx(100.0)
    assert "tok:13a" in perfect.bleu_signature and "nrefs:1" in perfect.chrf_signature
    assert 0 < score(["A man rides a horse.", "Two cats."], refs).bleu < 60
    with pytest.raises(DataError, match="2 references"):
        score(["one"], refs)


def test_translate_command_from_arguments_stdin_and_file(checkpoint, capsys, monkeypatch,
                                                         tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["translate", "--checkpoint", str(checkpoint), "red cat", "big blue moon"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.splitlines() == ["red cat", "big blue moon"]
    monkeypatch.setattr("sys.stdin", io.StringIO("green tree\n\nsmall dog\n"))
    with pytest.raises(SystemExit):
        main(["translate", "--checkpoint", str(checkpoint), "--greedy"])
    assert capsys.readouterr().out.splitlines() == ["green tree", "", "small dog"]
    (tmp_path / "in.txt").write_text("sun moon\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["translate", "--checkpoint", str(checkpoint), "--file", str(tmp_path / "in.txt")])
    assert capsys.readouterr().out.splitlines() == ["sun moon"]


def test_show_attention_prints_a_grid_or_saves_a_png(checkpoint, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["translate", "--checkpoint", str(checkpoint), "red cat", "--show-attention"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "red cat"
    assert "cross-attention" in out[1] and "0:red" in out[2]
    rows = [line for line in out if "<-" in line]
    assert len(rows) == 3  # "red", " cat", "</s>"
    # copying: the word written is the word read
    assert rows[0].split("<-")[1].split()[0] == "red"
    assert rows[1].split("<-")[1].split()[0] == "▁cat"
    png = tmp_path / "attention.png"
    with pytest.raises(SystemExit):
        main(["translate", "--checkpoint", str(checkpoint), "red cat", "--attention-png",
              str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_command_prints_bleu_and_chrf_with_signatures(checkpoint, capsys, tmp_path):
    sentences = _sentences(np.random.default_rng(5), 12)
    (tmp_path / "src.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--checkpoint", str(checkpoint), "--src", str(tmp_path / "src.txt"),
              "--ref", str(tmp_path / "ref.txt"), "--out", str(tmp_path / "hyp.txt")])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "BLEU 100.00" in out and "tok:13a" in out and "chrF 100.00" in out
    assert (tmp_path / "hyp.txt").read_text(encoding="utf-8").splitlines() == sentences


def test_command_errors_are_one_line_exit_2(checkpoint, capsys, tmp_path):
    (tmp_path / "src.txt").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("a\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("keep me\n", encoding="utf-8")
    gpt = tmp_path / "gpt"
    save_checkpoint(gpt, {"x": np.zeros(1, np.float32)}, GPTConfig(), copier_tokenizer(checkpoint))
    cases = [
        ["evaluate", "--checkpoint", str(checkpoint), "--src", str(tmp_path / "src.txt"),
         "--ref", str(tmp_path / "ref.txt")],
        ["evaluate", "--checkpoint", str(checkpoint), "--src", str(tmp_path / "src.txt"),
         "--ref", str(tmp_path / "src.txt"), "--out", str(tmp_path / "hyp.txt")],
        ["translate", "--checkpoint", str(gpt), "red"],
        ["translate", "--checkpoint", str(tmp_path / "nowhere"), "red"],
        ["translate", "--checkpoint", str(checkpoint), "red", "blue", "--show-attention"],
        ["translate", "--checkpoint", str(checkpoint), "--attention-png", "a.png", "red", "blue"],
        ["translate", "--checkpoint", str(checkpoint), "red", "--attention-png",
         str(tmp_path / "hyp.txt" / "a.png")],
        ["translate", "--checkpoint", str(checkpoint), "red \udcff"],
        ["translate", "--checkpoint", str(checkpoint), "red", "--show-attention", "--layer",
         "3"],
    ]
    for argv in cases:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2, argv
        assert err.startswith("chalklm: error:") and err.count("\n") == 1, err
    assert (tmp_path / "hyp.txt").read_text() == "keep me\n"


def copier_tokenizer(checkpoint):
    from chalklm.checkpoint import load_tokenizer

    return load_tokenizer(checkpoint)


def test_translator_refuses_a_gpt_checkpoint(copier):
    with pytest.raises(CheckpointError, match="not a translation"):
        Translator(GPTConfig(), {}, copier[0])


def test_inverse_square_root_schedule_and_checkpoint_averaging(tmp_path):
    peak, warmup = 1e-3, 100
    lrs = [inverse_sqrt_lr(s, peak, warmup) for s in range(400)]
    assert lrs[0] == pytest.approx(peak / warmup)
    assert max(lrs) == pytest.approx(peak) and int(np.argmax(lrs)) == warmup - 1
    assert lrs[399] == pytest.approx(peak * math.sqrt(100 / 400))  # 1/sqrt(step) decay
    config = TransformerConfig(src_vocab_size=8, tgt_vocab_size=8, n_embd=8, n_head=2,
                               ffn_dim=32)
    for i, value in enumerate([1.0, 2.0, 6.0]):
        save_checkpoint(tmp_path / f"c{i}", {"w": np.full((2, 2), value, np.float32)}, config)
    mean = average_weights([tmp_path / f"c{i}" for i in range(3)])
    np.testing.assert_allclose(mean["w"], np.full((2, 2), 3.0))
    save_checkpoint(tmp_path / "other", {"v": np.zeros(2, np.float32)}, config)
    with pytest.raises(CheckpointError, match="named differently"):
        average_weights([tmp_path / "c0", tmp_path / "other"])


@pytest.mark.parametrize("changes", [dict(norm_first=False), dict(positional="learned")])
def test_the_kv_cache_changes_no_number(copier, changes):
    """Decoding one token at a time with cached keys and values (the GPT's preallocated
    cache, its rows reordered by beam parent each step) gives the logits of re-reading
    the whole prefix, and the same beams: every ended translation beam search weighed,
    with the same score. (max_len 64: each sentence meets its own length limit, so the
    cache's rows shrink as sentences are done.)"""
    tokenizer, _ = copier
    torch.manual_seed(4)
    model = Transformer(copier[1].config.replace(max_len=64, **changes)).eval()
    src = torch.from_numpy(_sources(tokenizer, ["red cat", "big blue moon tree"]))
    prefix = torch.tensor([[1, 5, 9, 7], [1, 8, 8, 6]])
    with torch.no_grad():
        memory, mask = model.encode(src)
        cross = model.cross_keys_values(memory)
        full = model.decode(prefix, memory, mask)[:, -1]
        cache = model.kv_cache(2)
        model.decode_step(prefix[:, :3], cache, cross, mask)
        step = model.decode_step(prefix[:, 3:], cache, cross, mask)
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)
    assert cache.length == 4  # keys of 4 positions now
    ids = SpecialIds.of(tokenizer)
    src = _sources(tokenizer, _sentences(np.random.default_rng(7), 6))
    cached, plain = TorchStepper(model), TorchStepper(model, cache=False)
    ended_cached, ended_plain = [], []
    assert beam_search(cached, src, ids, 64, 3, ended=ended_cached) == \
        beam_search(plain, src, ids, 64, 3, ended=ended_plain)
    assert cached._cache.length > 1 and cached._cache.batch < cached._cache.rows
    for mine, theirs in zip(ended_cached, ended_plain, strict=True):
        assert [tokens for _, tokens in mine] == [tokens for _, tokens in theirs]
        np.testing.assert_allclose([s for s, _ in mine], [s for s, _ in theirs], rtol=1e-5)
    assert greedy(cached, src, ids, 64) == greedy(plain, src, ids, 64)


def test_an_unwritable_out_is_refused_before_translating(checkpoint, capsys, tmp_path,
                                                         monkeypatch):
    from chalklm.translation.translator import Translator

    (tmp_path / "src.txt").write_text("red\n", encoding="utf-8")
    (tmp_path / "afile").write_text("keep me\n", encoding="utf-8")
    monkeypatch.setattr(Translator, "from_checkpoint",
                        lambda *a: pytest.fail("translated before checking --out"))
    for out in ("afile/hyp.txt", "."):
        with pytest.raises(SystemExit) as exit_:
            main(["evaluate", "--checkpoint", str(checkpoint), "--src",
                  str(tmp_path / "src.txt"), "--ref", str(tmp_path / "src.txt"), "--out",
                  str(tmp_path / out), "--force"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and "could not write" in err
    assert (tmp_path / "afile").read_text() == "keep me\n"
