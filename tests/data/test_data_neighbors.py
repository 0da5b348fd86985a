"""Neighbour lists against ASE and against an independent brute-force image search."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from gaunt_md.data.neighbors import MAX_IMAGE_CELLS, edge_vectors, neighbor_list
from gaunt_md.errors import StructureError

FIXTURES = Path(__file__).parent / "fixtures"


def _cases() -> dict[str, tuple[Atoms, float]]:
    rng = np.random.default_rng(1234)
    cases: dict[str, tuple[Atoms, float]] = {}

    cases["fcc_primitive_1atom"] = (bulk("Cu", "fcc", a=3.6), 5.0)

    si = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    si.rattle(0.05, rng=rng)
    cases["si_diamond_64"] = (si, 5.0)

    bcc = bulk("Li", "bcc", a=3.44, cubic=True)  # 2 atoms, cell smaller than cutoff everywhere
    cases["bcc_2atom_small_cell"] = (bcc, 7.0)

    skewed_cell = np.array([[3.0, 0.0, 0.0], [2.9, 0.6, 0.0], [2.7, 0.5, 0.7]])
    tri = Atoms("Si4", scaled_positions=rng.random((4, 3)), cell=skewed_cell, pbc=True)
    cases["triclinic_skewed"] = (tri, 5.0)

    left = tri.copy()
    left.set_cell(-skewed_cell[[1, 0, 2]], scale_atoms=False)  # left-handed
    left.positions += rng.normal(scale=6.0, size=(4, 3))  # far outside the cell
    cases["triclinic_left_handed_outside"] = (left, 4.5)

    tri_mixed = tri.copy()
    tri_mixed.pbc = (True, False, True)
    cases["triclinic_mixed_pbc"] = (tri_mixed, 4.0)

    slab = fcc111("Pt", (2, 2, 3), vacuum=6.0)
    slab.pbc = (True, True, False)
    slab.rattle(0.05, rng=rng)
    cases["slab"] = (slab, 6.0)

    slab_zero = slab.copy()
    slab_zero.cell[2] = 0.0
    cases["slab_zero_c"] = (slab_zero, 6.0)

    slab_coplanar = slab.copy()
    slab_coplanar.cell[2] = slab.cell[0] + slab.cell[1]  # non-periodic row in the periodic plane
    cases["slab_coplanar_c"] = (slab_coplanar, 6.0)  # ASE cannot (singular cell): see ASE_VIEW

    slab_outside = slab.copy()
    slab_outside.positions[:, 2] += 40.0  # atoms above the (non-periodic) cell
    cases["slab_atoms_outside_cell"] = (slab_outside, 5.0)

    wire = Atoms(
        "C3",
        positions=[[0.0, 0.0, 0.0], [1.2, 0.3, 0.1], [0.5, 1.4, -0.3]],
        cell=[[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.3, 0.2, 1.5]],
        pbc=(False, False, True),
    )
    cases["wire_short_period"] = (wire, 5.0)

    chain = Atoms("H", positions=[[0.0, 0.0, 0.0]], cell=[[0.0, 0.0, 0.0], [0.0, 1.2, 0.0], [0.0, 0.0, 0.0]])
    chain.pbc = (False, True, False)
    cases["chain_1atom_own_images"] = (chain, 5.0)

    cases["molecule_no_cell"] = (molecule("CH3CH2OH"), 5.0)

    far = molecule("C6H6")
    far.set_cell(np.eye(3) * 2.0)  # a cell that does not enclose the atoms
    far.positions += [70.0, -35.0, 12.0]
    cases["molecule_far_small_cell"] = (far, 4.0)

    cases["molecule_3bpa_50A_box"] = (ase.io.read(FIXTURES / "3bpa_train_300K_3.xyz", 0), 5.0)
    cases["ni_slab_fixture"] = (ase.io.read(FIXTURES / "mlearn_Ni_2.xyz", 0), 5.0)
    cases["isolated_atom"] = (Atoms("O", positions=[[1.0, 2.0, 3.0]]), 5.0)
    return cases


CASES = _cases()

#: ASE fails on a singular cell even when the singular direction is not periodic; it gets the
#: same structure with a valid row there (that row never enters any r_ij: no shifts along it).
ASE_VIEW = {"slab_coplanar_c": CASES["slab"][0].copy()}
ASE_VIEW["slab_coplanar_c"].positions = CASES["slab_coplanar_c"][0].positions


def _ours(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    return neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)


def _triples(edge_index: np.ndarray, unit_shifts: np.ndarray) -> set[tuple[int, ...]]:
    """Set of (i, j, S0, S1, S2) with i the receiver (centre), j the sender."""
    return {
        (int(i), int(j), *(int(s) for s in shift))
        for j, i, shift in zip(edge_index[0], edge_index[1], np.rint(unit_shifts).astype(int))
    }


def _brute_force(atoms: Atoms, cutoff: float) -> set[tuple[int, ...]]:
    """All (i, j, S) with |pos[j] - pos[i] + S @ cell| < cutoff by explicit image enumeration."""
    positions, cell, pbc = atoms.positions, atoms.cell.array.copy(), atoms.pbc
    periodic = np.flatnonzero(pbc)
    # Full-rank frame: periodic rows + orthonormal complement (for heights / fractional coords).
    frame = np.eye(3)
    if len(periodic):
        complement = np.linalg.svd(cell[periodic])[2][len(periodic) :]
        frame = np.vstack([cell[periodic], complement])
    fractional = positions @ np.linalg.inv(frame)
    ranges = []
    for axis in range(3):
        if not pbc[axis]:
            ranges.append([0])
            continue
        k = list(periodic).index(axis)
        height = abs(np.linalg.det(frame)) / np.linalg.norm(np.cross(*np.delete(frame, k, axis=0)))
        spread = fractional[:, k].max() - fractional[:, k].min()
        n_max = math.ceil(cutoff / height + spread) + 1
        ranges.append(range(-n_max, n_max + 1))
    shifts = np.array(list(itertools.product(*ranges)), dtype=float)
    found = set()
    for i in range(len(atoms)):
        for j in range(len(atoms)):
            vectors = positions[j] - positions[i] + shifts @ cell
            close = np.linalg.norm(vectors, axis=1) < cutoff
            for shift in shifts[close].astype(int):
                if i == j and not shift.any():
                    continue
                found.add((i, j, *(int(s) for s in shift)))
    return found


@pytest.mark.parametrize("name", list(CASES))
def test_same_edges_as_ase(name: str) -> None:
    atoms, cutoff = CASES[name]
    i, j, shifts = ase_neighbor_list("ijS", ASE_VIEW.get(name, atoms), cutoff, self_interaction=False)
    reference = {(int(a), int(b), *(int(s) for s in shift)) for a, b, shift in zip(i, j, shifts)}
    ours = _triples(*_ours(atoms, cutoff))
    assert ours == reference
    assert len(ours) == len(i)


@pytest.mark.parametrize("name", list(CASES))
def test_complete_and_within_cutoff(name: str) -> None:
    atoms, cutoff = CASES[name]
    edge_index, unit_shifts = _ours(atoms, cutoff)

    assert edge_index.dtype == np.int64 and edge_index.shape[0] == 2
    assert unit_shifts.dtype == np.float64 and unit_shifts.shape == (edge_index.shape[1], 3)
    assert np.array_equal(unit_shifts, np.rint(unit_shifts))
    assert not unit_shifts[:, ~atoms.pbc].any(), "shift along a non-periodic axis"

    vectors = edge_vectors(atoms.positions, atoms.cell.array, edge_index, unit_shifts)
    assert (np.linalg.norm(vectors, axis=1) < cutoff).all()

    ours = _triples(edge_index, unit_shifts)
    assert len(ours) == edge_index.shape[1], "duplicate edges"
    assert ours == _brute_force(atoms, cutoff), "missing or extra pairs"
    # both directions: (i, j, S) <-> (j, i, -S)
    assert ours == {(j, i, -a, -b, -c) for i, j, a, b, c in ours}
    # the zero-shift self pair is excluded, images of the atom itself are not
    assert not any(i == j and not (a or b or c) for i, j, a, b, c in ours)


def test_fcc_primitive_shells() -> None:
    atoms, cutoff = CASES["fcc_primitive_1atom"]
    edge_index, unit_shifts = _ours(atoms, cutoff)
    # fcc a = 3.6: shells 2.546 (12), 3.6 (6), 4.409 (24); next 5.09 is beyond 5 Å
    assert edge_index.shape[1] == 42
    assert (edge_index == 0).all()
    distances = np.linalg.norm(unit_shifts @ atoms.cell.array, axis=1)
    assert np.allclose(np.sort(distances)[[0, 11, 12, 17, 18, 41]], [3.6 / 2**0.5] * 2 + [3.6] * 2 + [4.409] * 2, atol=1e-3)


def test_chain_of_own_images() -> None:
    atoms, cutoff = CASES["chain_1atom_own_images"]
    edge_index, unit_shifts = _ours(atoms, cutoff)
    # period 1.2 Å, cutoff 5 Å: images at +-1..+-4 along b
    assert sorted(unit_shifts[:, 1].astype(int).tolist()) == [-4, -3, -2, -1, 1, 2, 3, 4]
    assert not unit_shifts[:, [0, 2]].any()


def test_edges_sorted_by_receiver() -> None:
    atoms, cutoff = CASES["si_diamond_64"]
    edge_index, _ = _ours(atoms, cutoff)
    assert (np.diff(edge_index[1]) >= 0).all()
    assert np.array_equal(np.unique(edge_index[1]), np.arange(len(atoms)))


def test_inputs_are_not_modified() -> None:
    """neighbor_list reads the caller's arrays in place (no defensive copies): it must not write them."""
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions += [7.0, -3.0, 11.0]  # outside the cell: matscipy wraps internally
    positions, cell, pbc = atoms.positions, atoms.cell.array, atoms.pbc
    before = positions.copy(), cell.copy(), pbc.copy()
    neighbor_list(positions, cell, pbc, 5.0)
    assert all(np.array_equal(x, y) for x, y in zip((positions, cell, pbc), before))


def test_exact_cutoff_distance_is_excluded() -> None:
    atoms = Atoms("H2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    assert neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 2.0)[0].shape == (2, 0)
    assert neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 2.0 + 1e-9)[0].shape == (2, 2)


def test_empty_structure() -> None:
    edge_index, unit_shifts = neighbor_list(np.zeros((0, 3)), np.eye(3), [True] * 3, 5.0)
    assert edge_index.shape == (2, 0) and unit_shifts.shape == (0, 3)


def test_nan_position_is_rejected() -> None:
    positions = np.zeros((3, 3))
    positions[2, 1] = np.nan
    with pytest.raises(StructureError, match=r"NaN/inf.*atom 2"):
        neighbor_list(positions, np.eye(3) * 5, [True] * 3, 3.0)


def test_inf_cell_is_rejected() -> None:
    cell = np.eye(3) * 5
    cell[1, 1] = np.inf
    with pytest.raises(StructureError, match="cell contains NaN/inf"):
        neighbor_list(np.zeros((1, 3)), cell, [True] * 3, 3.0)


def test_zero_periodic_cell_vector_is_rejected() -> None:
    cell = np.diag([5.0, 5.0, 0.0])
    with pytest.raises(StructureError, match="cell vector 2 is zero"):
        neighbor_list(np.zeros((1, 3)), cell, [True, True, True], 3.0)
    # the same cell is fine when that axis is not periodic
    edge_index, _ = neighbor_list(np.zeros((1, 3)), cell, [True, True, False], 5.5)
    assert edge_index.shape[1] == 4


def test_linearly_dependent_periodic_vectors_are_rejected() -> None:
    cell = np.array([[3.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    with pytest.raises(StructureError, match="linearly dependent"):
        neighbor_list(np.zeros((1, 3)), cell, [True, True, False], 3.0)


def test_absurdly_thin_cell_is_rejected() -> None:
    cell = np.diag([1e-3, 1e-3, 5.0])
    assert (2 * math.ceil(5.0 / 1e-3) + 1) ** 2 > MAX_IMAGE_CELLS
    with pytest.raises(StructureError, match="far too small"):
        neighbor_list(np.zeros((1, 3)), cell, [True, True, True], 5.0)


@pytest.mark.parametrize("cutoff", [0.0, -1.0, float("nan"), float("inf"), "x"])
def test_bad_cutoff_is_rejected(cutoff: object) -> None:
    with pytest.raises(StructureError, match="cutoff"):
        neighbor_list(np.zeros((1, 3)), np.eye(3), [False] * 3, cutoff)  # type: ignore[arg-type]


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(StructureError, match=r"positions must have shape \[n_atoms, 3\]"):
        neighbor_list(np.zeros((2, 2)), np.eye(3), [False] * 3, 3.0)
    with pytest.raises(StructureError, match=r"cell must have shape \[3, 3\]"):
        neighbor_list(np.zeros((2, 3)), np.eye(2), [False] * 3, 3.0)
    with pytest.raises(StructureError, match="pbc"):
        neighbor_list(np.zeros((2, 3)), np.eye(3), [True, False], 3.0)


def test_edge_direction_convention() -> None:
    # atom 1 sits +1 Å along z from atom 0; across the periodic x boundary atom 2 is 0.5 Å to
    # the -x side of atom 0
    positions = np.array([[0.2, 0.0, 0.0], [0.2, 0.0, 1.0], [9.7, 0.0, 0.0]])
    cell = np.diag([10.0, 10.0, 10.0])
    edge_index, unit_shifts = neighbor_list(positions, cell, [True, False, False], 1.2)
    vectors = edge_vectors(positions, cell, edge_index, unit_shifts)
    edges = {(int(j), int(i)): (tuple(s), v) for j, i, s, v in zip(*edge_index, unit_shifts, vectors)}
    # key = (sender j, receiver i); r_ij points from the centre i to the neighbour j
    assert np.allclose(edges[(1, 0)][1], [0.0, 0.0, 1.0])
    assert np.allclose(edges[(0, 1)][1], [0.0, 0.0, -1.0])
    assert edges[(2, 0)][0] == (-1.0, 0.0, 0.0)
    assert np.allclose(edges[(2, 0)][1], [-0.5, 0.0, 0.0])
    assert edges[(0, 2)][0] == (1.0, 0.0, 0.0)


def test_fast_periodic_cell_check_agrees_with_the_full_checks() -> None:
    """The float fast path of fully periodic cells accepts exactly what the numpy checks accept."""
    from gaunt_md.data.neighbors import _check_image_count, _check_periodic_rows, _periodic_cell_is_fine

    rng = np.random.default_rng(5)
    pbc = np.ones(3, dtype=bool)
    cells = [rng.normal(size=(3, 3)) * rng.uniform(0.5, 8.0) for _ in range(200)]
    cells += [np.diag([5.0, 5.0, 1e-3]), np.zeros((3, 3)), np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]])]
    cells += [np.diag([5.0, 5.0, 0.02]), np.eye(3) * 4.0]
    outcomes = set()
    for cell in cells:
        try:
            _check_periodic_rows(cell, pbc)
            _check_image_count(cell, pbc, 5.0)
            accepted = True
        except StructureError:
            accepted = False
        assert _periodic_cell_is_fine(cell, 5.0) == accepted, cell
        outcomes.add(accepted)
    assert outcomes == {True, False}
