"""Training the Transformer with the GPT's trainer: the run config, a short run on toy
sentence pairs, checkpoint averaging, exact resume, both engines, the CLI."""

import json

import numpy as np
import pytest

from chalklm.checkpoint import load_checkpoint, load_weights
from chalklm.errors import ConfigError
from chalklm.training.config import CONFIG_DIR
from chalklm.translation.config import config_task, load_translation_config

WORDS = ["red", "green", "blue", "cat", "dog", "sun", "moon", "tree"]
TINY_MODEL = dict(n_layer_enc=1, n_layer_dec=1, n_head=2, n_embd=16, ffn_dim=64, max_len=24,
                  dropout=0.1)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster than two that wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_multi30k_config_loads_with_the_papers_recipe():
    assert config_task("multi30k_de_en") == "translation"
    assert config_task("shakespeare_char") == "lm"
    model, cfg = load_translation_config("multi30k_de_en")
    assert model["n_layer_enc"] == 3 and model["norm_first"] is False
    assert model["label_smoothing"] == 0.1 and model["dropout"] == 0.1
    assert (cfg.beta1, cfg.beta2, cfg.adam_eps) == (0.9, 0.98, 1e-9)
    assert cfg.schedule == "cosine" and cfg.average_last == 3 and cfg.vocab_size == 5000
    assert cfg.time_budget == 3600
    model, cfg = load_translation_config("multi30k_de_en", ["n_embd=128", "ffn_dim=512",
                                                            "warmup_steps=50"], out="x")
    assert model["n_embd"] == 128 and cfg.warmup_steps == 50 and cfg.out == "x"


@pytest.mark.parametrize("override,message", [
    ("n_layer=4", "unknown translation config key 'n_layer'"),
    ("n_embd=wide", "n_embd must be a whole number"),
    ("activation=swish", "activation must be one of gelu, gelu_exact, relu"),
    ("schedule=linear", "schedule must be inverse_sqrt or cosine"),
    ("data=files", "data = files needs train_src"),
    ("pad_id=3", "unknown translation config key 'pad_id'"),
])
def test_bad_settings_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_translation_config("multi30k_de_en", [override])


def test_a_config_file_with_unknown_keys_is_refused(tmp_path):
    text = (CONFIG_DIR / "multi30k_de_en.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[model]", "[model]\nn_layer = 3"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[model\] has unknown key 'n_layer'"):
        load_translation_config(str(bad))


def _toy_files(folder):
    """Copy-task pairs (an English sentence and itself) as aligned train/val files."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("val", 20)):
        lines = [" ".join(rng.choice(WORDS, size=rng.integers(2, 5))) for _ in range(n)]
        for side in ("src", "tgt"):
            (folder / f"{split}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dict(data="files", train_src=str(folder / "train.src"),
                train_tgt=str(folder / "train.tgt"), val_src=str(folder / "val.src"),
                val_tgt=str(folder / "val.tgt"))


def _run(tmp_path, out, resume=False, **overrides):
    from chalklm.training.trainer import Trainer
    from chalklm.translation.training import TranslationTask

    flags = dict(_toy_files(tmp_path), out=str(tmp_path / out), vocab_size=300,
                 batch_size=200, eval_batch_size=400, max_steps=8, eval_interval=4,
                 log_interval=2, warmup_steps=4, learning_rate=3e-3, device="cpu",
                 dtype="fp32", average_last=2, bleu_sentences=5, time_budget=0,
                 schedule="inverse_sqrt")  # the paper's schedule, checked below
    flags.update(overrides)
    settings = [f"{k}={v}" for k, v in TINY_MODEL.items()]
    model, cfg = load_translation_config("multi30k_de_en", settings, **flags)
    trainer = Trainer(model, cfg, resume=resume, task=TranslationTask())
    return trainer, trainer.run()


def test_a_short_run_writes_checkpoints_metrics_and_an_average(tmp_path):
    trainer, summary = _run(tmp_path, "run")
    out = tmp_path / "run"
    assert summary["step"] == 8 and np.isfinite(summary["val_loss"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses[-1] < losses[0]
    lrs = [r["lr"] for r in records if "lr" in r]
    assert lrs[1] == pytest.approx(3e-3)  # step 4: the end of warmup, the peak
    assert lrs[-1] == pytest.approx(3e-3 * (4 / 8) ** 0.5)  # then 1 / sqrt(step)
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step-00000004",
                                                                    "step-00000008"]
    averaged = load_checkpoint(out / "averaged")
    last4 = load_weights(out / "snapshots" / "step-00000004")
    last8 = load_weights(out / "last")
    name = "decoder.layers.0.mlp.fc.weight"
    np.testing.assert_allclose(averaged.weights[name], (last4[name] + last8[name]) / 2,
                               atol=1e-6)
    assert averaged.config.pad_id == trainer.task.ids.pad
    assert "greedy BLEU" in (out / "sample.txt").read_text()


def test_resume_continues_exactly(tmp_path):
    _run(tmp_path, "straight")
    _run(tmp_path, "stopped", max_steps=4)
    _, summary = _run(tmp_path, "stopped", resume=True)
    assert summary["step"] == 8
    a = load_checkpoint(tmp_path / "straight" / "last").weights
    b = load_checkpoint(tmp_path / "stopped" / "last").weights
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-6, err_msg=name)


def test_the_glass_box_engine_trains_the_same_task(tmp_path):
    _, summary = _run(tmp_path, "glass", engine="scratch", max_steps=2, eval_interval=2,
                      bleu_sentences=2)
    assert summary["engine"] == "scratch" and np.isfinite(summary["val_loss"])


def test_chalklm_train_runs_a_translation_config_on_src_and_tgt_files(tmp_path, capsys):
    """--src/--tgt alone: the last 5% of the pairs are held out for validation."""
    from chalklm.cli import main

    files = _toy_files(tmp_path)
    argv = ["train", "--config", "multi30k_de_en", "--src", files["train_src"], "--tgt",
            files["train_tgt"], "--out", str(tmp_path / "cli"), "--max-steps",
            "2", "--device", "cpu", "--dtype", "fp32", "--set", "vocab_size=300"]
    argv += [x for k, v in TINY_MODEL.items() for x in ("--set", f"{k}={v}")]
    argv += ["--set", "batch_size=200", "--set", "bleu_sentences=2"]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert "greedy BLEU" in capsys.readouterr().out
    assert (tmp_path / "cli" / "averaged" / "model.safetensors").is_file()


def test_hold_out_keeps_the_last_pairs_for_validation():
    from chalklm.translation.training import hold_out

    pairs = [(f"s{i}", f"t{i}") for i in range(200)]
    train, val = hold_out(pairs)
    assert train == pairs[:190] and val == pairs[190:]
    assert len(hold_out(pairs * 200)[1]) == 1000  # at most 1000
    with pytest.raises(ConfigError, match="too few"):
        hold_out(pairs[:1])


@pytest.mark.parametrize("argv,message", [
    (["--src", "a.de", "--tgt", "a.en"], "--src/--tgt are for translation configs"),
    (["--config", "multi30k_de_en", "--src", "a.de"], "data = files needs train_tgt"),
    (["--config", "multi30k_de_en", "--src", "a.de", "--tgt", "a.en", "--val-src", "v.de"],
     "needs val_tgt"),
])
def test_src_and_tgt_flags_refuse_what_they_cannot_do(argv, message, capsys):
    from chalklm.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
