"""Run configs: TOML files, --set overrides, and one-line errors naming the valid keys."""

from pathlib import Path

import pytest

import chalklm
from chalklm.cli import main
from chalklm.errors import ConfigError
from chalklm.training.config import (
    CONFIG_DIR,
    MODEL_KEYS,
    TRAIN_KEYS,
    load_run_config,
    parse_duration,
    parse_override,
)


def test_shipped_configs_load():
    model, train = load_run_config("shakespeare_char")
    assert train.data == "shakespeare" and train.tokenizer == "char"
    model, train = load_run_config("shakespeare_char_gpu")
    assert (model["n_layer"], model["n_head"], model["n_embd"]) == (6, 6, 384)
    assert (model["block_size"], train.batch_size, model["dropout"]) == (256, 64, 0.2)
    assert (CONFIG_DIR / "shakespeare_char.toml").is_file()


def test_configs_ship_inside_the_package():
    """An installed chalklm (a wheel, no source folder) must find its configs."""
    package = Path(chalklm.__file__).resolve().parent
    assert CONFIG_DIR.is_relative_to(package)
    assert {"multi30k_de_en", "shakespeare_char", "shakespeare_char_gpu"} <= {
        p.stem for p in CONFIG_DIR.glob("*.toml")}


def test_overrides_and_flags_take_precedence():
    model, train = load_run_config(
        "shakespeare_char", ["n_layer=2", "learning_rate=3e-3", "compile=true",
                             "time_budget=5m", "data=python-docs"], seed=7)
    assert model["n_layer"] == 2
    assert train.learning_rate == 3e-3 and train.compile is True
    assert train.time_budget == 300 and train.data == "python-docs" and train.seed == 7


def test_int_is_accepted_for_a_float_key():
    assert parse_override("learning_rate=1") == ("learning_rate", 1.0)


@pytest.mark.parametrize("text,match", [
    ("n_layers=4", "unknown config key 'n_layers'; valid keys: .*n_layer"),
    ("vocab_size=10", "unknown config key"),
    ("n_layer=four", "n_layer must be a whole number"),
    ("compile=1", "compile must be true, false or"),
    ("n_layer", "expected key=value"),
])
def test_bad_overrides(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_override(text)


def test_unknown_key_error_lists_every_valid_key():
    with pytest.raises(ConfigError) as info:
        parse_override("batchsize=3")
    for key in MODEL_KEYS + TRAIN_KEYS:
        assert key in str(info.value)


@pytest.mark.parametrize("override,match", [
    ("n_head=5", "divisible"), ("dtype=fp8", "dtype must be one of"),
    ("batch_size=0", "batch_size must be above 0"), ("min_lr=1.0", "min_lr"),
    ("time_budget=soon", "not a duration"), ("learning_rate=0", "learning_rate must be above 0"),
    ("learning_rate=-1e-3", "learning_rate must be above 0"), ("beta1=1.5", r"beta1 must be in"),
    ("beta2=-0.1", "beta2 must be in"), ("grad_clip=-1", "grad_clip must not be negative"),
    ("warmup_steps=-5", "warmup_steps must not"), ("decay_steps=-1", "decay_steps must not"),
    ("weight_decay=-0.1", "weight_decay must not"), ("sample_tokens=-1", "sample_tokens must not"),
])
def test_bad_values_are_caught_before_training(override, match):
    with pytest.raises(ConfigError, match=match):
        load_run_config("shakespeare_char", [override])


def test_bad_toml_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nn_layer = 2\nwidth = 3\n")
    with pytest.raises(ConfigError, match=r"\[model\] has unknown key 'width'"):
        load_run_config(str(bad))
    bad.write_text("[optim]\nlr = 1\n")
    with pytest.raises(ConfigError, match="unknown table"):
        load_run_config(str(bad))
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_run_config(str(bad))
    with pytest.raises(ConfigError, match="not found.*shakespeare_char"):
        load_run_config("no_such_config")


def test_durations():
    assert parse_duration("5m") == 300 and parse_duration("90s") == 90
    assert parse_duration("1.5h") == 5400 and parse_duration(12) == 12.0
    assert parse_duration("45") == 45


@pytest.mark.parametrize("args,match", [
    (["--set", "n_layers=4"], "unknown config key 'n_layers'"),
    (["--set", "learning_rate=fast"], "learning_rate must be a number"),
    (["--time-budget", "five minutes"], "not a duration"),
])
def test_cli_bad_config_exits_2_with_one_line(args, match, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["train", "--out", str(tmp_path / "run"), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chalklm: error:")
    assert __import__("re").search(match, err)
    assert not (tmp_path / "run").exists()


def test_compile_auto_compiles_only_runs_long_enough_to_pay_it_back():
    from chalklm.training.config import compile_pays_off

    _, default = load_run_config("shakespeare_char")
    assert default.compile == "auto" and compile_pays_off(default)  # 5 minutes
    _, short = load_run_config("shakespeare_char", max_steps=20)
    assert not compile_pays_off(short)
    _, quick = load_run_config("shakespeare_char", time_budget=20)
    assert not compile_pays_off(quick)
    _, no_budget = load_run_config("shakespeare_char", ["time_budget=0"], max_steps=5000)
    assert compile_pays_off(no_budget)
    _, chosen = load_run_config("shakespeare_char", ["compile=auto"], compile=False)
    assert chosen.compile is False  # a flag overrides the config
    with pytest.raises(ConfigError, match='compile must be true, false or "auto"'):
        load_run_config("shakespeare_char", ["compile=maybe"])
