"""Training steps: preprocessed samples, batched losses, EMA and validation metrics.

Loss (per batch): ``w_E mean(((E - E_ref)/n_atoms)^2) + w_F mean((F - F_ref)^2)
+ w_S mean((sigma - sigma_ref)^2)`` with energies in eV, forces eV/Å, stress eV/Å^3; energies
are compared without E0 (float64 E0, see :class:`~gaunt_md.model.derivatives.ForceField`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gaunt_md.data.batch import collate
from gaunt_md.data.datasets import LabelledStructure, isolated_atom_energies, read_labelled, split_isolated
from gaunt_md.data.graph import AtomicGraph, atoms_to_graph
from gaunt_md.model.derivatives import ForceField, edge_vectors
from gaunt_md.train.config import TrainConfig


@dataclass
class Sample:
    """One training frame, preprocessed once: its graph and its labels (float64 numpy)."""

    graph: AtomicGraph
    group: str
    energy: float | None  # interaction energy (E0 subtracted), eV
    forces: np.ndarray | None
    stress: np.ndarray | None


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
        if "energy" in terms:  # whole-structure energy errors (meV), the molecular benchmarks' metric
            n_atoms = torch.tensor([s.graph.num_atoms for s in chunk if s.energy is not None], dtype=terms["energy"].dtype)
            terms["energy_total"] = terms["energy"] * n_atoms
        for key, grp, scale in (
            ("energy", e_groups, 1e3), ("energy_total", e_groups, 1e3), ("forces", f_groups, 1e3), ("stress", s_groups, 1.0 / GPa)
        ):
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
