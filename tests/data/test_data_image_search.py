"""The direct search of many small structures (data/image_search.py) against matscipy's lists."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list
from matscipy.neighbours import neighbour_list as matscipy_neighbour_list

from gaunt_md.data import image_search
from gaunt_md.data.graph import atoms_to_graph, atoms_to_graphs
from gaunt_md.errors import StructureError
from gaunt_md.native.build import available

pytestmark = pytest.mark.skipif(not available(), reason="no C++ compiler: image_search takes nothing")


def edge_set(graph) -> list:
    shifts = graph.unit_shifts.astype(int).tolist()
    return sorted(zip(graph.edge_index[1].tolist(), graph.edge_index[0].tolist(), map(tuple, shifts)))


def ase_edges(atoms: Atoms, cutoff: float) -> list:
    """The reference: ASE's own neighbour list (receiver i, sender j, shift)."""
    i, j, shifts = ase_neighbor_list("ijS", atoms, cutoff, self_interaction=False)
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist())))


def reference_edges(atoms: Atoms, cutoff: float) -> list:
    """matscipy's list for periodic cells (ASE's is slow for tiny cells with many images), ASE's
    otherwise: neither shares code with ours."""
    if not atoms.pbc.all():
        return ase_edges(atoms, cutoff)
    i, j, shifts = matscipy_neighbour_list("ijS", atoms, cutoff)
    return sorted((a, b, s) for a, b, s in zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist())) if a != b or any(s))


def random_cells(n: int, seed: int = 0) -> list[Atoms]:
    """Triclinic cells of 1-8 atoms, some smaller than the cutoff, atoms also outside the cell."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 9))
        cell = rng.normal(size=(3, 3)) * 0.8 + np.eye(3) * rng.uniform(2.0, 6.0)
        positions = rng.uniform(-1.5, 2.5, size=(k, 3)) @ cell
        out.append(Atoms(f"Si{k}", positions=positions, cell=cell, pbc=True))
    return out


def test_same_edges_as_matscipy_for_small_periodic_and_isolated_structures():
    structures = random_cells(120) + [
        bulk("Cu", "fcc", a=3.6),  # one atom, cell far smaller than the cutoff: many images of itself
        bulk("Si", "diamond", a=5.43, cubic=True),
        molecule("CH3CH2OH"),
        Atoms("Ar", positions=[[0.0, 0.0, 0.0]]),  # alone: no edges
    ]
    structures[-4].set_cell([[2.6, 0, 0], [2.3, 1.0, 0], [0.2, 0.1, 2.5]])  # strongly skewed, tiny
    cutoff = 5.0
    found = image_search.neighbor_lists(
        [a.positions for a in structures], np.stack([a.cell.array for a in structures]),
        np.stack([a.pbc for a in structures]), cutoff,
    )
    taken = [edges is not None for edges in found]
    assert all(taken[-4:]) and sum(taken) > 0.8 * len(taken)  # the rest: too many images for the direct search
    graphs = atoms_to_graphs(structures, cutoff)
    n_edges = 0
    for atoms, graph in zip(structures, graphs):
        assert edge_set(graph) == reference_edges(atoms, cutoff)
        assert (np.diff(graph.edge_index[1]) >= 0).all()  # receiver-major, as the kernels walk them
        lengths = np.linalg.norm(graph.edge_vectors(), axis=1)
        assert (lengths < cutoff).all()
        n_edges += graph.num_edges
    assert n_edges > 10_000
    assert graphs[-1].num_edges == 0


def test_cutoff_is_strict_and_distances_are_returned():
    # |r| = 5 exactly (3-4-5) is not an edge; 4.999 is
    atoms = Atoms("H3", positions=[[0, 0, 0], [3, 4, 0], [0, 0, 4.999]])
    (edge_index, shifts, distances), = image_search.neighbor_lists(
        [atoms.positions], atoms.cell.array[None], atoms.pbc[None], 5.0
    )
    assert sorted(map(tuple, edge_index.T.tolist())) == [(0, 2), (2, 0)]
    np.testing.assert_allclose(distances, 4.999)
    assert not shifts.any()


def test_structures_it_does_not_take_go_to_matscipy():
    slab = bulk("Si", "diamond", a=5.43, cubic=True)
    slab.pbc = [True, True, False]  # mixed periodicity
    big = bulk("Si", "diamond", a=5.43, cubic=True).repeat(3)  # 216 atoms: too many pair-image checks
    bad = bulk("Si", "diamond", a=5.43)
    bad.positions[1] = np.nan
    small = bulk("Si", "diamond", a=5.43)
    structures = [slab, big, small]
    found = image_search.neighbor_lists(
        [a.positions for a in structures + [bad]], np.stack([a.cell.array for a in structures + [bad]]),
        np.stack([a.pbc for a in structures + [bad]]), 5.0,
    )
    assert found[0] is None and found[1] is None and found[3] is None and found[2] is not None
    for atoms, graph in zip(structures, atoms_to_graphs(structures, 5.0)):
        assert edge_set(graph) == edge_set(atoms_to_graph(atoms, 5.0))


def test_errors_name_the_structure():
    good = bulk("Si", "diamond", a=5.43)
    nan = good.copy()
    nan.positions[0, 2] = np.inf
    with pytest.raises(StructureError, match=r"structure 1: positions contain NaN/inf"):
        atoms_to_graphs([good, nan], 5.0)
    close = good.copy()
    close.positions[1] = close.positions[0] + [0.1, 0.0, 0.0]
    with pytest.raises(StructureError, match=r"structure 2: atoms 0 and 1 are 0.1000 Å apart"):
        atoms_to_graphs([good, good, close], 5.0, min_distance=0.5)
    atoms_to_graphs([good, close], 5.0, min_distance=0.05)  # closer than allowed only at 0.5
    with pytest.raises(StructureError, match="atoms 0 and 1"):  # one structure: no prefix
        atoms_to_graphs([close], 5.0, min_distance=0.5)
    with pytest.raises(StructureError, match="cutoff must be"):
        atoms_to_graphs([good], -1.0)


def test_min_distance_beyond_the_cutoff_still_checked():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 2.0]])
    with pytest.raises(StructureError, match="2.0000 Å apart"):
        atoms_to_graphs([atoms, atoms], 1.5, min_distance=3.0)


def test_without_compiled_library_everything_goes_to_matscipy(monkeypatch):
    import gaunt_md.native.build as build

    monkeypatch.setattr(build, "load_library", lambda: None)
    cells = random_cells(5, seed=1)
    found = image_search.neighbor_lists(
        [a.positions for a in cells], np.stack([a.cell.array for a in cells]), np.stack([a.pbc for a in cells]), 5.0
    )
    assert found == [None] * 5
    for atoms, graph in zip(cells, atoms_to_graphs(cells, 5.0)):
        assert edge_set(graph) == edge_set(atoms_to_graph(atoms, 5.0))


def test_graphs_do_not_follow_later_edits_of_the_atoms():
    atoms = bulk("Si", "diamond", a=5.43)
    graph = atoms_to_graphs([atoms, atoms], 5.0)[0]
    before = graph.positions.copy()
    atoms.positions += 1.0
    np.testing.assert_array_equal(graph.positions, before)
    with pytest.raises(ValueError):
        graph.edge_index[0, 0] = 3


@pytest.mark.parametrize("case", ["fcc256", "skewed", "thin", "just_below_zero"])
def test_cell_list_of_one_periodic_structure_matches_ase(case):
    """neighbor_list's C++ cell list (fully periodic cells): many bins, skewed and thin cells,
    atoms outside the cell and at fractional coordinate -1e-17 (wraps to just below 1)."""
    from gaunt_md.data.neighbors import neighbor_list

    rng = np.random.default_rng(7)
    if case == "fcc256":
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(4)
        atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
        cutoff = 5.0
    elif case == "skewed":
        atoms = bulk("Si", "diamond", a=5.43).repeat((5, 4, 3))
        atoms.set_cell(atoms.cell.array @ [[1.0, 0.3, 0.1], [0.0, 1.0, 0.4], [0.0, 0.0, 1.0]], scale_atoms=True)
        atoms.positions += rng.normal(scale=0.3, size=atoms.positions.shape) + [30.0, -17.0, 5.0]
        cutoff = 6.0
    elif case == "thin":  # one bin along z, images several cells deep
        atoms = Atoms("Ar40", positions=rng.uniform(0, 1, (40, 3)) * [20.0, 20.0, 1.5], cell=[20.0, 20.0, 1.5], pbc=True)
        cutoff = 4.0
    else:
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
        atoms.positions[0] = [-1e-17, 0.0, 0.0]
        cutoff = 5.0
    edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    ours = sorted(zip(edge_index[1].tolist(), edge_index[0].tolist(), map(tuple, shifts.astype(int).tolist())))
    assert ours == ase_edges(atoms, cutoff)
    assert (np.diff(edge_index[1]) >= 0).all()
    assert len(ours) > 500
