"""README's Python API example runs as written, on a run of the default design (Llama's)
trained here in seconds."""

import re
from pathlib import Path

import pytest

from chalklm.cli import main
from chalklm.data.registry import load_text

README = Path(__file__).resolve().parents[1] / "README.md"
PATH_IN_README = '"runs/shakespeare_char"'

TINY_TOML = """
[model]
n_layer = 2
n_head = 2
n_embd = 32
block_size = 32
preset = "llama"
[train]
batch_size = 8
max_steps = 20
learning_rate = 1e-2
warmup_steps = 5
eval_interval = 10
log_interval = 5
eval_batch_size = 16
dtype = "fp32"
device = "cpu"
sample_tokens = 0
"""


def readme_api_block() -> str:
    """The first python block under the README's "## Python API" heading."""
    section = README.read_text(encoding="utf-8").split("\n## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def run_folder(tmp_path):
    """A run folder from `chalklm train`, as the README's path names one."""
    (tmp_path / "text.txt").write_text(load_text("shakespeare")[:30_000])
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    with pytest.raises(SystemExit) as done:
        main(["train", "--config", str(tmp_path / "tiny.toml"), "--data",
              str(tmp_path / "text.txt"), "--out", str(tmp_path / "run"), "--no-progress"])
    assert done.value.code == 0
    return tmp_path / "run"


def test_the_readme_python_example_runs(run_folder, tmp_path, monkeypatch, capsys):
    code = readme_api_block()
    assert PATH_IN_README in code  # the example opens the run folder `chalklm train` makes
    code = code.replace(PATH_IN_README, repr(str(run_folder)))
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(code, str(README), "exec"), names)

    printed = capsys.readouterr().out
    text = names["text"]
    assert len(text) == 100 and ("ROMEO:" + text) in printed  # one character a token
    assert names["streamed"] == text  # stream gives generate's tokens, one at a time
    assert names["same"] is True  # both engines pick the same greedy tokens
    assert names["gap"] < 1e-4
    assert len(names["greedy"][0]) == 30
    pieces = names["pieces"]
    assert "".join(pieces) == "ROMEO: wherefore art thou"
    assert len(pieces) < len("ROMEO: wherefore art thou")  # some pieces are sub-words
    assert names["bpe"].vocab_size == 512
