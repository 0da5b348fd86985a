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

#: what each card says about data, licence, published targets and limits (prose, not numbers we measured)
CARDS = {
    "gaunt-mlearn": dict(
        title="one Gaunt potential for Li, Mo, Ni, Cu, Si and Ge (the default of `GauntCalculator()`)",
        data="The six mlearn DFT-PBE training sets (Zuo et al., J. Phys. Chem. A 124, 731 (2020)): "
        "`../shared/data/mlearn/{Li,Mo,Ni,Cu,Si,Ge}_train.xyz`, 1402 periodic structures (ground states, strained "
        "cells, surfaces, vacancies, AIMD snapshots), VASP PBE energies, forces and (Li, Mo, Si, Ge) stresses. "
        "E0 per element fitted by least squares. Validation: a seeded 10% of each element's frames.",
        licence="Data: BSD 3-Clause (materialsvirtuallab/mlearn; Ni and Cu through the ACEData conversion). "
        "Model weights: MIT, like gaunt_md.",
        target="Best of GAP and MTP on the mlearn test sets (energy meV/atom / force eV/Å): Ni 0.42/0.01, "
        "Cu 0.41/0.01, Li 0.49/0.01, Mo 2.24/0.09, Si 2.21/0.06, Ge 1.79/0.05 (Zuo et al. 2020).",
        limits="Single-element structures only (no alloys or compounds in the data); PBE; not trained on "
        "pressures or temperatures beyond the mlearn AIMD and strain sets; Ni and Cu had no stress labels. "
        "Worst case we know of: thin Ni slabs (6 atoms, 2.48 Å in-plane cell, training frames 38 and 40 of "
        "Ni_train.xyz) come out 11-17 meV/atom off in energy, 5-7x the Ni validation RMSE "
        "(tests/test_potentials.py).",
    ),
    "gaunt-3bpa": dict(
        title="3BPA (H, C, N, O)",
        data="`../shared/data/3bpa/train_300K.xyz` (500 configurations of 3-(benzyloxy)pyridin-2-amine from "
        "300 K MD, DFT wB97X/6-31G(d); Kovacs et al., JCTC 17, 7696 (2021)) with the isolated-atom energies of "
        "`iso_atoms.xyz` as E0. Validation: a seeded 10% of the frames.",
        licence="Data: MIT (davkovacs/BOTNet-datasets). Model weights: MIT.",
        target="MACE's published 300 K test RMSE: 3.0 meV energy, 8.8 meV/Å forces (Batatia et al., NeurIPS 2022).",
        limits="One molecule, 300 K geometries; the 600 K/1200 K and dihedral-scan regimes were not in the "
        "training data; no periodic systems.",
    ),
    "gaunt-rmd17-ethanol": dict(
        title="rMD17 ethanol (H, C, O)",
        data="`../shared/data/rmd17/ethanol_train.xyz` (1000 configurations, PBE/def2-SVP; Christensen and von "
        "Lilienfeld 2020), standard protocol: 950 training and 50 validation configurations (seeded split).",
        licence="Data: CC0 1.0 (andersx/rmd17-npz). Model weights: MIT.",
        target="MACE's published test MAE: 0.4 meV energy, 2.1 meV/Å forces (Batatia et al., NeurIPS 2022).",
        limits="One molecule in vacuum near its MD ensemble; E0s fitted by least squares on a fixed composition "
        "(only the total energy is meaningful).",
    ),
    "gaunt-rmd17-aspirin": dict(
        title="rMD17 aspirin (H, C, O)",
        data="`../shared/data/rmd17/aspirin_train.xyz` (1000 configurations, PBE/def2-SVP; Christensen and von "
        "Lilienfeld 2020), standard protocol: 950 training and 50 validation configurations (seeded split).",
        licence="Data: CC0 1.0 (andersx/rmd17-npz). Model weights: MIT.",
        target="MACE's published test MAE: 2.2 meV energy, 6.6 meV/Å forces (Batatia et al., NeurIPS 2022).",
        limits="One molecule in vacuum near its MD ensemble; E0s fitted by least squares on a fixed composition "
        "(only the total energy is meaningful).",
    ),
}


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
    write_card(name, root, model, header, extra, metrics, config_path.relative_to(root))
    return extra


def write_card(name, root, model, header, extra, metrics, config_path) -> None:
    from benchmarks.shipped_speed import SYSTEMS, atom_steps_per_second
    from gaunt_md.calculator import GauntCalculator

    torch.set_num_threads(1)  # this maintainer script only; 2 threads thrash on a loaded 2-core machine
    info, training = CARDS[name], extra["training"]
    speed_rows = []
    for label, build in SYSTEMS.get(name, []):
        speeds = [atom_steps_per_second(GauntCalculator(name, device="cpu", dtype=d), build()) for d in ("float32", "float64")]
        speed_rows.append(f"| {label} | {speeds[0]:.0f} | {speeds[1]:.0f} |")
    cfg = model.config
    text = f"""# {name}: {info['title']}

**Elements:** {', '.join(header['elements'])}

| | |
|---|---|
| architecture | GauntPotential: {cfg.num_layers} layers, {cfg.num_channels} channels, edge l_max {cfg.l_max_edge}, hidden l_max {cfg.l_max_hidden}, correlation {cfg.correlation} (Gaunt product basis), cutoff {cfg.cutoff} Å, {cfg.num_bessel} Bessel functions |
| parameters | {sum(p.numel() for p in model.parameters())} |
| message scales | {('fitted at init, ' + ', '.join(f'{x:g}' for x in cfg.message_scales) + ' (unit-rms product-basis inputs)') if cfg.message_scales else 'none (trained before message normalisation existed; messages started at rms 0.01-0.04)'} |
| training command | `python -m gaunt_md.train train --config {config_path} --threads 1` (from the repository root; an interrupted run continues with the same command plus `--resume`) |
| epochs | best validation loss at epoch {training.get('epoch')} of {training['epochs_run']} run |
| wall time | {training['wall_time_h']} h of training on {training['hardware']}, shared with other jobs |
| precision | trained in {training.get('dtype')}; the calculator runs float32 or float64 |

## Data
{info['data']}

## Licence
{info['licence']}

## Validation metrics
Measured by `python potentials/ship.py {name}` (which runs `gaunt_md.train.validate` in float64 on the
validation split that `{config_path}` defines; the same numbers are in the checkpoint header and
`metrics.json`). MAE with RMSE in parentheses:

{metrics_table(metrics)}

Published target for comparison (test sets, which we never used): {info['target']}
These targets are **not** reached: the run had {training['wall_time_h']} h on shared CPU cores; more
epochs, more channels (64-128) and a GPU are what would close the gap.

## Speed
`python benchmarks/shipped_speed.py {name}` (energy + forces (+ stress) per MD-like step through the ASE
calculator with its defaults (on CPU the fused kernels of gaunt_md/model/kernels), 1 torch thread,
on the 2-core development machine; timings there move by up to 2x between runs):

| system | float32 atom-steps/s | float64 atom-steps/s |
|---|---|---|
{chr(10).join(speed_rows)}

## Limits
{info['limits']}
"""
    (root / "potentials" / name / "MODEL_CARD.md").write_text(text)


if __name__ == "__main__":
    ROOT = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(ROOT))  # for benchmarks.shipped_speed
    ship(sys.argv[1], ROOT)
