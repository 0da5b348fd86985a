"""Predict a labelled dataset in batches and compare with its reference values.

Reference labels are read with :func:`gaunt_md.data.datasets.read_labelled` (``REF_energy``,
``REF_forces``, ``REF_stress`` by default, falling back to plain ``energy``/``forces``/``stress``).
Isolated-atom frames (``config_type`` ``IsolatedAtom``) are predicted but left out of the
metrics.

Metrics (the numbers model cards quote):

=============================== ======================================================
``energy_mae/rmse_meV_per_atom`` per-structure energy error divided by its atom count
``forces_mae/rmse_meV_per_A``    over every force component
``stress_mae/rmse_GPa``          over the six Voigt components of periodic frames
=============================== ======================================================

Also per ``config_type`` when the file has them. Files: ``{prefix}-eval.extxyz`` (structures with
``REF_*`` and ``{pred_prefix}energy/forces/stress``), ``{prefix}-eval-metrics.json``,
``{prefix}-eval-summary.yml``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase.calculators.calculator import BaseCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from gaunt_md.drivers.common import (
    DriverResult,
    default_calculator,
    now,
    output_path,
    progress as _progress,
    write_summary,
)
from gaunt_md.errors import GauntError
from gaunt_md.units import GPa

log = logging.getLogger(__name__)


@dataclass(eq=False)
class EvalResult(DriverResult):
    """Outcome of :func:`run_eval`: metrics overall and per config_type, predictions per frame."""

    metrics: dict[str, float]
    metrics_by_config_type: dict[str, dict[str, float]]
    n_structures: int
    energies: list[float]
    files: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0
    atoms: Any = None  # no single final structure; kept for the DriverResult interface


def _predict(calc, structures, *, batch_size: int, stress: bool, progress: bool) -> list[dict[str, Any]]:
    props = ("energy", "forces", "stress") if stress else ("energy", "forces")
    batch = getattr(calc, "calculate_batch", None)
    out: list[dict[str, Any]] = []
    with _progress(len(structures), enabled=progress, desc="eval", unit="struct") as bar:
        for lo in range(0, len(structures), batch_size):
            chunk = structures[lo:lo + batch_size]
            if callable(batch):
                out.extend(batch(chunk, properties=props))
            else:
                for atoms in chunk:
                    a = atoms.copy()
                    a.calc = calc
                    res = {"energy": a.get_potential_energy(), "forces": a.get_forces()}
                    if stress and a.pbc.all():
                        res["stress"] = a.get_stress()
                    out.append(res)
            bar.update(len(chunk))
    return out


def _metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {"n_structures": len(rows)}
    de = [r["de"] for r in rows if r["de"] is not None]
    df = np.concatenate([r["df"].ravel() for r in rows if r["df"] is not None] or [np.zeros(0)])
    ds = np.concatenate([r["ds"] for r in rows if r["ds"] is not None] or [np.zeros(0)])
    for name, values, scale in (("energy", np.asarray(de), 1000.0), ("forces", df, 1000.0), ("stress", ds, 1 / GPa)):
        unit = {"energy": "meV_per_atom", "forces": "meV_per_A", "stress": "GPa"}[name]
        if values.size:
            out[f"{name}_mae_{unit}"] = float(np.abs(values).mean() * scale)
            out[f"{name}_rmse_{unit}"] = float(np.sqrt((values**2).mean()) * scale)
    return out


def run_eval(
    dataset: Any,
    calculator: BaseCalculator | None = None,
    *,
    batch_size: int = 16,
    energy_key: str = "REF_energy",
    forces_key: str = "REF_forces",
    stress_key: str = "REF_stress",
    pred_prefix: str = "gaunt_",
    index: str = ":",
    file_prefix: str | os.PathLike | None = None,
    progress: bool = False,
    dtype: str = "float64",
) -> EvalResult:
    """Predict every frame of ``dataset`` (an extxyz path) and compute MAE/RMSE against its labels.

    ``batch_size`` structures go through one ``calculate_batch`` call when the calculator has it.
    """
    from gaunt_md.data.datasets import is_isolated_atom, read_labelled

    start, t0 = now(), time.perf_counter()
    if int(batch_size) != batch_size or batch_size < 1:
        raise GauntError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    frames = read_labelled(dataset, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                           index=index, required=())
    if not frames:
        raise GauntError(f"no structures in {os.fspath(dataset)!r}")
    calc = calculator if calculator is not None else default_calculator(dtype)
    want_stress = any(f.stress is not None and f.atoms.pbc.all() for f in frames)
    preds = _predict(calc, [f.atoms for f in frames], batch_size=int(batch_size), stress=want_stress, progress=progress)

    rows, groups = [], {}
    for f, p in zip(frames, preds):
        n = len(f.atoms)
        row = {
            "de": (p["energy"] - f.energy) / n if f.energy is not None else None,
            "df": np.asarray(p["forces"]) - f.forces if f.forces is not None else None,
            "ds": (np.asarray(p["stress"]) - full_3x3_to_voigt_6_stress(f.stress))
            if f.stress is not None and "stress" in p else None,
        }
        if is_isolated_atom(f):
            continue
        rows.append(row)
        groups.setdefault(f.config_type or "", []).append(row)
    if not rows:
        raise GauntError("the dataset has no labelled structures besides isolated atoms")
    metrics = _metrics(rows)
    by_type = {k: _metrics(v) for k, v in groups.items() if k} if len(groups) > 1 else {}
    log.info("eval: %s", metrics)

    files: dict[str, str] = {}
    out_xyz = output_path(file_prefix, "-eval.extxyz")
    if out_xyz is not None:
        import ase.io

        written = []
        for f, p in zip(frames, preds):
            a = f.atoms.copy()
            if f.energy is not None:
                a.info[energy_key] = f.energy
            if f.forces is not None:
                a.arrays[forces_key] = f.forces
            if f.stress is not None:
                a.info[stress_key] = full_3x3_to_voigt_6_stress(f.stress)
            a.info[f"{pred_prefix}energy"] = float(p["energy"])
            a.arrays[f"{pred_prefix}forces"] = np.asarray(p["forces"])
            if "stress" in p:
                a.info[f"{pred_prefix}stress"] = np.asarray(p["stress"])
            written.append(a)
        ase.io.write(out_xyz, written, format="extxyz")
        metrics_path = output_path(file_prefix, "-eval-metrics.json")
        metrics_path.write_text(json.dumps({"metrics": metrics, "by_config_type": by_type}, indent=1))
        files.update(predictions=str(out_xyz), metrics=str(metrics_path))
    result = EvalResult(metrics=metrics, metrics_by_config_type=by_type, n_structures=len(frames),
                        energies=[float(p["energy"]) for p in preds], files=files,
                        wall_time_s=time.perf_counter() - t0)
    summary = output_path(file_prefix, "-eval-summary.yml")
    if summary is not None:
        files["summary"] = str(summary)
        inputs = dict(dataset=os.fspath(dataset), batch_size=int(batch_size), energy_key=energy_key,
                      forces_key=forces_key, stress_key=stress_key, index=index, dtype=dtype)
        write_summary(summary, task="eval", inputs=inputs, calculator=calc, start=start,
                      wall_time_s=result.wall_time_s, outputs=files, results=metrics)
    return result
