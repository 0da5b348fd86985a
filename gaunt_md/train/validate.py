"""Validation metrics of a checkpoint on the validation split of a training config.

The split is recomputed from the config (files, ``valid_fraction``, ``seed``) exactly as the
trainer drew it, so model cards can quote numbers anyone can regenerate::

    python -m gaunt_md.train validate --config potentials/gaunt-mlearn/train.yaml \\
        --checkpoint potentials/gaunt-mlearn/model.safetensors
"""

from __future__ import annotations

from typing import Any

import torch

from gaunt_md.model.checkpoint import load_checkpoint
from gaunt_md.model.derivatives import ForceField
from gaunt_md.train.config import TrainConfig
from gaunt_md.train.steps import load_frames, make_samples, split_groups, validation_metrics


def validate_checkpoint(checkpoint: str, config: TrainConfig, *, split: str = "valid", dtype: torch.dtype = torch.float64) -> dict[str, Any]:
    """MAE/RMSE per group (file stem) and overall on ``split`` ("valid" or "train").

    Energies are meV/atom, forces meV/Å, stress GPa (see :func:`validation_metrics`).
    """
    model, _ = load_checkpoint(checkpoint, dtype=dtype)
    e0 = dict(zip(model.config.elements, model.config.atomic_energies))
    groups, _ = load_frames(config)
    splits = split_groups(groups, config.valid_fraction, config.seed)
    which = 1 if split == "valid" else 0
    samples = [
        s for g in sorted(groups)
        for s in make_samples([groups[g][i] for i in splits[g][which]], g, model.config.cutoff, e0)
    ]
    metrics = validation_metrics(ForceField(model), samples, dtype, config)
    metrics["num_frames"] = len(samples)
    return metrics


def metrics_table(metrics: dict[str, Any]) -> str:
    """Markdown table: one row per group, MAE (RMSE) for energy (per atom and per structure), forces, stress."""
    groups = sorted({k.split("/")[0] for k in metrics if "/" in k}, key=lambda g: (g == "all", g))
    lines = ["| group | energy MAE (RMSE) meV/atom | energy MAE (RMSE) meV/structure | forces MAE (RMSE) meV/Å | stress MAE (RMSE) GPa |",
             "|---|---|---|---|---|"]
    for g in groups:
        cells = []
        for key in ("energy", "energy_total", "forces", "stress"):
            mae, rmse = metrics.get(f"{g}/{key}_mae"), metrics.get(f"{g}/{key}_rmse")
            cells.append("-" if mae is None else f"{mae:.3g} ({rmse:.3g})")
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
