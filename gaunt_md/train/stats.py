"""Data statistics that fix a model's normalisation before training: E0s, scale, shift, neighbours
and the message scales.

All functions but :func:`message_scales` (which runs the initial model) are pure and take
:class:`~gaunt_md.data.datasets.LabelledStructure` lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from gaunt_md.data.datasets import LabelledStructure
from gaunt_md.data.graph import AtomicGraph
from gaunt_md.errors import GauntError


def composition_matrix(frames: Sequence[LabelledStructure], elements: Sequence[int]) -> np.ndarray:
    """``[n_frames, n_elements]`` count of each element in each frame."""
    index = {z: k for k, z in enumerate(elements)}
    counts = np.zeros((len(frames), len(elements)))
    for i, f in enumerate(frames):
        for z in f.atoms.numbers:
            counts[i, index[int(z)]] += 1
    return counts


def fit_atomic_energies(
    frames: Sequence[LabelledStructure],
    elements: Sequence[int],
    known: dict[int, float] | None = None,
) -> dict[int, float]:
    """Per-element reference energies ``E0`` (eV).

    Elements in ``known`` (e.g. isolated-atom DFT energies) keep their value; the others are the
    least-squares solution of ``E_frame - sum(known) = sum_z n_z E0_z`` over ``frames``
    (minimum-norm when the compositions do not determine them, e.g. a fixed molecule).
    """
    known = dict(known or {})
    free = [z for z in elements if z not in known]
    if not free:
        return {z: float(known[z]) for z in elements}
    labelled = [f for f in frames if f.energy is not None]
    if not labelled:
        raise GauntError("cannot fit E0s: no frame has an energy")
    counts = composition_matrix(labelled, elements)
    energies = np.array([f.energy for f in labelled], dtype=np.float64)
    for k, z in enumerate(elements):
        if z in known:
            energies -= counts[:, k] * known[z]
    cols = [k for k, z in enumerate(elements) if z in free]
    solution, *_ = np.linalg.lstsq(counts[:, cols], energies, rcond=None)
    out = {z: float(known[z]) for z in known if z in elements}
    out.update({elements[k]: float(e) for k, e in zip(cols, solution)})
    return {z: out[z] for z in elements}


def energy_shift(frames: Sequence[LabelledStructure], e0: dict[int, float]) -> float:
    """Mean per-atom energy left after subtracting the E0s (eV/atom)."""
    vals = [(f.energy - sum(e0[int(z)] for z in f.atoms.numbers)) / len(f.atoms) for f in frames if f.energy is not None]
    return float(np.mean(vals)) if vals else 0.0


def force_rms(frames: Sequence[LabelledStructure]) -> float:
    """Root mean square force component (eV/Å); 1.0 when no frame has forces."""
    forces = [f.forces.ravel() for f in frames if f.forces is not None and len(f.forces)]
    if not forces:
        return 1.0
    rms = float(np.sqrt(np.mean(np.concatenate(forces) ** 2)))
    return rms if rms > 1e-8 else 1.0


def average_num_neighbors(graphs: Sequence[AtomicGraph]) -> float:
    """Mean number of edges per receiving atom."""
    edges = sum(g.edge_index.shape[1] for g in graphs)
    atoms = sum(g.num_atoms for g in graphs)
    return max(edges / max(atoms, 1), 1.0)


def message_scales(model: torch.nn.Module, graphs: Sequence[AtomicGraph], significant: int = 4) -> tuple[float, ...]:
    """Per-layer factors that give the product basis unit-rms inputs on ``graphs`` at init.

    At initialisation the messages ``A_i`` come out at rms 0.01-0.04 (the Bessel basis and the
    radial MLP are O(0.1), and the sum over neighbours is divided by their average number), so the
    ``nu = 2, 3`` product terms would start 1e2-1e4 below ``nu = 1``. Layer by layer (each
    layer's input depends on the factors before it), this measures the rms of what the product
    basis receives and sets the factor to its inverse, as ``avg_num_neighbors`` is set from the
    data. ``model`` (a freshly built :class:`~gaunt_md.model.potential.GauntPotential`) is
    modified in place; the factors are rounded to ``significant`` digits so that a resumed run
    recomputes exactly the same configuration.
    """
    from gaunt_md.data.batch import collate
    from gaunt_md.model.derivatives import edge_vectors

    batch = collate(list(graphs), dtype=torch.float64)
    vectors = edge_vectors(batch.positions, batch.cell, batch.edge_index, batch.unit_shifts, batch.batch)
    dtype = next(model.parameters()).dtype
    scales = []
    for layer in model.layers:
        captured: list[torch.Tensor] = []
        hook = layer.linear_message.register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            with torch.no_grad():
                model(batch.numbers, batch.edge_index, vectors.to(dtype), False)
        finally:
            hook.remove()
        rms = float(captured[0].pow(2).mean().sqrt())
        factor = float(f"{1.0 / rms:.{significant}g}") if rms > 0 and math.isfinite(rms) else 1.0
        layer.conv.norm *= factor
        scales.append(factor)
    return tuple(scales)
