"""Ship the best checkpoint of a training run as ``potentials/<name>/model.safetensors``.

Usage (from the repository root, after ``python -m gaunt_md.train train --config potentials/<name>/train.yaml``)::

    python potentials/ship.py gaunt-mlearn

It copies ``training/<name>/best.safetensors``, re-evaluates it in float64 on the validation split
that the config defines (``gaunt_md.train.validate``), and writes into the checkpoint header the
training command, epochs, wall time, hardware and those metrics; it also writes
``potentials/<name>/metrics.json`` and prints the table that goes into the model card.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
from pathlib import Path

import torch

from gaunt_md.model.checkpoint import load_checkpoint, save_checkpoint
from gaunt_md.train.cli import load_config_file
from gaunt_md.train.config import TrainConfig
from gaunt_md.train.validate import metrics_table, validate_checkpoint

STANDARD_KEYS = {"format_version", "package_version", "model_config", "elements", "cutoff", "units"}


def ship(name: str, root: Path) -> dict:
    config_path = root / "potentials" / name / "train.yaml"
    config = TrainConfig.from_dict(load_config_file(str(config_path)))
    run = root / config.output_dir
    best = run / "best.safetensors"
    model, header = load_checkpoint(best, dtype=torch.float64)
    metrics = validate_checkpoint(str(best), config, dtype=torch.float64)
    rows = list(csv.DictReader(open(run / "log.csv")))
    extra = {k: v for k, v in header.items() if k not in STANDARD_KEYS}
    extra["training"] = {
        **header.get("training", {}),
        "command": f"python -m gaunt_md.train train --config {config_path.relative_to(root)} --threads 1 "
        "(continued with --resume after interruptions)",
        "epochs_run": len(rows),
        "wall_time_h": round(sum(float(r["epoch_time_s"]) for r in rows) / 3600.0, 2),
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} shared CPU cores, 1 torch thread, "
        f"torch {torch.__version__}",
    }
    extra["metrics"] = {"split": "validation", "dtype": "float64", **{k: round(v, 4) for k, v in metrics.items()}}
    out = root / "potentials" / name / "model.safetensors"
    save_checkpoint(out, model, **extra)
    (out.parent / "metrics.json").write_text(json.dumps(extra["metrics"], indent=1, sort_keys=True) + "\n")
    print(f"{out}: epoch {extra['training'].get('epoch')} of {len(rows)} run, {extra['training']['wall_time_h']} h, "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    print(metrics_table(metrics))
    return extra


if __name__ == "__main__":
    ship(sys.argv[1], Path(__file__).resolve().parents[1])
