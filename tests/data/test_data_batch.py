"""collate / split round trips, global edge indices and chunk bounds."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from gaunt_md.data import AtomicGraph, Batch, atoms_to_graph, chunk, collate, split_per_atom, split_per_graph
from gaunt_md.errors import GauntError, StructureError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def graphs() -> list[AtomicGraph]:
    structures = [
        ase.io.read(FIXTURES / "mlearn_Ni_2.xyz", 0),  # 6 atoms, periodic, tiny in-plane cell
        ase.io.read(FIXTURES / "rmd17_ethanol_3.xyz", 0),  # 9 atoms, molecule
        ase.io.read(FIXTURES / "mlearn_Si_3.xyz", 1),  # 16 atoms, periodic
    ]
    return [atoms_to_graph(atoms, 4.5) for atoms in structures]


def test_collate_layout(graphs: list[AtomicGraph]) -> None:
    batch = collate(graphs)
    assert batch.num_graphs == 3 and batch.num_atoms == 31
    assert batch.ptr.tolist() == [0, 6, 15, 31]
    assert batch.batch.tolist() == [0] * 6 + [1] * 9 + [2] * 16
    assert batch.numbers.tolist() == [28] * 6 + [6, 6, 8, 1, 1, 1, 1, 1, 1] + [14] * 16
    assert batch.cell.shape == (3, 3, 3)
    assert torch.equal(batch.cell[2], torch.from_numpy(np.array(graphs[2].cell)))
    assert batch.pbc.tolist() == [[True] * 3, [False] * 3, [True] * 3]
    for name in ("numbers", "edge_index", "batch", "ptr"):
        assert getattr(batch, name).dtype == torch.int64
    for name in ("positions", "cell", "unit_shifts"):
        assert getattr(batch, name).dtype == torch.float64
    assert batch.pbc.dtype == torch.bool
    assert batch.num_edges == sum(g.num_edges for g in graphs)


def test_edges_use_global_atom_indices(graphs: list[AtomicGraph]) -> None:
    batch = collate(graphs)
    start = 0
    for g, graph in enumerate(graphs):
        stop = start + graph.num_edges
        block = batch.edge_index[:, start:stop].numpy()
        assert np.array_equal(block, graph.edge_index + int(batch.ptr[g]))
        assert (batch.batch[batch.edge_index[:, start:stop]] == g).all()
        assert np.array_equal(batch.unit_shifts[start:stop].numpy(), graph.unit_shifts)
        start = stop
    expected = np.concatenate([graph.edge_vectors() for graph in graphs])
    assert np.allclose(batch.edge_vectors().numpy(), expected, atol=1e-12)
    assert (batch.edge_graph == batch.batch[batch.edge_index[0]]).all()


def test_dtype_and_to(graphs: list[AtomicGraph]) -> None:
    batch = collate(graphs, dtype=torch.float32)
    assert batch.positions.dtype == batch.cell.dtype == batch.unit_shifts.dtype == torch.float32
    assert batch.edge_index.dtype == torch.int64
    moved = batch.to("cpu", dtype=torch.float64)
    assert isinstance(moved, Batch) and moved.positions.dtype == torch.float64
    assert moved.numbers.dtype == torch.int64 and moved.pbc.dtype == torch.bool
    assert torch.allclose(moved.positions, batch.positions.double())
    assert batch.to("cpu").positions.dtype == torch.float32
    with pytest.raises(GauntError, match="floating dtype"):
        collate(graphs, dtype=torch.int32)


def test_split_round_trip(graphs: list[AtomicGraph]) -> None:
    batch = collate(graphs)
    parts = split_per_atom(batch.positions, batch.ptr)
    assert [p.shape[0] for p in parts] == [6, 9, 16]
    for part, graph in zip(parts, graphs):
        assert np.array_equal(part.numpy(), graph.positions)
    assert [p.tolist() for p in batch.split_per_atom(batch.numbers)] == [g.numbers.tolist() for g in graphs]

    # gradients flow through the split
    positions = batch.positions.clone().requires_grad_(True)
    per_graph = torch.stack([(p**2).sum() for p in split_per_atom(positions, batch.ptr)])
    per_graph.sum().backward()
    assert torch.allclose(positions.grad, 2 * positions.detach())

    energies = torch.tensor([1.0, 2.0, 3.0])
    assert [e.item() for e in split_per_graph(energies)] == [1.0, 2.0, 3.0]
    with pytest.raises(GauntError, match="31 atoms"):
        split_per_atom(torch.zeros(30), batch.ptr)


def test_collate_errors() -> None:
    with pytest.raises(StructureError, match="at least one graph"):
        collate([])
    with pytest.raises(StructureError, match="item 0 is a str"):
        collate(["not a graph"])  # type: ignore[list-item]


def _graph(n_atoms: int, n_edges: int) -> AtomicGraph:
    return AtomicGraph(
        numbers=np.ones(n_atoms, dtype=np.int64),
        positions=np.zeros((n_atoms, 3)),
        cell=np.zeros((3, 3)),
        pbc=np.zeros(3, dtype=bool),
        edge_index=np.zeros((2, n_edges), dtype=np.int64),
        unit_shifts=np.zeros((n_edges, 3)),
    )


def test_chunk_bounds_and_order() -> None:
    sizes = [(4, 10), (3, 10), (2, 50), (10, 5), (1, 1), (1, 1), (2, 80), (3, 3)]
    graphs = [_graph(a, e) for a, e in sizes]
    groups = chunk(graphs, max_atoms=8, max_edges=60)
    # [0, 1]: 7 atoms, adding graph 2 would make 9 > 8; [2]: adding graph 3 makes 12 atoms;
    # [3]: 10 atoms > max_atoms, alone; [4, 5]; [6]: 80 edges > max_edges, alone; [7]: 83 edges
    # if it joined graph 6
    assert groups == [[0, 1], [2], [3], [4, 5], [6], [7]]
    assert [i for group in groups for i in group] == list(range(len(graphs)))
    for group in groups:
        atoms = sum(sizes[i][0] for i in group)
        edges = sum(sizes[i][1] for i in group)
        assert len(group) == 1 or (atoms <= 8 and edges <= 60)


def test_chunk_edge_bound_binds() -> None:
    graphs = [_graph(1, 30) for _ in range(7)]
    assert chunk(graphs, max_atoms=100, max_edges=60) == [[0, 1], [2, 3], [4, 5], [6]]
    assert chunk(graphs, max_atoms=3, max_edges=10**6) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunk([], max_atoms=3, max_edges=3) == []


def test_chunk_rejects_bad_bounds() -> None:
    with pytest.raises(GauntError, match="max_atoms"):
        chunk([_graph(1, 1)], max_atoms=0, max_edges=10)
    with pytest.raises(GauntError, match="max_edges"):
        chunk([_graph(1, 1)], max_atoms=10, max_edges=2.5)  # type: ignore[arg-type]
