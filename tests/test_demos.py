"""The article's first network and first language model: they must actually learn."""

import math
import re

import numpy as np
import pytest

from chalklm.cli import main
from chalklm.demos import chars, leaf_flower
from chalklm.demos.show import report_steps
from chalklm.demos.tasks import LEAF_OR_FLOWER, RAIN_TOMORROW, make_split
from chalklm.errors import ChalkError, ConfigError
from chalklm.scratch import manual_seed
from chalklm.scratch.models import NextCharacterModel, SimpleNetwork

# A small text with structure a tiny model can pick up quickly.
TEXT = "the cat sat on the mat. the dog sat on the log. " * 60


# --- synthetic data -----------------------------------------------------------------------

@pytest.mark.parametrize("task", [LEAF_OR_FLOWER, RAIN_TOMORROW])
def test_split_is_reproducible_and_disjoint(task):
    a, b = make_split(task, seed=3), make_split(task, seed=3)
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.test_y, b.test_y)
    assert len(a.train_y) == 800 and len(a.test_y) == 200
    assert not np.array_equal(a.train_x, make_split(task, seed=4).train_x)
    both_classes = set(a.train_y.tolist())
    assert both_classes == {0, 1}


def test_leaves_are_greener_and_smaller_than_flowers():
    split = make_split(LEAF_OR_FLOWER, n=2000, seed=0)
    x, y = split.train_x, split.train_y
    leaves, flowers = x[y == 0], x[y == 1]
    assert np.median(leaves[:, 3]) < np.median(flowers[:, 3])
    greenness = x[:, 1] - (x[:, 0] + x[:, 2]) / 2
    assert np.mean(greenness[y == 0]) > np.mean(greenness[y == 1])
    assert x[:, :3].min() >= 0 and x[:, :3].max() <= 255


def test_leaf_flower_data_is_not_separable_by_one_input():
    """Some overlap: no single threshold on one input classifies everything."""
    split = make_split(LEAF_OR_FLOWER, seed=0)
    x, y = split.train_x, split.train_y
    for column in range(4):
        for threshold in np.unique(x[:, column]):
            guess = (x[:, column] > threshold).astype(int)
            assert max(np.mean(guess == y), np.mean(guess != y)) < 0.99


def test_bad_split_arguments():
    with pytest.raises(ConfigError):
        make_split(LEAF_OR_FLOWER, n=5)
    with pytest.raises(ConfigError):
        make_split(LEAF_OR_FLOWER, held_out=1.5)
    with pytest.raises(ChalkError):
        leaf_flower.train(LEAF_OR_FLOWER, seed=-1)


# --- the first network ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leaf_flower_reaches_95_percent_with_defaults(seed):
    trained = leaf_flower.train(LEAF_OR_FLOWER, seed=seed, verbose=False)
    assert trained.accuracy >= 0.95
    assert trained.accuracy_before < 0.8  # the random network was not already right
    assert trained.losses[-1] < trained.losses[0] / 5


def test_the_same_network_learns_a_second_task():
    trained = leaf_flower.train(RAIN_TOMORROW, verbose=False)
    majority = max(np.mean(trained.split.test_y), 1 - np.mean(trained.split.test_y))
    assert trained.accuracy >= 0.88
    assert trained.accuracy > majority + 0.15
    shapes = {name: p.shape for name, p in trained.model.named_parameters()}
    first = leaf_flower.train(LEAF_OR_FLOWER, steps=2, verbose=False).model
    assert shapes == {name: p.shape for name, p in first.named_parameters()}


def test_worked_forward_pass_matches_the_network():
    trained = leaf_flower.train(LEAF_OR_FLOWER, steps=50, verbose=False)
    raw = trained.split.test_x[0]
    text = leaf_flower.forward_pass_text(trained.model, LEAF_OR_FLOWER, raw, 0)
    outputs = trained.model(leaf_flower.network_inputs(LEAF_OR_FLOWER, raw[None])).data[0]
    for value in outputs:  # each output's written-out sum ends in the network's own number
        assert f"= {value:+.3f}" in text
    assert text.count("tanh") == 3
    said = LEAF_OR_FLOWER.outputs[int(np.argmax(outputs))]
    assert f"the network says: {said}" in text


def test_simple_network_rejects_bad_sizes():
    with pytest.raises(ConfigError):
        SimpleNetwork(inputs=0)


# --- the first language model -------------------------------------------------------------

def test_windows_pair_each_context_with_the_next_character():
    ids = np.arange(20)
    x, y = chars.windows(ids, np.array([3, 10]), context=3)
    assert x.tolist() == [[0, 1, 2], [7, 8, 9]] and y.tolist() == [3, 10]


def test_next_character_model_shapes_and_starting_loss():
    manual_seed(0)
    model = NextCharacterModel(vocab_size=30, context=4, embedding_dim=5, hidden=16)
    ids = np.random.default_rng(0).integers(0, 30, size=(7, 4))
    logits, loss = model(ids, np.zeros(7, dtype=np.int64))
    assert logits.shape == (7, 30)
    assert abs(loss.item() - math.log(30)) < 0.5  # knows nothing yet: about ln V
    assert model(ids)[1] is None
    names = {name for name, _ in model.named_parameters()}
    assert names == {"embedding.weight", "hidden.weight", "hidden.bias", "output.weight",
                     "output.bias"}
    with pytest.raises(ChalkError):
        model(ids[:, :3])


def test_next_character_model_loss_falls():
    settings = chars.Settings(context=4, embedding_dim=8, hidden=32, batch_size=32, lr=0.02,
                              eval_windows=256)
    trained = chars.train(TEXT, steps=150, seed=0, settings=settings, verbose=False)
    (start, first_train, first_held), *_, (end, last_train, last_held) = trained.history
    assert (start, end) == (0, 150) and len(trained.history) == 9
    assert abs(first_train - math.log(trained.tokenizer.vocab_size)) < 0.5  # before training
    assert last_train < first_train - 1.0
    assert last_held < first_held - 1.0
    assert last_train < 1.0  # this text is very repetitive: far below ln(vocab) = 2.7


def test_generation_returns_vocabulary_characters_of_the_requested_length():
    settings = chars.Settings(context=3, embedding_dim=4, hidden=16, batch_size=16,
                              eval_windows=64)
    trained = chars.train(TEXT, steps=20, seed=0, settings=settings, verbose=False)
    for prompt in ["", "the "]:
        text = chars.sample(trained, length=57, seed=1, prompt=prompt)
        assert len(text) == 57 and set(text) <= set(TEXT)
    assert chars.sample(trained, 30, seed=2) == chars.sample(trained, 30, seed=2)
    with pytest.raises(ChalkError):
        chars.sample(trained, 5, prompt="XYZ")  # not in the vocabulary


def test_report_steps_include_first_and_last():
    assert {0, 99} <= report_steps(100) and len(report_steps(100)) == 9
    assert report_steps(1) == {0}


# --- the command line -----------------------------------------------------------------------

def test_cli_leaf_flower_prints_weights_forward_pass_and_accuracy(capsys):
    with pytest.raises(SystemExit) as done:
        main(["demo", "leaf-flower", "--steps", "300", "--seed", "1"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "weights" in out and "hidden 1" in out and "bias" in out
    assert "the network says:" in out
    held_out = [line for line in out.splitlines() if line.startswith("Held-out accuracy")]
    assert len(held_out) == 2
    first = float(held_out[0].split(": ")[1].split("%")[0])
    assert first >= 95.0


@pytest.mark.parametrize("args", [
    ["demo", "leaf-flower", "--steps", "0"],
    ["demo", "leaf-flower", "--lr", "-1"],
    ["demo", "leaf-flower", "--seed", "-3"],
    ["demo", "chars", "--length", "0"],
    ["demo", "chars", "--temperature", "-1"],
])
def test_cli_bad_arguments_exit_2_with_one_line(args, capsys):
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_cli_chars_runs_end_to_end(monkeypatch, capsys):
    """The real command, shrunk: a tiny text and a tiny model so it takes a second."""
    monkeypatch.setattr("chalklm.data.load_default_text", lambda: ("tiny", TEXT))
    small = chars.Settings(context=3, embedding_dim=4, hidden=16, batch_size=16, eval_windows=64)
    monkeypatch.setattr(chars, "Settings", lambda: small)
    with pytest.raises(SystemExit) as done:
        main(["demo", "chars", "--steps", "30", "--length", "40", "--prompt", "the"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "train loss" in out and "held-out loss" in out
    assert out.rstrip().splitlines()[-1].startswith("the")


def test_chances_are_a_distribution_over_the_vocabulary():
    settings = chars.Settings(context=4, embedding_dim=8, hidden=32, batch_size=32, lr=0.02,
                              eval_windows=64)
    trained = chars.train(TEXT, steps=100, seed=0, settings=settings, verbose=False)
    chances = chars.next_chances(trained, "the cat s")
    assert chances.shape == (trained.tokenizer.vocab_size,) and chances.min() >= 0
    assert abs(chances.sum() - 1) < 1e-5
    assert chances[trained.tokenizer.stoi["a"]] > 0.5  # after "at s" this text always has "a"
    for short in ["", "s"]:  # shorter than the context: padded, still a distribution
        assert abs(chars.next_chances(trained, short).sum() - 1) < 1e-5
    text = chars.chances_text(trained, "the cat s", "a", top=3)
    assert len(re.findall(r"\d\.\d{3}", text)) == 4  # three guesses, then the true one


def test_cli_chars_rejects_an_unreadable_prompt_before_training(monkeypatch, capsys):
    monkeypatch.setattr("chalklm.data.load_default_text", lambda: ("tiny", TEXT))
    monkeypatch.setattr(chars, "train", lambda *a, **k: pytest.fail("trained anyway"))
    with pytest.raises(SystemExit) as done:
        main(["demo", "chars", "--prompt", "The Cat"])  # no capitals in TEXT
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'T'" in err
