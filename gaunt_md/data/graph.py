"""One structure as a graph: :class:`AtomicGraph` and :func:`atoms_to_graph`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from gaunt_md.data import image_search
from gaunt_md.data.neighbors import check_cutoff, edge_vectors, neighbor_list
from gaunt_md.errors import StructureError

__all__ = ["AtomicGraph", "atoms_to_graph", "atoms_to_graphs"]

#: Largest atomic number accepted in a graph (oganesson).
MAX_ATOMIC_NUMBER = 118


@dataclass(frozen=True, eq=False)
class AtomicGraph:
    """A structure and its directed neighbour graph, as read-only numpy arrays.

    Field contract (every producer and consumer relies on it):

    =============== ======== ================ ====== =============================================
    field           dtype    shape            unit   meaning
    =============== ======== ================ ====== =============================================
    ``numbers``     int64    [n_atoms]        --     atomic numbers Z (1..118)
    ``positions``   float64  [n_atoms, 3]     Å      Cartesian positions (not wrapped into cell)
    ``cell``        float64  [3, 3]           Å      rows are lattice vectors (ASE layout); rows
                                                     of non-periodic axes are carried as given
                                                     (may be zero) and never used by edges
    ``pbc``         bool     [3]              --     periodicity of each cell axis
    ``edge_index``  int64    [2, n_edges]     --     row 0 = sender j (neighbour), row 1 =
                                                     receiver i (centre); messages flow j -> i
    ``unit_shifts`` float64  [n_edges, 3]     --     integer-valued image shifts, zero along
                                                     non-periodic axes
    =============== ======== ================ ====== =============================================

    The edge vector is ``r_ij = positions[j] - positions[i] + unit_shifts @ cell`` and
    ``|r_ij| < cutoff`` for the cutoff the graph was built with. Both directions of every pair
    are present; an atom's own periodic images are edges, the zero-shift self pair is not.

    The arrays are made read-only on construction; build a new graph instead of editing one.
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    edge_index: np.ndarray
    unit_shifts: np.ndarray

    def __post_init__(self) -> None:
        fields = {
            "numbers": (np.int64, (None,)),
            "positions": (np.float64, (None, 3)),
            "cell": (np.float64, (3, 3)),
            "pbc": (np.bool_, (3,)),
            "edge_index": (np.int64, (2, None)),
            "unit_shifts": (np.float64, (None, 3)),
        }
        for name, (dtype, shape) in fields.items():
            value = np.array(getattr(self, name), dtype=dtype, copy=True)
            if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
                wanted = "[" + ", ".join("n" if s is None else str(s) for s in shape) + "]"
                raise StructureError(f"AtomicGraph.{name} must have shape {wanted}, got {value.shape}")
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        n_atoms, n_edges = len(self.numbers), self.edge_index.shape[1]
        if len(self.positions) != n_atoms:
            raise StructureError(f"{len(self.positions)} positions for {n_atoms} atomic numbers")
        if len(self.unit_shifts) != n_edges:
            raise StructureError(f"{len(self.unit_shifts)} unit_shifts for {n_edges} edges")
        if n_edges and (self.edge_index.min() < 0 or self.edge_index.max() >= n_atoms):
            raise StructureError(f"edge_index holds atom indices outside 0..{n_atoms - 1}")

    @classmethod
    def _trusted(cls, **fields: np.ndarray) -> "AtomicGraph":
        """A graph from arrays this package has just made with the contract's dtypes and shapes
        (no copies, no checks: for many small structures they cost as much as the search)."""
        graph = object.__new__(cls)
        for name, value in fields.items():
            if value.flags.writeable:  # views of read-only arrays are read-only already
                value.flags.writeable = False
            object.__setattr__(graph, name, value)
        return graph

    @property
    def num_atoms(self) -> int:
        return int(len(self.numbers))

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def edge_vectors(self) -> np.ndarray:
        """``r_ij`` of every edge, float64 [n_edges, 3], Å."""
        return edge_vectors(self.positions, self.cell, self.edge_index, self.unit_shifts)


def atoms_to_graph(atoms: Atoms, cutoff: float, *, min_distance: float | None = None) -> AtomicGraph:
    """Build the neighbour graph of ``atoms`` with radial ``cutoff`` (Å).

    Args:
        atoms: the structure; positions, cell, pbc and atomic numbers are used (copied).
        cutoff: cutoff radius in Å, finite and > 0.
        min_distance: if given (Å), raise :class:`StructureError` when any two atoms,
            periodic images included, are closer than this.

    Raises:
        StructureError: NaN/inf positions or cell, atomic numbers outside 1..118, a degenerate
            periodic cell (see :func:`~gaunt_md.data.neighbors.neighbor_list`), or two atoms
            closer than ``min_distance`` (the message names both atom indices, the image shift
            and the distance).
    """
    if not isinstance(atoms, Atoms):
        raise StructureError(f"atoms_to_graph needs an ase.Atoms, got {type(atoms).__name__}")
    # copies throughout: the graph must not change when the caller edits the atoms afterwards
    numbers = np.array(atoms.numbers, dtype=np.int64)
    _check_numbers(numbers)
    positions = np.array(atoms.positions, dtype=np.float64)
    cell = np.array(atoms.cell.array, dtype=np.float64)
    pbc = np.array(atoms.pbc, dtype=bool)

    # neighbor_list checks positions, cell and pbc (shapes, NaN/inf, degenerate cells)
    edge_index, unit_shifts, distances = neighbor_list(positions, cell, pbc, cutoff, return_distances=True)
    if positions.shape[0] != numbers.shape[0]:
        raise StructureError(f"{positions.shape[0]} positions for {numbers.shape[0]} atomic numbers")
    graph = AtomicGraph._trusted(
        numbers=numbers,
        positions=positions,
        cell=cell,
        pbc=pbc,
        edge_index=edge_index,
        unit_shifts=unit_shifts,
    )
    if min_distance is not None:
        _check_min_distance(graph, float(cutoff), float(min_distance), distances)
    return graph


def atoms_to_graphs(
    atoms_list: Sequence[Atoms], cutoff: float, *, min_distance: float | None = None
) -> list[AtomicGraph]:
    """:func:`atoms_to_graph` of every structure, with one neighbour search for all the small ones.

    Small fully periodic or non-periodic structures are searched together in C++
    (:mod:`~gaunt_md.data.image_search`): the same edges as :func:`atoms_to_graph`, the senders of
    one receiver possibly in another order. The others (and all of them without a C++ compiler)
    go through :func:`atoms_to_graph` one by one. Raises what :func:`atoms_to_graph` raises; with
    more than one structure the message starts with ``structure k:``.

    The graphs' arrays are read-only views of one copy of all the structures' arrays (numbers,
    positions, cells, pbc) and of the search's edge arrays: for a thousand small cells the
    per-structure copies and checks cost as much as the search.
    """
    atoms_list = list(atoms_list)
    for k, atoms in enumerate(atoms_list):
        if not isinstance(atoms, Atoms):
            raise StructureError(f"structure {k} is a {type(atoms).__name__}, not ase.Atoms")
    if not atoms_list:
        return []
    cutoff = check_cutoff(cutoff)
    if min_distance is not None and not float(min_distance) >= 0.0:
        raise StructureError(f"min_distance must be a number >= 0 (Å), got {min_distance!r}")
    n = len(atoms_list)
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter((len(atoms) for atoms in atoms_list), np.int64, n), out=ptr[1:])
    # copies: the graphs must not change when the caller edits the atoms afterwards
    numbers = np.concatenate([atoms.numbers for atoms in atoms_list]).astype(np.int64, copy=False)
    positions = np.concatenate([atoms.positions for atoms in atoms_list]).astype(np.float64, copy=False)
    cells = np.stack([atoms.cell.array for atoms in atoms_list]).astype(np.float64, copy=False)
    pbc = np.stack([atoms.pbc for atoms in atoms_list]).astype(bool, copy=False)
    for array in (numbers, positions, cells, pbc):
        array.flags.writeable = False
    joined = image_search.joined_neighbor_lists(positions, ptr, cells, pbc, cutoff)
    if joined is None:
        taken = np.zeros(n, bool)
    else:
        taken, edge_index, unit_shifts, distances, offsets = joined
    # the checks of the taken structures at once; any failure goes through the structure's own
    # checks below, which name the problem
    fast = True
    if taken.any():
        atom_taken = np.repeat(taken, np.diff(ptr))
        taken_numbers = numbers[atom_taken]
        numbers_ok = len(taken_numbers) == 0 or (taken_numbers.min() >= 1 and taken_numbers.max() <= MAX_ATOMIC_NUMBER)
        close_ok = True
        if min_distance is not None:  # beyond the cutoff the edges do not show every close pair
            close_ok = float(min_distance) <= cutoff and (len(distances) == 0 or float(distances.min()) >= float(min_distance))
        fast = numbers_ok and close_ok
    graphs = []
    for k in range(n):
        try:
            if not taken[k]:
                graphs.append(atoms_to_graph(atoms_list[k], cutoff, min_distance=min_distance))
                continue
            a, b = int(ptr[k]), int(ptr[k + 1])
            e0, e1 = int(offsets[k]), int(offsets[k + 1])
            graph = AtomicGraph._trusted(
                numbers=numbers[a:b], positions=positions[a:b], cell=cells[k], pbc=pbc[k],
                edge_index=edge_index[:, e0:e1], unit_shifts=unit_shifts[e0:e1],
            )
            if not fast:
                _check_numbers(graph.numbers)
                if min_distance is not None:
                    _check_min_distance(graph, cutoff, float(min_distance), distances[e0:e1])
            graphs.append(graph)
        except StructureError as error:
            if n == 1:
                raise
            raise StructureError(f"structure {k}: {error}") from None
    return graphs


def _check_numbers(numbers: np.ndarray) -> None:
    if len(numbers) and (numbers.min() < 1 or numbers.max() > MAX_ATOMIC_NUMBER):
        bad = int(np.flatnonzero((numbers < 1) | (numbers > MAX_ATOMIC_NUMBER))[0])
        raise StructureError(
            f"atom {bad} has atomic number {int(numbers[bad])}; allowed are 1..{MAX_ATOMIC_NUMBER}"
        )


def _check_min_distance(
    graph: AtomicGraph, cutoff: float, min_distance: float, distances: np.ndarray | None = None
) -> None:
    """Raise StructureError naming the closest pair if it is closer than ``min_distance``.

    ``distances``: the lengths of the graph's edges, if known (saves recomputing them)."""
    if not min_distance >= 0.0:
        raise StructureError(f"min_distance must be a number >= 0 (Å), got {min_distance!r}")
    if min_distance <= cutoff:
        edge_index, unit_shifts = graph.edge_index, graph.unit_shifts
    else:
        edge_index, unit_shifts = neighbor_list(graph.positions, graph.cell, graph.pbc, min_distance)
        distances = None
    if edge_index.shape[1] == 0 or (distances is not None and distances.min() >= min_distance):
        return
    if distances is None:
        distances = np.linalg.norm(edge_vectors(graph.positions, graph.cell, edge_index, unit_shifts), axis=1)
    closest = int(np.argmin(distances))
    if distances[closest] >= min_distance:
        return
    j, i = (int(k) for k in edge_index[:, closest])
    shift = unit_shifts[closest].astype(int)
    if i > j:  # name the pair with the smaller index first; the reverse edge has shift -S
        i, j, shift = j, i, -shift
    shift_text = str(tuple(int(s) for s in shift))
    n_close = int((distances < min_distance).sum()) // 2  # every pair appears in both directions
    if i == j:
        pair = f"atom {i} and its own periodic image (shift {shift_text})"
    else:
        pair = f"atoms {i} and {j}"
        if shift.any():
            pair += f" (atom {j} in periodic image {shift_text})"
    raise StructureError(
        f"{pair} are {distances[closest]:.4f} Å apart, closer than min_distance={min_distance} Å "
        f"({n_close} pair(s) too close in total)"
    )
