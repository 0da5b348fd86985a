"""Reuse of one structure's neighbour list between calls (a Verlet list): :class:`VerletGraphs`.

An MD step or an optimiser step moves atoms by far less than the cutoff, yet a fresh search costs
the same every call (matscipy's: up to 11% of a call of the fused model,
``benchmarks/results/model_speed_skin0_2026-11-29c.md``). :class:`VerletGraphs` searches with ``cutoff + skin`` instead and keeps that list while
no atom has moved more than ``skin / 2`` from where it was at the search: then no pair outside
``cutoff + skin`` can have come within ``cutoff``, and the graph of the current positions is the
stored list filtered by the exact contract ``|r_ij| < cutoff`` (a few vector operations).
Anything else (other atomic numbers, cell or pbc; a larger move, including wrapping an atom back
into the cell) means a new search. The first call on a structure searches with the plain cutoff,
so a loop over unrelated structures pays nothing for the skin.

The graphs equal :func:`~gaunt_md.data.graph.atoms_to_graph`'s up to the order of the senders of
one receiver (still sorted by receiver), i.e. results agree to rounding.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from gaunt_md.data.graph import AtomicGraph, _check_min_distance, atoms_to_graph
from gaunt_md.errors import StructureError

__all__ = ["VerletGraphs"]


class VerletGraphs:
    """Graphs of one evolving structure, from a neighbour list kept between calls.

    Args:
        cutoff: the model's cutoff (Å).
        skin: extra search radius (Å); ``0`` searches afresh on every call.
    """

    def __init__(self, cutoff: float, skin: float = 0.5) -> None:
        if not skin >= 0.0:
            raise ValueError(f"skin must be a number >= 0 (Å), got {skin!r}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.searches = 0  # neighbour searches so far (for tests and logs)
        self._last: AtomicGraph | None = None  # the previous call's structure (positions at its search)
        self._list: AtomicGraph | None = None  # the cutoff + skin list and the positions it was made at
        self._shift_vectors: np.ndarray | None = None  # its unit_shifts @ cell

    def reset(self) -> None:
        self._last = self._list = self._shift_vectors = None

    def graph(self, atoms: Atoms, min_distance: float | None = None) -> AtomicGraph:
        """The graph of ``atoms`` with ``cutoff`` (a search, or the kept list filtered);
        ``min_distance`` as in :func:`~gaunt_md.data.graph.atoms_to_graph`."""
        if self.skin == 0.0:
            self.searches += 1
            return atoms_to_graph(atoms, self.cutoff, min_distance=min_distance)
        kept = self._list
        if kept is not None and _same_frame(kept, atoms):
            positions = np.array(atoms.positions, dtype=np.float64)
            if not np.isfinite(positions).all():  # the search's own check names the atom
                return atoms_to_graph(atoms, self.cutoff, min_distance=min_distance)
            moved = positions - kept.positions
            if np.einsum("ij,ij->i", moved, moved).max(initial=0.0) < (0.5 * self.skin) ** 2:
                return self._filtered(kept, positions, min_distance)
        self.searches += 1
        last = self._last
        if last is not None and _same_frame(last, atoms):  # a second call on this structure: keep a list
            self._list = atoms_to_graph(atoms, self.cutoff + self.skin)
            self._shift_vectors = None
            graph = self._filtered(self._list, self._list.positions, min_distance)
        else:
            self._list = None
            graph = atoms_to_graph(atoms, self.cutoff, min_distance=min_distance)
        self._last = graph
        return graph

    def _filtered(self, kept: AtomicGraph, positions: np.ndarray, min_distance: float | None) -> AtomicGraph:
        if self._shift_vectors is None or self._shift_vectors.shape[0] != kept.num_edges:
            # unit_shifts @ cell once per search (the cell is fixed while the list is kept); einsum,
            # not @: a BLAS matmul wakes OpenBLAS's own threads, which then spin against torch's
            # for the rest of the call (on 2 cores every op after it slowed down)
            self._shift_vectors = np.einsum("ek,kl->el", kept.unit_shifts, kept.cell)
        sender, receiver = kept.edge_index
        vectors = np.take(positions, sender, axis=0)
        vectors -= np.take(positions, receiver, axis=0)
        vectors += self._shift_vectors
        distances = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        keep = np.flatnonzero(distances < self.cutoff)
        positions.flags.writeable = False
        graph = AtomicGraph._trusted(
            numbers=kept.numbers,
            positions=positions,
            cell=kept.cell,
            pbc=kept.pbc,
            edge_index=np.take(kept.edge_index, keep, axis=1),
            unit_shifts=np.take(kept.unit_shifts, keep, axis=0),
        )
        if min_distance is not None:
            _check_min_distance(graph, self.cutoff, float(min_distance), np.take(distances, keep))
        return graph


def _same_frame(graph: AtomicGraph, atoms: Atoms) -> bool:
    """Same atomic numbers, cell and periodicity (positions aside)."""
    if len(atoms) != graph.num_atoms:
        return False
    try:
        return (
            np.array_equal(atoms.numbers, graph.numbers)
            and np.array_equal(atoms.pbc, graph.pbc)
            and np.array_equal(atoms.cell.array, graph.cell)
        )
    except (TypeError, ValueError) as error:  # pragma: no cover - exotic Atoms subclasses
        raise StructureError(f"cannot compare the structure with the previous one: {error}") from error
