"""What a run leaves for people (metrics, loss curve, measured peak): written whole, and a
write the system refuses is one line."""

import json

import pytest

from chalklm.errors import WriteError
from chalklm.training.report import MetricsLog, measured_peak_flops, plot_losses


def test_metrics_append_then_truncate_for_a_resume(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (10, 20, 30):
        log.write({"step": step, "train_loss": 1.0 / step, "val_loss": None})
    log.truncate_after(20)
    assert [r["step"] for r in log.read()] == [10, 20]
    assert "val_loss" not in log.read()[0]  # None is left out, not written as null


def test_a_refused_metrics_write_is_a_write_error(tmp_path):
    (tmp_path / "run").write_text("a file where the run folder should be")
    with pytest.raises(WriteError, match="could not write .*metrics.jsonl"):
        MetricsLog(tmp_path / "run" / "metrics.jsonl").write({"step": 1})


def test_loss_curve_is_a_png(tmp_path):
    plot_losses([{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.5,
                                                  "val_loss": 1.7}], tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_damaged_peak_cache_is_measured_again_and_rewritten(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "chalklm" / "peak_flops.json"
    cache.parent.mkdir()
    cache.write_text('{"cpu-fp32-1threads-64": 1e9')  # cut short, as by a crash mid-write
    peak = measured_peak_flops("cpu", "fp32", size=64)
    assert peak > 0
    assert max(json.loads(cache.read_text()).values()) == peak
