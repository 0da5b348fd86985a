"""VerletGraphs: a neighbour list kept between calls gives the graphs a fresh search gives."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from gaunt_md.data.graph import atoms_to_graph
from gaunt_md.data.verlet import VerletGraphs
from gaunt_md.errors import StructureError

CUTOFF = 4.0


def _edges(graph) -> set[tuple[int, int, tuple[int, ...]]]:
    shifts = [tuple(int(x) for x in s) for s in graph.unit_shifts]
    return {(int(j), int(i), s) for (j, i), s in zip(graph.edge_index.T, shifts)}


def _assert_same_graph(graph, atoms) -> None:
    fresh = atoms_to_graph(atoms, CUTOFF)
    assert _edges(graph) == _edges(fresh)
    assert graph.num_edges == fresh.num_edges  # no duplicates either
    assert (np.diff(graph.edge_index[1]) >= 0).all()  # sorted by receiver, as the kernels need
    np.testing.assert_array_equal(graph.positions, atoms.positions)


def test_kept_list_gives_the_fresh_graphs_over_an_md_like_path():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    atoms.rattle(0.1, seed=1)
    verlet = VerletGraphs(CUTOFF, skin=0.5)
    rng = np.random.default_rng(0)
    for step in range(30):
        atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape)
        _assert_same_graph(verlet.graph(atoms), atoms)
    # first call: plain search; second: the list with the skin; then only when atoms moved > skin/2
    assert 2 <= verlet.searches < 10


def test_a_pair_crossing_the_cutoff_inside_the_skin():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, CUTOFF - 0.05]])
    verlet = VerletGraphs(CUTOFF, skin=0.5)
    for z in (CUTOFF - 0.05, CUTOFF - 0.04, CUTOFF + 0.05, CUTOFF + 0.1, CUTOFF - 0.01, CUTOFF):
        atoms.positions[1, 2] = z
        graph = verlet.graph(atoms)
        assert graph.num_edges == (2 if z < CUTOFF else 0), z
    assert verlet.searches == 2  # never moved by skin/2: the rest came from the kept list


@pytest.mark.parametrize("change", ["big move", "cell", "numbers", "pbc"])
def test_a_new_search_when_the_structure_changes(change):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=2)
    verlet = VerletGraphs(CUTOFF, skin=0.5)
    verlet.graph(atoms)
    atoms.positions[0] += 0.01
    verlet.graph(atoms)  # now a list with the skin is kept
    searches = verlet.searches
    if change == "big move":
        atoms.positions[3] += [0.2, 0.2, 0.0]  # 0.28 Å > skin / 2
    elif change == "cell":
        atoms.set_cell(atoms.cell.array * 1.002, scale_atoms=True)
    elif change == "numbers":
        atoms.numbers[5] = 28
    else:
        atoms.pbc = [True, True, False]
    graph = verlet.graph(atoms)
    assert verlet.searches == searches + 1
    _assert_same_graph(graph, atoms)
    np.testing.assert_array_equal(graph.numbers, atoms.numbers)
    np.testing.assert_array_equal(graph.pbc, atoms.pbc)


def test_unrelated_structures_are_searched_with_the_plain_cutoff():
    """A loop over different structures must not pay for a skin it never uses."""
    verlet = VerletGraphs(CUTOFF, skin=0.5)
    structures = [bulk("Si", "diamond", a=5.43), molecule("CH4"), bulk("Cu", "fcc", a=3.61)] * 2
    for atoms in structures:
        _assert_same_graph(verlet.graph(atoms), atoms)
        assert verlet._list is None
    assert verlet.searches == len(structures)


def test_bad_input_is_still_caught_on_the_kept_list():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    verlet = VerletGraphs(CUTOFF, skin=0.5)
    verlet.graph(atoms, min_distance=0.5)
    verlet.graph(atoms, min_distance=0.5)  # the list is kept from here on
    nan = atoms.copy()
    nan.positions[2, 0] = np.nan
    with pytest.raises(StructureError, match="NaN"):
        verlet.graph(nan, min_distance=0.5)
    close = atoms.copy()
    # atom 1 sits 2.35 Å from atom 0: 0.12 Å towards it (inside skin / 2) makes 2.23 Å < 2.3 Å
    close.positions[1] -= 0.05 * (close.positions[1] - close.positions[0])
    with pytest.raises(StructureError, match="closer than min_distance"):
        verlet.graph(close, min_distance=2.3)


def test_zero_skin_searches_every_call():
    atoms = bulk("Si", "diamond", a=5.43)
    verlet = VerletGraphs(CUTOFF, skin=0.0)
    for _ in range(3):
        _assert_same_graph(verlet.graph(atoms), atoms)
    assert verlet.searches == 3
    with pytest.raises(ValueError, match="skin"):
        VerletGraphs(CUTOFF, skin=-1.0)
