"""Progress: a bar on a terminal; piped to a file, a plain line now and then; none with
--no-progress."""

import io

import pytest

from chalklm.cli import main
from chalklm.data.registry import load_text
from chalklm.training.progress import PlainProgress, progress_display

TINY_TOML = """
[model]
n_layer = 1
n_head = 2
n_embd = 16
block_size = 16
[train]
batch_size = 4
max_steps = 12
log_interval = 4
eval_interval = 100
eval_batch_size = 16
dtype = "fp32"
device = "cpu"
sample_tokens = 0
"""


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_at_most_every_few_seconds_and_one_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(100, unit=" steps", desc="training", file=out, every=10, clock=clock)
    for step in range(1, 31):
        clock.now = step  # one second a step
        bar.set_postfix_str(f"step {step} loss 1.000")
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == ["training: 10/100 steps, step 10 loss 1.000",
                     "training: 20/100 steps, step 20 loss 1.000",
                     "training: 30/100 steps, step 30 loss 1.000"]
    assert "\r" not in out.getvalue()


def test_close_adds_no_line_when_the_last_one_is_current():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(10, file=out, every=5, clock=clock)
    clock.now = 5
    bar.update(10)
    bar.close()
    assert len(out.getvalue().splitlines()) == 1


def test_a_terminal_gets_a_bar_a_file_plain_lines():
    assert isinstance(progress_display(10, file=io.StringIO()), PlainProgress)
    terminal = Terminal()
    bar = progress_display(10, file=terminal)
    assert not isinstance(bar, PlainProgress)
    bar.update(3)
    bar.close()
    assert "\r" in terminal.getvalue() and "3/10" in terminal.getvalue()
    quiet = io.StringIO()
    for stream in (quiet, Terminal()):
        silent = progress_display(10, show=False, file=stream)
        silent.update(10)
        silent.close()
        assert stream.getvalue() == ""


@pytest.fixture
def train_args(tmp_path, data_dir):
    (tmp_path / "text.txt").write_text(load_text("shakespeare")[:5_000])
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    return ["train", "--config", str(tmp_path / "tiny.toml"), "--data",
            str(tmp_path / "text.txt"), "--out", str(tmp_path / "run")]


def _train(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    return capsys.readouterr().err


def test_train_piped_writes_plain_lines_and_no_progress_none(train_args, capsys):
    err = _train(train_args, capsys)  # pytest's stderr is not a terminal
    assert "\r" not in err
    assert "training: 12/12 steps, step 12 loss" in err
    err = _train([*train_args, "--no-progress", "--set", "max_steps=24", "--resume"], capsys)
    assert "training:" not in err and "\r" not in err


def test_tokenizing_for_a_run_draws_no_bar_frames_when_piped(train_args, capsys):
    """A BPE tokenizer trained for the run: its bars are for a terminal too."""
    err = _train([*train_args, "--tokenizer", "bpe"], capsys)
    assert "\r" not in err and "merging pairs" not in err
    assert "training: 12/12 steps" in err
