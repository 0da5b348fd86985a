"""Labelled extxyz readers on the fixtures (see fixtures/README.md) and on synthetic files."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from gaunt_md.data import (
    LabelledStructure,
    is_isolated_atom,
    isolated_atom_energies,
    read_labelled,
    split_isolated,
)
from gaunt_md.errors import StructureError

FIXTURES = Path(__file__).parent / "fixtures"

E0_3BPA = {1: -13.587222780835477, 6: -1029.4889999855063, 7: -1484.9814568572233, 8: -2041.9816003861047}
E0_ACAC = {1: -13.568422178253735, 6: -1026.8538996116154, 8: -2037.796869412825}


def test_mlearn_si_ref_keys_and_stress() -> None:
    frames = read_labelled(FIXTURES / "mlearn_Si_3.xyz")
    assert [len(f.atoms) for f in frames] == [63, 16, 64]
    assert [f.config_type for f in frames] == ["Vacancy", "Surface", "Elastic"]
    first = frames[0]
    assert first.energy == -295.49753016
    assert first.forces.shape == (63, 3) and first.forces.dtype == np.float64
    assert np.array_equal(first.forces[0], [-2.98187262, 0.60691870, 3.48143607])
    expected = np.array(
        [
            [0.004107503988364278, -0.005671550665533216, 0.0033825764710596886],
            [-0.005671550665533216, 0.0060128544849129785, 0.0010025043176563123],
            [0.0033825764710596886, 0.0010025043176563123, 0.001722015272337695],
        ]
    )
    assert first.stress.shape == (3, 3)
    assert np.array_equal(first.stress, expected)
    for frame in frames:
        assert frame.stress.shape == (3, 3)
        assert np.allclose(frame.stress, frame.stress.T)
        assert frame.weight == 1.0
        # stripped copy: no calculator, no label keys, metadata kept
        assert frame.atoms.calc is None
        assert "REF_energy" not in frame.atoms.info and "REF_stress" not in frame.atoms.info
        assert "REF_forces" not in frame.atoms.arrays
        assert "description" in frame.atoms.info
        assert frame.atoms.pbc.all()


def test_mlearn_ni_has_no_stress() -> None:
    frames = read_labelled(FIXTURES / "mlearn_Ni_2.xyz")
    assert [f.energy for f in frames][0] == -33.38981773
    assert all(f.stress is None and f.forces.shape == (6, 3) for f in frames)
    assert all(f.config_type is None for f in frames)
    with pytest.raises(StructureError, match=r"frame 0 of .*mlearn_Ni_2\.xyz.* no stress label: key 'REF_stress'"):
        read_labelled(FIXTURES / "mlearn_Ni_2.xyz", required=("energy", "forces", "stress"))


def test_3bpa_falls_back_to_calculator() -> None:
    frames = read_labelled(FIXTURES / "3bpa_train_300K_3.xyz", required=("energy", "forces"))
    assert len(frames) == 3
    first = frames[0]
    assert first.energy == -17660.461737861464
    assert np.array_equal(first.forces[0], [0.17092934, 0.13274200, 0.79555789])
    assert first.forces.shape == (27, 3)
    assert first.stress is None
    assert first.atoms.calc is None
    assert first.atoms.get_chemical_formula() == "C12H12N2O"
    assert not first.atoms.pbc.any()
    assert frames[1].energy != frames[0].energy
    # explicit plain keys give the same values
    plain = read_labelled(FIXTURES / "3bpa_train_300K_3.xyz", energy_key="energy", forces_key="forces")
    assert [f.energy for f in plain] == [f.energy for f in frames]


def test_rmd17_ethanol() -> None:
    frames = read_labelled(FIXTURES / "rmd17_ethanol_3.xyz", required=("energy", "forces"))
    assert frames[0].energy == -4209.783872661563
    assert np.array_equal(frames[0].forces[0], [-0.76525966, -1.13342999, 1.76516855])
    assert frames[0].atoms.info["rmd17_index"] == 124158
    assert all(len(f.atoms) == 9 and f.stress is None for f in frames)


def test_isolated_atoms_3bpa() -> None:
    frames = read_labelled(FIXTURES / "3bpa_iso_atoms.xyz")
    assert all(f.forces is None and is_isolated_atom(f) for f in frames)
    assert isolated_atom_energies(frames) == E0_3BPA


def test_isolated_atoms_acac_config_type() -> None:
    frames = read_labelled(FIXTURES / "acac_isolated_atoms.xyz")
    assert [f.config_type for f in frames] == ["isolated_atom"] * 3
    assert isolated_atom_energies(frames) == E0_ACAC


def test_split_isolated_keeps_order() -> None:
    iso = read_labelled(FIXTURES / "3bpa_iso_atoms.xyz")
    train = read_labelled(FIXTURES / "3bpa_train_300K_3.xyz")
    mixed = [train[0], iso[0], train[1], iso[1], iso[2], train[2], iso[3]]
    isolated, rest = split_isolated(mixed)
    assert [id(f) for f in isolated] == [id(f) for f in iso]
    assert [id(f) for f in rest] == [id(f) for f in train]
    assert isolated_atom_energies(mixed) == E0_3BPA


def test_periodic_single_atom_is_not_isolated() -> None:
    bulk_atom = LabelledStructure(atoms=Atoms("Cu", cell=np.eye(3) * 2.5, pbc=True), energy=-3.7)
    tagged = LabelledStructure(atoms=Atoms("Cu", cell=np.eye(3) * 20, pbc=True), energy=-0.2, config_type="IsolatedAtom")
    assert not is_isolated_atom(bulk_atom)
    assert is_isolated_atom(tagged)
    assert isolated_atom_energies([bulk_atom, tagged]) == {29: -0.2}


def test_conflicting_isolated_energies_raise() -> None:
    a = LabelledStructure(atoms=Atoms("H"), energy=-13.6)
    b = LabelledStructure(atoms=Atoms("H"), energy=-13.5)
    with pytest.raises(StructureError, match="two isolated-atom energies for Z=1"):
        isolated_atom_energies([a, b])
    with pytest.raises(StructureError, match="frame 0 .* has no energy"):
        isolated_atom_energies([LabelledStructure(atoms=Atoms("H"))])


def test_index_selects_frames() -> None:
    assert len(read_labelled(FIXTURES / "mlearn_Si_3.xyz", index="0:2")) == 2
    single = read_labelled(FIXTURES / "mlearn_Si_3.xyz", index=2)
    assert len(single) == 1 and single[0].config_type == "Elastic"


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(StructureError, match="dataset file not found: .*nope.xyz"):
        read_labelled(tmp_path / "nope.xyz")


def test_missing_required_label_names_frame_and_key() -> None:
    with pytest.raises(StructureError, match=r"frame 0 of .* no energy label: key 'DFT_energy' is not in atoms.info"):
        read_labelled(FIXTURES / "rmd17_ethanol_3.xyz", energy_key="DFT_energy")
    with pytest.raises(StructureError, match=r"frame 0 of .* no forces label: key 'REF_forces'"):
        read_labelled(FIXTURES / "3bpa_iso_atoms.xyz", required=("forces",))
    with pytest.raises(StructureError, match="allowed are"):
        read_labelled(FIXTURES / "3bpa_iso_atoms.xyz", required=("virial",))


def _write(path: Path, atoms_list: list[Atoms]) -> Path:
    ase.io.write(path, atoms_list, format="extxyz")
    return path


def test_stress_formats(tmp_path: Path) -> None:
    voigt = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # xx yy zz yz xz xy
    full = np.array([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]])
    frames = []
    for stress in (voigt, full.reshape(9), full):
        atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=np.eye(3) * 5.43, pbc=True)
        atoms.info["REF_energy"] = -10.0
        atoms.info["REF_stress"] = stress
        atoms.arrays["REF_forces"] = np.array([[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]])
        frames.append(atoms)
    # plain "stress" in a calculator (ASE stores it as 6 Voigt numbers)
    calc_atoms = frames[0].copy()
    calc_atoms.info.clear()
    del calc_atoms.arrays["REF_forces"]
    calc_atoms.calc = SinglePointCalculator(calc_atoms, energy=-11.0, forces=np.zeros((2, 3)), stress=voigt)
    frames.append(calc_atoms)

    result = read_labelled(_write(tmp_path / "stress.xyz", frames))
    assert len(result) == 4
    for labelled in result:
        assert labelled.stress.shape == (3, 3)
        assert np.allclose(labelled.stress, full)
    assert result[3].energy == -11.0 and np.array_equal(result[3].forces, np.zeros((2, 3)))


def test_bad_stress_shape_raises(tmp_path: Path) -> None:
    atoms = Atoms("H", positions=[[0, 0, 0]], cell=np.eye(3) * 3, pbc=True)
    atoms.info["REF_energy"] = 1.0
    atoms.info["REF_stress"] = np.arange(4.0)
    with pytest.raises(StructureError, match=r"frame 0 .* stress 'REF_stress' must be 9 numbers .* shape \(4,\)"):
        read_labelled(_write(tmp_path / "bad.xyz", [atoms]))


def test_weights_are_read_and_stripped(tmp_path: Path) -> None:
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    atoms.info.update(REF_energy=-31.0, config_weight=2.5, config_type="dimer")
    labelled = read_labelled(_write(tmp_path / "w.xyz", [atoms]))[0]
    assert labelled.weight == 2.5 and labelled.config_type == "dimer"
    assert labelled.forces is None
    assert "config_weight" not in labelled.atoms.info and "REF_energy" not in labelled.atoms.info


def test_nine_stress_numbers_are_row_major(tmp_path: Path) -> None:
    atoms = Atoms("H", positions=[[0, 0, 0]], cell=np.eye(3) * 3, pbc=True)
    atoms.info["REF_energy"] = 1.0
    atoms.info["REF_stress"] = np.arange(9.0)
    labelled = read_labelled(_write(tmp_path / "s.xyz", [atoms]))[0]
    assert labelled.stress.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]
