"""AtomicGraph contract and atoms_to_graph validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from gaunt_md.data import AtomicGraph, atoms_to_graph, neighbor_list
from gaunt_md.errors import StructureError

FIXTURES = Path(__file__).parent / "fixtures"


def test_fields_follow_the_contract() -> None:
    atoms = ase.io.read(FIXTURES / "mlearn_Si_3.xyz", 1)  # Si16 surface cell
    graph = atoms_to_graph(atoms, 4.0)

    assert graph.numbers.dtype == np.int64 and graph.numbers.shape == (16,)
    assert (graph.numbers == 14).all()
    assert graph.positions.dtype == np.float64 and graph.positions.shape == (16, 3)
    assert np.array_equal(graph.positions, atoms.positions)
    assert graph.cell.dtype == np.float64 and np.array_equal(graph.cell, atoms.cell.array)
    assert graph.pbc.dtype == np.bool_ and graph.pbc.tolist() == [True, True, True]
    assert graph.edge_index.dtype == np.int64 and graph.unit_shifts.dtype == np.float64
    assert graph.num_atoms == 16 and graph.num_edges == graph.edge_index.shape[1] > 0

    edge_index, unit_shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 4.0)
    assert np.array_equal(graph.edge_index, edge_index)
    assert np.array_equal(graph.unit_shifts, unit_shifts)
    distances = np.linalg.norm(graph.edge_vectors(), axis=1)
    assert distances.max() < 4.0 and distances.min() > 2.0  # Si-Si bonds are ~2.35 Å


def test_graph_is_immutable_and_independent_of_atoms() -> None:
    atoms = bulk("Cu", "fcc", a=3.6)
    graph = atoms_to_graph(atoms, 3.0)
    atoms.positions += 1.0
    atoms.numbers[0] = 29 + 1
    atoms.cell[0, 0] += 1.0
    atoms.pbc[0] = False
    assert np.array_equal(graph.positions, np.zeros((1, 3)))
    assert graph.numbers.tolist() == [29] and graph.pbc.tolist() == [True] * 3
    assert graph.cell[0, 0] == pytest.approx(0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.cutoff = 2.0  # type: ignore[misc]
    for name in ("numbers", "positions", "cell", "pbc", "edge_index", "unit_shifts"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(graph, name)[0] = 1


def test_inconsistent_fields_are_rejected() -> None:
    with pytest.raises(StructureError, match="positions for 2 atomic numbers"):
        AtomicGraph(
            numbers=np.array([1, 1]),
            positions=np.zeros((3, 3)),
            cell=np.eye(3),
            pbc=np.zeros(3, bool),
            edge_index=np.zeros((2, 0), int),
            unit_shifts=np.zeros((0, 3)),
        )
    with pytest.raises(StructureError, match="outside 0..1"):
        AtomicGraph(
            numbers=np.array([1, 1]),
            positions=np.zeros((2, 3)),
            cell=np.eye(3),
            pbc=np.zeros(3, bool),
            edge_index=np.array([[0], [2]]),
            unit_shifts=np.zeros((1, 3)),
        )


def test_molecule_keeps_its_cell_but_has_no_shifts() -> None:
    atoms = ase.io.read(FIXTURES / "3bpa_train_300K_3.xyz", 0)
    graph = atoms_to_graph(atoms, 5.0)
    assert graph.pbc.tolist() == [False, False, False]
    assert np.array_equal(graph.cell, np.eye(3) * 50.0)
    assert not graph.unit_shifts.any()
    assert graph.num_edges > 27 * 5


def test_nan_position_raises() -> None:
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.9, 0, 0], [0, np.nan, 0]])
    with pytest.raises(StructureError, match=r"NaN/inf.*atom 2"):
        atoms_to_graph(atoms, 3.0)


def test_inf_cell_raises() -> None:
    atoms = bulk("Cu", "fcc", a=3.6)
    cell = atoms.cell.array.copy()
    cell[0, 0] = np.inf
    atoms.set_cell(cell, scale_atoms=False)
    with pytest.raises(StructureError, match="cell contains NaN/inf"):
        atoms_to_graph(atoms, 3.0)


def test_bad_atomic_number_raises() -> None:
    atoms = Atoms(numbers=[1, 0], positions=[[0, 0, 0], [1, 0, 0]])
    with pytest.raises(StructureError, match="atom 1 has atomic number 0"):
        atoms_to_graph(atoms, 3.0)


def test_overlapping_atoms_name_both_indices_and_distance() -> None:
    positions = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [2, 2, 0], [0, 0, 2], [0.3, 0, 0.0]], float)
    atoms = Atoms("C6", positions=positions)
    with pytest.raises(StructureError, match=r"atoms 0 and 5 are 0\.3000 Å apart.*min_distance=0\.5"):
        atoms_to_graph(atoms, 5.0, min_distance=0.5)
    # the same structure passes with a smaller bound and without the check
    assert atoms_to_graph(atoms, 5.0, min_distance=0.25).num_atoms == 6
    assert atoms_to_graph(atoms, 5.0).num_atoms == 6


def test_overlap_through_periodic_boundary() -> None:
    atoms = Atoms("Ar3", positions=[[0.1, 5, 5], [5, 5, 5], [9.95, 5, 5]], cell=np.eye(3) * 10, pbc=True)
    with pytest.raises(StructureError, match=r"atoms 0 and 2 \(atom 2 in periodic image \(-1, 0, 0\)\) are 0\.1500 Å"):
        atoms_to_graph(atoms, 4.0, min_distance=1.0)


def test_overlap_with_own_image() -> None:
    atoms = Atoms("Ar", positions=[[0, 0, 0]], cell=np.diag([10.0, 10.0, 0.4]), pbc=True)
    with pytest.raises(StructureError, match=r"atom 0 and its own periodic image .* 0\.4000 Å"):
        atoms_to_graph(atoms, 3.0, min_distance=1.0)


def test_min_distance_larger_than_cutoff_is_still_checked() -> None:
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.5]])
    graph = atoms_to_graph(atoms, 1.0)
    assert graph.num_edges == 0
    with pytest.raises(StructureError, match=r"atoms 0 and 1 are 1\.5000 Å apart"):
        atoms_to_graph(atoms, 1.0, min_distance=2.0)


def test_real_structures_pass_a_sensible_min_distance() -> None:
    for name in ("mlearn_Si_3.xyz", "mlearn_Ni_2.xyz", "rmd17_ethanol_3.xyz", "3bpa_train_300K_3.xyz"):
        for atoms in ase.io.read(FIXTURES / name, ":"):
            atoms_to_graph(atoms, 5.0, min_distance=0.7)
