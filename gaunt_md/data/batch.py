"""Many graphs as one: :class:`Batch`, :func:`collate`, :func:`chunk` and splitting helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from gaunt_md.data.graph import AtomicGraph
from gaunt_md.errors import DeviceError, GauntError, StructureError

__all__ = ["Batch", "collate", "chunk", "split_per_atom", "split_per_graph"]


@dataclass
class Batch:
    """Disjoint union of several :class:`~gaunt_md.data.graph.AtomicGraph` as torch tensors.

    =============== ===== ======================== ===== =========================================
    field           dtype shape                    unit  meaning
    =============== ===== ======================== ===== =========================================
    ``numbers``     int64 [n_atoms]                --    atomic numbers Z
    ``positions``   float [n_atoms, 3]             Å     Cartesian positions
    ``cell``        float [n_graphs, 3, 3]         Å     rows are lattice vectors, one per graph
    ``edge_index``  int64 [2, n_edges]             --    row 0 = sender j, row 1 = receiver i,
                                                         **global** atom indices (0..n_atoms-1)
    ``unit_shifts`` float [n_edges, 3]             --    integer-valued periodic image shifts
    ``batch``       int64 [n_atoms]                --    graph index of each atom (sorted)
    ``ptr``         int64 [n_graphs + 1]           --    atom offsets; graph g owns atoms
                                                         ``ptr[g]:ptr[g+1]``
    ``pbc``         bool  [n_graphs, 3]            --    periodicity of each graph's cell axes
    =============== ===== ======================== ===== =========================================

    ``float`` is the dtype chosen in :func:`collate` (float64 by default). For an edge ``e`` in
    graph ``g = batch[edge_index[1, e]]``::

        r_ij = positions[j] - positions[i] + unit_shifts[e] @ cell[g]
    """

    numbers: torch.Tensor
    positions: torch.Tensor
    cell: torch.Tensor
    edge_index: torch.Tensor
    unit_shifts: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    pbc: torch.Tensor

    @property
    def num_graphs(self) -> int:
        return int(self.ptr.shape[0] - 1)

    @property
    def num_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def edge_graph(self) -> torch.Tensor:
        """Graph index of each edge, int64 [n_edges]."""
        return self.batch[self.edge_index[1]]

    def edge_vectors(self) -> torch.Tensor:
        """``r_ij`` of every edge, [n_edges, 3] in the batch's float dtype, Å."""
        sender, receiver = self.edge_index
        shifts = torch.einsum("ek,ekl->el", self.unit_shifts, self.cell[self.edge_graph])
        return self.positions[sender] - self.positions[receiver] + shifts

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """Return a copy on ``device``; floating fields are cast to ``dtype`` when given."""
        if dtype is not None:
            _check_float_dtype(dtype)
        moved = {}
        for field in fields(self):
            value: torch.Tensor = getattr(self, field.name)
            if dtype is not None and value.is_floating_point():
                moved[field.name] = value.to(device=device, dtype=dtype)
            else:
                moved[field.name] = value.to(device=device)
        return Batch(**moved)

    def split_per_atom(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Split a per-atom tensor ``[n_atoms, ...]`` into one tensor per graph."""
        return split_per_atom(tensor, self.ptr)


def collate(
    graphs: Sequence[AtomicGraph],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Batch:
    """Join ``graphs`` into one :class:`Batch`; float fields in ``dtype`` on ``device``.

    Edge indices are offset by each graph's first atom so that they index the batch's atoms.
    """
    graphs = list(graphs)
    if not graphs:
        raise StructureError("collate needs at least one graph, got an empty sequence")
    for k, graph in enumerate(graphs):
        if not isinstance(graph, AtomicGraph):
            raise StructureError(f"collate: item {k} is a {type(graph).__name__}, not an AtomicGraph")
    _check_float_dtype(dtype)

    counts = np.fromiter((len(g.numbers) for g in graphs), np.int64, len(graphs))
    edge_counts = np.fromiter((g.edge_index.shape[1] for g in graphs), np.int64, len(graphs))
    ptr = np.zeros(len(graphs) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    # every graph's atom indices shifted by its first atom, in one pass
    edge_index = np.concatenate([g.edge_index for g in graphs], axis=1) + np.repeat(ptr[:-1], edge_counts)

    def tensor(array: np.ndarray, tensor_dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array)).to(device=device, dtype=tensor_dtype)

    return Batch(
        numbers=tensor(np.concatenate([g.numbers for g in graphs]), torch.int64),
        positions=tensor(np.concatenate([g.positions for g in graphs]), dtype),
        cell=tensor(np.stack([g.cell for g in graphs]), dtype),
        edge_index=tensor(edge_index, torch.int64),
        unit_shifts=tensor(np.concatenate([g.unit_shifts for g in graphs]), dtype),
        batch=tensor(np.repeat(np.arange(len(graphs), dtype=np.int64), counts), torch.int64),
        ptr=tensor(ptr, torch.int64),
        pbc=tensor(np.stack([g.pbc for g in graphs]), torch.bool),
    )


def split_per_atom(tensor: torch.Tensor, ptr: torch.Tensor) -> list[torch.Tensor]:
    """Split a per-atom tensor ``[n_atoms, ...]`` into ``n_graphs`` views ``[n_atoms_g, ...]``.

    ``ptr`` is :attr:`Batch.ptr` (int64 [n_graphs + 1]). Works for tensors that require grad.
    """
    sizes = torch.diff(ptr.detach().cpu()).tolist()
    if tensor.shape[0] != int(ptr[-1]):
        raise GauntError(
            f"split_per_atom: tensor has {tensor.shape[0]} rows but ptr describes {int(ptr[-1])} atoms"
        )
    return list(torch.split(tensor, sizes, dim=0))


def split_per_graph(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Split a per-graph tensor ``[n_graphs, ...]`` (energies, stresses) into its rows."""
    return list(torch.unbind(tensor, dim=0))


def chunk(graphs: Sequence[AtomicGraph], max_atoms: int, max_edges: int) -> list[list[int]]:
    """Group graph indices, in order, into batches of at most ``max_atoms`` atoms and
    ``max_edges`` edges.

    Greedy: graphs are added to the current batch until the next one would exceed a bound.
    A single graph larger than a bound gets a batch of its own. Every index appears exactly
    once and the concatenation of the returned lists is ``range(len(graphs))``.
    """
    for name, value in (("max_atoms", max_atoms), ("max_edges", max_edges)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise GauntError(f"chunk: {name} must be an integer >= 1, got {value!r}")
    batches: list[list[int]] = []
    current: list[int] = []
    atoms = edges = 0
    for index, graph in enumerate(graphs):
        n_atoms, n_edges = graph.num_atoms, graph.num_edges
        if current and (atoms + n_atoms > max_atoms or edges + n_edges > max_edges):
            batches.append(current)
            current, atoms, edges = [], 0, 0
        current.append(index)
        atoms += n_atoms
        edges += n_edges
    if current:
        batches.append(current)
    return batches


def _check_float_dtype(dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise DeviceError(f"dtype must be a torch floating dtype (e.g. torch.float64), got {dtype!r}")
