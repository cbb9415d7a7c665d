"""GPTConfig: plain data that both engines build from, with clear errors on bad values."""

import pytest

from chalklm.config import GPTConfig
from chalklm.errors import ConfigError


def test_round_trip_through_dict():
    config = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8)
    data = config.to_dict()
    assert data["model_type"] == "gpt"
    assert GPTConfig.from_dict(data) == config
    assert config.head_size == 4


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"n_embd": 10, "n_head": 3}, "divisible"),
        ({"n_layer": 0}, "n_layer"),
        ({"vocab_size": -1}, "vocab_size"),
        ({"block_size": 2.5}, "block_size"),
        ({"positional": "rotary"}, "positional"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_values_are_clear_errors(changes, words):
    with pytest.raises(ConfigError, match=words):
        GPTConfig(**changes)


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="n_embd"):
        GPTConfig.from_dict({"model_type": "gpt", "n_embed": 64})


def test_wrong_model_type():
    with pytest.raises(ConfigError, match="transformer"):
        GPTConfig.from_dict({"model_type": "transformer"})
