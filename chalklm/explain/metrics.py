"""The run's loss curves for the page: metrics.jsonl, read again each time it is asked.

The trainer appends one JSON object per logged step (chalklm/training/report.py
`MetricsLog`), so while a run in that folder trains, the page polls with `since`
(the records it already has) and gets only the new ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

KEYS = ("step", "train_loss", "val_loss", "lr")
TRAINING_WITHIN_S = 60  # the file changed this recently: the run is probably still training


def read_metrics(folder: Path, since: int = 0) -> dict:
    """{"records": [...] after the first `since`, "count", "training", "file"}."""
    file = Path(folder) / "metrics.jsonl"
    if not file.is_file():
        return {"records": [], "count": 0, "training": False, "file": None}
    records = []
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now; the next poll reads it whole
        if isinstance(record, dict):
            records.append({k: record[k] for k in KEYS if isinstance(record.get(k), (int, float))})
    fresh = time.time() - file.stat().st_mtime < TRAINING_WITHIN_S
    return {"records": records[since:], "count": len(records), "training": fresh,
            "file": "metrics.jsonl", "code": "chalklm/training/report.py MetricsLog"}
