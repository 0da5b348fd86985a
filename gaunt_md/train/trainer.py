"""Training a Gaunt potential on labelled extxyz data: resumable, deterministic for a seed.

One run lives in ``output_dir``:

================  =====================================================================
file              content
================  =====================================================================
config.json       the resolved :class:`TrainConfig` (what ``--config`` accepts back)
state.pt          everything needed to resume (weights, EMA, optimiser, scheduler, RNG,
                  split, history); tensors and plain containers only, loaded with
                  ``weights_only=True``; written atomically at the end of every epoch
best.safetensors  the EMA weights with the lowest validation loss so far (a checkpoint in
                  the calculator's format, with data description, command and metrics)
log.csv           one row per epoch: losses, validation MAE/RMSE per group, lr, time
================  =====================================================================

Loss (per batch): ``w_E mean(((E - E_ref)/n_atoms)^2) + w_F mean((F - F_ref)^2)
+ w_S mean((sigma - sigma_ref)^2)`` with energies in eV, forces eV/Å, stress eV/Å^3; energies
are compared without E0 (float64 E0, see :class:`~gaunt_md.model.derivatives.ForceField`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaunt_md.data.batch import collate
from gaunt_md.data.datasets import LabelledStructure, isolated_atom_energies, read_labelled, split_isolated
from gaunt_md.data.graph import AtomicGraph, atoms_to_graph
from gaunt_md.errors import GauntError
from gaunt_md.model.checkpoint import save_checkpoint
from gaunt_md.model.config import ModelConfig
from gaunt_md.model.derivatives import ForceField, edge_vectors
from gaunt_md.model.potential import GauntPotential
from gaunt_md.train import stats

log = logging.getLogger(__name__)
STATE_VERSION = 1


@dataclass(kw_only=True)
class TrainConfig:
    """Every option of ``gaunt-md train`` (flags and ``--config`` keys use these names)."""

    train_files: list[str]
    output_dir: str = "runs/gaunt"
    name: str = "gaunt"
    description: str = ""
    valid_fraction: float = 0.05
    e0_files: list[str] = field(default_factory=list)  # extra files holding isolated atoms
    energy_key: str = "REF_energy"
    forces_key: str = "REF_forces"
    stress_key: str = "REF_stress"
    # model
    cutoff: float = 5.0
    num_channels: int = 64
    l_max_edge: int = 3
    l_max_hidden: int = 1
    correlation: int = 3
    num_layers: int = 2
    num_bessel: int = 8
    radial_hidden: list[int] = field(default_factory=lambda: [64, 64, 64])
    # optimisation
    epochs: int = 100
    batch_size: int = 4
    lr: float = 0.01
    weight_decay: float = 5e-7
    energy_weight: float = 10.0
    forces_weight: float = 1.0
    stress_weight: float = 100.0
    ema_decay: float = 0.99
    clip_grad: float = 10.0
    scheduler: str = "plateau"  # or "cosine"
    lr_factor: float = 0.8
    lr_patience: int = 5
    patience: int = 50  # early stopping, epochs without validation improvement
    seed: int = 0
    dtype: str = "float32"
    max_time_min: float = 0.0  # stop (resumably) after this many minutes; 0 = no limit

    def __post_init__(self) -> None:
        if not self.train_files:
            raise GauntError("train_files is empty: give at least one extxyz file")
        if self.scheduler not in ("plateau", "cosine"):
            raise GauntError(f"scheduler must be 'plateau' or 'cosine', got {self.scheduler!r}")
        if self.dtype not in ("float32", "float64"):
            raise GauntError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise GauntError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k.replace("-", "_"): v for k, v in d.items()}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GauntError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class Sample:
    """One training frame, preprocessed once: its graph and its labels (float64 numpy)."""

    graph: AtomicGraph
    group: str
    energy: float | None  # interaction energy (E0 subtracted), eV
    forces: np.ndarray | None
    stress: np.ndarray | None


# ---------------------------------------------------------------------------------------- data
def load_frames(config: TrainConfig) -> tuple[dict[str, list[LabelledStructure]], dict[int, float]]:
    """Frames per group (file stem) without isolated atoms, and the isolated-atom E0s found."""
    groups: dict[str, list[LabelledStructure]] = {}
    isolated: list[LabelledStructure] = []
    keys = dict(energy_key=config.energy_key, forces_key=config.forces_key, stress_key=config.stress_key)
    for path in config.train_files:
        iso, rest = split_isolated(read_labelled(path, **keys))
        isolated += iso
        groups[Path(path).stem] = rest
    for path in config.e0_files:
        iso, _ = split_isolated(read_labelled(path, **keys))
        isolated += iso
    return groups, isolated_atom_energies(isolated)


def split_groups(groups: dict[str, list], fraction: float, seed: int) -> dict[str, tuple[list[int], list[int]]]:
    """Per group, a seeded random (train, valid) index split; every group gets validation frames."""
    out = {}
    for k, (name, frames) in enumerate(sorted(groups.items())):
        rng = np.random.default_rng([seed, k])
        perm = rng.permutation(len(frames)).tolist()
        n_valid = int(round(fraction * len(frames))) if fraction > 0 else 0
        if fraction > 0 and len(frames) > 1:
            n_valid = max(n_valid, 1)
        out[name] = (sorted(perm[n_valid:]), sorted(perm[:n_valid]))
    return out


def make_samples(frames: list[LabelledStructure], group: str, cutoff: float, e0: dict[int, float]) -> list[Sample]:
    samples = []
    for f in frames:
        energy = None if f.energy is None else f.energy - sum(e0[int(z)] for z in f.atoms.numbers)
        samples.append(Sample(atoms_to_graph(f.atoms, cutoff), group, energy, f.forces, f.stress))
    return samples


# ---------------------------------------------------------------------------------------- steps
def evaluate_batch(forcefield: ForceField, samples: list[Sample], dtype: torch.dtype, *, training: bool):
    """Predictions and per-term squared errors for a list of samples."""
    batch = collate([s.graph for s in samples], dtype=torch.float64)
    vectors = edge_vectors(batch.positions, batch.cell, batch.edge_index, batch.unit_shifts, batch.batch).to(dtype)
    want_stress = any(s.stress is not None for s in samples)
    out = forcefield(
        batch.numbers, batch.edge_index, vectors, batch.batch, batch.num_graphs,
        compute_forces=True, compute_virial=want_stress, create_graph=training,
    )
    n_atoms = torch.diff(batch.ptr).to(dtype)
    terms: dict[str, torch.Tensor] = {}
    e_mask = [s.energy is not None for s in samples]
    if any(e_mask):
        idx = torch.tensor([i for i, m in enumerate(e_mask) if m])
        ref = torch.tensor([s.energy for s in samples if s.energy is not None], dtype=dtype)
        terms["energy"] = (out["interaction_energy"][idx] - ref) / n_atoms[idx]  # eV/atom
    f_idx, f_ref = [], []
    ptr = batch.ptr.tolist()
    for i, s in enumerate(samples):
        if s.forces is not None:
            f_idx.append(torch.arange(ptr[i], ptr[i + 1]))
            f_ref.append(torch.from_numpy(s.forces))
    if f_idx:
        idx = torch.cat(f_idx)
        terms["forces"] = out["forces"][idx] - torch.cat(f_ref).to(dtype)  # eV/Å
    if want_stress:
        idx = torch.tensor([i for i, s in enumerate(samples) if s.stress is not None])
        volume = torch.abs(torch.linalg.det(batch.cell[idx])).to(dtype)
        stress = -out["virial"][idx] / volume.view(-1, 1, 1)
        ref = torch.from_numpy(np.stack([s.stress for s in samples if s.stress is not None])).to(dtype)
        terms["stress"] = stress - ref  # eV/Å^3
    return terms


def weighted_loss(terms: dict[str, torch.Tensor], config: TrainConfig) -> torch.Tensor:
    weights = {"energy": config.energy_weight, "forces": config.forces_weight, "stress": config.stress_weight}
    loss = sum(weights[k] * v.pow(2).mean() for k, v in terms.items())
    return loss if isinstance(loss, torch.Tensor) else torch.tensor(0.0)


class EMA:
    """Exponential moving average of parameters (``decay`` per step, warm-up as in MACE/torch-ema)."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float) -> None:
        self.params = params
        self.decay = decay
        self.shadow = [p.detach().clone() for p in params]
        self.num_updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange live and averaged weights (call twice to undo)."""
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


# ---------------------------------------------------------------------------------------- metrics
def validation_metrics(forcefield, samples: list[Sample], dtype, config: TrainConfig) -> dict[str, float]:
    """MAE/RMSE per group and overall: energy meV/atom, forces meV/Å, stress GPa; and the loss."""
    from gaunt_md.units import GPa

    acc: dict[str, dict[str, list[np.ndarray]]] = {}
    loss_sum, n_batches = 0.0, 0
    for start in range(0, len(samples), max(config.batch_size, 8)):
        chunk = samples[start : start + max(config.batch_size, 8)]
        terms = evaluate_batch(forcefield, chunk, dtype, training=False)
        loss_sum += float(weighted_loss({k: v.detach() for k, v in terms.items()}, config))
        n_batches += 1
        # attribute errors to groups (batches may mix groups)
        e_groups = [s.group for s in chunk if s.energy is not None]
        f_groups = np.concatenate([[s.group] * len(s.forces) for s in chunk if s.forces is not None]) if "forces" in terms else []
        s_groups = [s.group for s in chunk if s.stress is not None]
        for key, grp, scale in (("energy", e_groups, 1e3), ("forces", f_groups, 1e3), ("stress", s_groups, 1.0 / GPa)):
            if key not in terms:
                continue
            err = terms[key].detach().double().numpy() * scale
            for g in set(grp):
                mask = np.asarray(grp) == g
                acc.setdefault(g, {}).setdefault(key, []).append(err[mask].ravel())
                acc.setdefault("all", {}).setdefault(key, []).append(err[mask].ravel())
    metrics: dict[str, float] = {"valid_loss": loss_sum / max(n_batches, 1)}
    for g, per_key in acc.items():
        for key, chunks in per_key.items():
            e = np.concatenate(chunks)
            metrics[f"{g}/{key}_mae"] = float(np.mean(np.abs(e)))
            metrics[f"{g}/{key}_rmse"] = float(np.sqrt(np.mean(e**2)))
    return metrics


# ---------------------------------------------------------------------------------------- loop
def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def build_model(config: TrainConfig, model_config: ModelConfig) -> GauntPotential:
    """The initial model, drawn from a private RNG stream for ``config.seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return GauntPotential(model_config)


def prepare(config: TrainConfig):
    """Read data, fix the split and the model's normalisation; return (model_config, train, valid)."""
    groups, known_e0 = load_frames(config)
    splits = split_groups(groups, config.valid_fraction, config.seed)
    train_frames = [groups[g][i] for g in sorted(groups) for i in splits[g][0]]
    elements = sorted({int(z) for frames in groups.values() for f in frames for z in f.atoms.numbers})
    e0 = stats.fit_atomic_energies(train_frames, elements, known_e0)
    train = [s for g in sorted(groups) for s in make_samples([groups[g][i] for i in splits[g][0]], g, config.cutoff, e0)]
    valid = [s for g in sorted(groups) for s in make_samples([groups[g][i] for i in splits[g][1]], g, config.cutoff, e0)]
    model_config = ModelConfig(
        elements=tuple(elements),
        cutoff=config.cutoff,
        num_channels=config.num_channels,
        l_max_edge=config.l_max_edge,
        l_max_hidden=config.l_max_hidden,
        correlation=config.correlation,
        num_layers=config.num_layers,
        num_bessel=config.num_bessel,
        radial_hidden=tuple(config.radial_hidden),
        avg_num_neighbors=stats.average_num_neighbors([s.graph for s in train]),
        atomic_energies=tuple(e0[z] for z in elements),
        scale=stats.force_rms(train_frames),
        shift=stats.energy_shift(train_frames, e0),
    )
    log.info("train %d frames, valid %d frames, elements %s", len(train), len(valid), elements)
    return model_config, train, valid


def train(config: TrainConfig, *, resume: bool = False, progress: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train (or resume) a run; return the final history row. Stops at ``epochs``, early
    stopping, or ``max_time_min`` (state saved, continue with ``resume=True``)."""
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "state.pt"
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    command = command or " ".join(shlex.quote(a) for a in sys.argv)

    model_config, train_samples, valid_samples = prepare(config)
    model = build_model(config, model_config).to(dtype)
    forcefield = ForceField(model)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr, amsgrad=True, weight_decay=config.weight_decay)
    if config.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.lr_factor, patience=config.lr_patience)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr * 0.01)
    ema = EMA(params, config.ema_decay)
    rng = np.random.default_rng(config.seed)
    epoch, best, best_epoch, history = 0, math.inf, -1, []

    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=True)
        if state["version"] != STATE_VERSION or state["model_config"] != model_config.to_dict():
            raise GauntError(f"{state_path} was written for another model/data configuration; cannot resume")
        with torch.no_grad():
            for p, v in zip(params, state["params"]):
                p.copy_(v)
            for s, v in zip(ema.shadow, state["ema"]):
                s.copy_(v)
        ema.num_updates = state["ema_updates"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = json.loads(state["rng"])
        epoch, best, best_epoch, history = state["epoch"], state["best"], state["best_epoch"], json.loads(state["history"])
        log.info("resumed %s at epoch %d (best valid loss %.4g at epoch %d)", out_dir, epoch, best, best_epoch)
    elif state_path.exists():
        raise GauntError(f"{state_path} exists: pass --resume to continue it, or choose another --output-dir")
    (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))

    start = time.monotonic()
    while epoch < config.epochs:
        t0 = time.monotonic()
        perm = rng.permutation(len(train_samples))
        model.train()
        total, n = 0.0, 0
        batches = range(0, len(perm), config.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        for b in batches:
            samples = [train_samples[i] for i in perm[b : b + config.batch_size]]
            loss = weighted_loss(evaluate_batch(forcefield, samples, dtype, training=True), config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
            optimizer.step()
            ema.update()
            total += float(loss.detach())
            n += 1
        model.eval()
        ema.swap()
        metrics = validation_metrics(forcefield, valid_samples, dtype, config) if valid_samples else {"valid_loss": total / n}
        epoch += 1
        improved = metrics["valid_loss"] < best
        if improved:
            best, best_epoch = metrics["valid_loss"], epoch
            save_checkpoint(
                out_dir / "best.safetensors", model,
                description=config.description or f"gaunt_md potential {config.name}",
                training={
                    "command": command, "data": config.train_files, "e0_files": config.e0_files,
                    "epoch": epoch, "valid_fraction": config.valid_fraction, "seed": config.seed,
                    "dtype": config.dtype, "num_parameters": sum(p.numel() for p in params),
                },
                metrics={k: round(v, 6) for k, v in metrics.items()},
            )
        ema.swap()
        if config.scheduler == "plateau":
            scheduler.step(metrics["valid_loss"])
        else:
            scheduler.step()
        row = {"epoch": epoch, "train_loss": total / max(n, 1), "lr": optimizer.param_groups[0]["lr"],
               "epoch_time_s": time.monotonic() - t0, **metrics}
        history.append(row)
        _write_log(out_dir / "log.csv", history)
        _atomic_torch_save(
            {
                "version": STATE_VERSION,
                "model_config": model_config.to_dict(),
                "params": [p.detach().clone() for p in params],
                "ema": [s.clone() for s in ema.shadow],
                "ema_updates": ema.num_updates,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": json.dumps(rng.bit_generator.state),
                "epoch": epoch, "best": best, "best_epoch": best_epoch,
                "history": json.dumps(history),
            },
            state_path,
        )
        log.info("epoch %d train %.4g valid %.4g%s", epoch, row["train_loss"], metrics["valid_loss"], " *" if improved else "")
        if epoch - best_epoch >= config.patience:
            log.info("early stopping: no improvement for %d epochs", config.patience)
            break
        if config.max_time_min and time.monotonic() - start > 60.0 * config.max_time_min:
            log.info("time limit of %.1f min reached; resume with --resume", config.max_time_min)
            break
    return history[-1] if history else {}


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)
