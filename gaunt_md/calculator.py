"""``GauntCalculator``: the ASE face of a Gaunt potential.

``atoms.calc = GauntCalculator()`` gives ``energy``/``free_energy`` (eV), ``forces`` (eV/Å),
``energies`` (eV per atom, E0 included, summing to ``energy``) and, for fully periodic cells,
``stress`` (Voigt ``xx, yy, zz, yz, xz, xy``, eV/Å^3, ASE sign: positive under tension).
``calc.calculate_batch(list_of_atoms)`` evaluates many structures in few model calls.

The calculator is thin: graphs come from :mod:`gaunt_md.data`, physics from
:mod:`gaunt_md.model`; here are only device/dtype choice, input checks and unit conventions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import chemical_symbols

from gaunt_md.data.batch import chunk, collate
from gaunt_md.data.graph import atoms_to_graphs
from gaunt_md.data.verlet import VerletGraphs
from gaunt_md.errors import DeviceError, StructureError, UnknownElementError
from gaunt_md.model import kernels
from gaunt_md.model.checkpoint import load_checkpoint
from gaunt_md.model.derivatives import ForceField, edge_vectors
from gaunt_md.potentials import resolve_model
from gaunt_md.runtime import freed_memory_kept

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


_CHECKED_ARRAYS = tuple(change for change in all_changes if change not in ("cell", "pbc"))


def _identical(a: Atoms, b: Atoms) -> bool:
    """No change ASE's ``compare_atoms`` would see: cell, pbc and the arrays it checks (positions,
    numbers, initial charges and magnetic moments; not momenta) bit for bit, no tolerances."""
    if not (np.array_equal(a.cell.array, b.cell.array) and np.array_equal(a.pbc, b.pbc)):
        return False
    for key in _CHECKED_ARRAYS:
        if (key in a.arrays) != (key in b.arrays):
            return False
        if key in a.arrays and not np.array_equal(a.arrays[key], b.arrays[key]):
            return False
    return True


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; refuse CUDA where there is none."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(device)!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(device)!r} requested but only {torch.cuda.device_count()} CUDA devices exist")
    elif dev.type != "cpu":
        raise DeviceError(f"unsupported device {str(device)!r}; use 'auto', 'cpu' or 'cuda[:N]'")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise DeviceError(f"unsupported dtype {dtype!r}; use 'float32' or 'float64'")


#: Voigt order xx, yy, zz, yz, xz, xy as (row, column) index arrays into a 3 x 3 tensor.
_VOIGT_ROWS, _VOIGT_COLS = np.array([0, 1, 2, 1, 0, 0]), np.array([0, 1, 2, 2, 2, 1])


class GauntCalculator(Calculator):
    """ASE calculator for a Gaunt potential.

    Args:
        model: a shipped model name (see :func:`gaunt_md.available_models`), ``"default"``, or the
            path of a checkpoint (``.safetensors``).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
        dtype: ``"float64"`` (default; relax, phonons, EOS) or ``"float32"`` (fast MD).
        min_distance: refuse structures with two atoms closer than this (Å); ``None`` disables.
        max_batch_atoms, max_batch_edges: bounds on one model call in :meth:`calculate_batch`;
            ``max_batch_atoms`` defaults to 8192 on CUDA, and on CPU with the fused kernels in a
            process that keeps freed memory (:func:`gaunt_md.runtime.freed_memory_kept`; fewer,
            larger calls: each parallel region may have to wake sleeping threads, which made 4096
            slower with ``OMP_WAIT_POLICY=PASSIVE``; ``max_batch_edges`` bounds memory); to 1024 on
            CPU with the kernels and glibc's default allocator (it maps every block of 32 MB or
            more afresh and returns it on free, so larger batches page-fault their big tensors in
            on every call: 1000 small cells took 0.33 s in 8192-atom batches, 0.25 s in 1024-atom
            ones; ``benchmarks/results/model_batch_omp_active_malloc_default{_8192,}_2026-12-04g.md``);
            and to 256 on CPU without the kernels
            (larger batches were slower there: their edge tensors leave the cache;
            ``benchmarks/model_speed.py --batch [--max-batch-atoms N]``).
        skin: single-structure calls keep their neighbour list between calls, searched with
            ``cutoff + skin`` (Å), while no atom has moved more than ``skin / 2`` and numbers,
            cell and pbc are unchanged (a Verlet list, :class:`~gaunt_md.data.verlet.VerletGraphs`:
            MD and optimiser steps skip most searches); ``0`` searches on every call.
        fused: run the edge convolutions and product bases through the fused C++ kernels on
            CPU (:mod:`gaunt_md.model.kernels`, compiled on first use in seconds). ``None`` (default): when
            the device is the CPU and a C++ compiler is available, else plain torch ops;
            ``True``: require it; ``False``: plain torch ops.
        radial_intervals: with the fused kernel, tabulate each layer's radial MLP as a cubic
            Hermite table with this many intervals on ``[0, cutoff]`` (2048, shipped models,
            float64: energies within 1e-12 of the MLP's, relative, forces within 1e-7 of the
            largest force; ``benchmarks/radial_table.py``); ``0`` evaluates the MLP itself.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: str | os.PathLike = "default",
        device: str = "auto",
        dtype: str = "float64",
        *,
        min_distance: float | None = 0.5,
        max_batch_atoms: int | None = None,
        max_batch_edges: int = 200_000,
        fused: bool | None = None,
        radial_intervals: int = kernels.DEFAULT_RADIAL_INTERVALS,
        skin: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        path = resolve_model(model)
        potential, header = load_checkpoint(path, dtype=self.dtype, device=self.device)
        # inference only: forces need gradients w.r.t. edge vectors, never w.r.t. weights, and
        # frozen weights let autograd skip saving what their gradients would need
        self.potential = potential.eval().requires_grad_(False)
        self.forcefield = ForceField(potential)
        self.metadata = header
        self.cutoff = float(potential.config.cutoff)
        self.elements = tuple(potential.config.elements)
        self.min_distance = min_distance
        self.neighbors = VerletGraphs(self.cutoff, skin)  # for single-structure calls
        self.fused = self._use_fused_kernel(fused, int(radial_intervals))
        self.forcefield.fused = self.fused  # forces and stress from the edge gradients in C++ too
        if max_batch_atoms is None:
            if self.device.type == "cuda" or (self.fused and freed_memory_kept()):
                max_batch_atoms = 8192
            else:
                max_batch_atoms = 1024 if self.fused else 256
        self.max_batch_atoms = int(max_batch_atoms)
        self.max_batch_edges = int(max_batch_edges)
        self.parameters.update(
            model=os.fspath(model), path=str(path), device=str(self.device),
            dtype=str(self.dtype).replace("torch.", ""), arch="gaunt_md",
            version=header.get("package_version"), fused=self.fused,
            radial_intervals=int(radial_intervals) if self.fused else 0, skin=float(skin),
        )
        log.info("GauntCalculator: %s on %s in %s (fused kernel: %s)", path, self.device, self.parameters["dtype"], self.fused)

    def _use_fused_kernel(self, fused: bool | None, radial_intervals: int) -> bool:
        if fused is False:
            return False
        if self.device.type != "cpu":
            if fused:
                raise DeviceError(f"fused=True: the fused kernel runs on CPU only, not on {self.device}")
            return False
        if kernels.enable(self.potential, radial_intervals):  # raises on radial_intervals < 0
            return True
        if fused:
            raise RuntimeError(f"fused=True but the fused kernel could not be built: {kernels.load_error()}")
        return False

    # ------------------------------------------------------------------ ASE contract
    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's check, after a fast path for atoms identical to the last ones.

        ASE compares every array with ``np.allclose``, and an MD step asks several times (forces,
        energy, stress). Bit-identical cell, pbc and arrays mean no change under any tolerance;
        anything else goes to ASE's comparison.
        """
        old = self.atoms
        if old is not None and _identical(old, atoms):
            return []
        return super().check_state(atoms, tol)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        if "stress" in properties and not self.atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress is only defined for fully periodic cells; this structure has pbc="
                f"{self.atoms.pbc.tolist()}"
            )
        # periodic cells get the stress in the same pass (a few % of a call): cell filters and NPT
        # ask for forces and then stress, which would otherwise cost a second model call per step
        want_stress = "stress" in properties or bool(self.atoms.pbc.all())
        self.results = self._evaluate([self.atoms], want_stress=want_stress, reuse_neighbors=True)[0]

    def calculate_batch(
        self,
        atoms_list: Sequence[Atoms],
        properties: Sequence[str] = ("energy", "forces", "stress"),
        *,
        progress: bool = False,
    ) -> list[dict[str, Any]]:
        """Evaluate many structures; return one result dict per structure (same keys as ``results``).

        Neighbour lists are built per structure and the graphs concatenated into batches of at
        most ``max_batch_atoms`` atoms / ``max_batch_edges`` edges. ``stress`` is returned for
        fully periodic structures only.
        """
        unknown = [p for p in properties if p not in self.implemented_properties]
        if unknown:
            raise PropertyNotImplementedError(f"unknown properties {unknown}; available: {self.implemented_properties}")
        return self._evaluate(list(atoms_list), want_stress="stress" in properties, progress=progress)

    # ------------------------------------------------------------------ internals
    def check_elements(self, atoms: Atoms, index: int | None = None) -> None:
        missing = sorted(set(atoms.numbers.tolist()) - set(self.elements))
        if missing:
            where = "" if index is None else f" (structure {index})"
            raise UnknownElementError(
                f"elements {[chemical_symbols[z] for z in missing]}{where} are not covered by this model; "
                f"it covers {[chemical_symbols[z] for z in self.elements]}"
            )

    def _graphs(self, atoms_list: list[Atoms], reuse_neighbors: bool = False):
        for k, atoms in enumerate(atoms_list):
            if not isinstance(atoms, Atoms):
                raise StructureError(f"structure {k} is a {type(atoms).__name__}, not ase.Atoms")
            if len(atoms) == 0:
                raise StructureError(f"structure {k} has no atoms")
            self.check_elements(atoms, k if len(atoms_list) > 1 else None)
        if reuse_neighbors:  # one evolving structure (calculate): its kept neighbour list
            return [self.neighbors.graph(atoms, self.min_distance) for atoms in atoms_list]
        return atoms_to_graphs(atoms_list, self.cutoff, min_distance=self.min_distance)

    def _evaluate(
        self, atoms_list: list[Atoms], *, want_stress: bool, progress: bool = False, reuse_neighbors: bool = False
    ) -> list[dict[str, Any]]:
        graphs = self._graphs(atoms_list, reuse_neighbors)
        groups = chunk(graphs, self.max_batch_atoms, self.max_batch_edges)
        results: list[dict[str, Any]] = [{} for _ in graphs]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(graphs), desc="evaluate", unit="struct")
        for group in groups:
            batch = collate([graphs[i] for i in group], dtype=torch.float64, device=self.device)
            make_vectors = kernels.edge_vectors if self.fused else edge_vectors  # the same numbers
            vectors = make_vectors(batch.positions, batch.cell, batch.edge_index, batch.unit_shifts, batch.batch)
            out = self.forcefield(
                batch.numbers, batch.edge_index, vectors.to(self.dtype), batch.batch, batch.num_graphs,
                compute_forces=True, compute_virial=want_stress,
            )
            # one copy of each batch array, split into per-structure views (no per-structure copies)
            cut = batch.ptr[1:-1].tolist()
            energies = out["energy"].detach().double().cpu().tolist()
            node_energy = np.split(out["node_energy"].detach().double().cpu().numpy().copy(), cut)
            forces = np.split(out["forces"].detach().double().cpu().numpy().copy(), cut)
            stress = None
            if want_stress:  # Voigt xx yy zz yz xz xy of the symmetric -virial / V, all structures at once
                virial = out["virial"].detach().double().cpu().numpy()
                volume = np.abs(np.linalg.det(batch.cell.cpu().numpy()))
                with np.errstate(divide="ignore", invalid="ignore"):  # non-periodic cells: no stress anyway
                    stress = -virial[:, _VOIGT_ROWS, _VOIGT_COLS] / volume[:, None]
                periodic = batch.pbc.all(dim=1).tolist()
            for local, i in enumerate(group):
                res = {
                    "energy": energies[local],
                    "free_energy": energies[local],
                    "energies": node_energy[local],
                    "forces": forces[local],
                }
                if stress is not None and periodic[local]:
                    res["stress"] = stress[local]
                results[i] = res
            if bar is not None:
                bar.update(len(group))
        if bar is not None:
            bar.close()
        return results
