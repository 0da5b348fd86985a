"""Relax driver: physics (strained cells relax back to the potential's a0) and the contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from gaunt_md.drivers import run_relax
from gaunt_md.errors import GauntError


def _a_of(atoms, crystal) -> float:
    """Cubic lattice constant from the volume per atom of ``atoms``."""
    per_cell = len(crystal.cubic(crystal.a0))
    return float((atoms.get_volume() / len(atoms) * per_cell) ** (1 / 3))


@pytest.mark.parametrize("cell", ["lengths", "full"])
def test_strained_cell_relaxes_to_a0(crystal, cell, rng):
    atoms = crystal.primitive(crystal.a0 * 1.03)
    if cell == "full":  # a sheared, rattled cell: only the full filter can undo it
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + [[0, 0.02, 0], [0, 0, 0], [0.01, 0, 0]]), scale_atoms=True)
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
    res = run_relax(atoms, crystal.make_calc(), cell=cell, fmax=1e-3, steps=500)
    assert res.converged
    assert res.max_force < 1e-3
    assert _a_of(res.atoms, crystal) == pytest.approx(crystal.a0, rel=2e-3)
    assert abs(res.pressure_GPa) < 0.2


def test_positions_only_keeps_the_cell(emt_cu, rng):
    atoms = emt_cu.cubic(reps=2)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    res = run_relax(atoms, EMT(), optimizer="LBFGS", fmax=1e-3)
    assert res.converged and res.max_force < 1e-3
    np.testing.assert_allclose(res.atoms.cell.array, atoms.cell.array)
    assert res.energy < res.initial_energy


def test_target_pressure(emt_cu):
    res = run_relax(emt_cu.primitive(), EMT(), cell="full", pressure_GPa=5.0, fmax=1e-4, steps=500)
    assert res.converged
    assert res.pressure_GPa == pytest.approx(5.0, abs=0.05)
    assert res.volume < emt_cu.primitive().get_volume()


def test_fix_symmetry_keeps_space_group(emt_cu):
    import spglib

    atoms = emt_cu.cubic(emt_cu.a0 * 0.98)
    atoms.positions[0] += [0.001, 0.0, 0.0]  # below symprec: FixSymmetry symmetrises it away
    res = run_relax(atoms, EMT(), cell="full", fix_symmetry=True, symprec=1e-2, fmax=1e-4)
    cell = (res.atoms.cell.array, res.atoms.get_scaled_positions(), res.atoms.numbers)
    assert spglib.get_spacegroup(cell, symprec=1e-4) == "Fm-3m (225)"
    assert res.atoms.constraints == []


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS", "lbfgs"])
def test_optimizers_and_files(emt_cu, optimizer, tmp_path):
    import ase.io
    import yaml

    atoms = emt_cu.primitive(emt_cu.a0 * 1.02)
    before = atoms.copy()
    res = run_relax(atoms, EMT(), optimizer=optimizer, cell="full", fmax=1e-3, file_prefix=tmp_path / "cu",
                    out=tmp_path / "cu.cif")
    assert atoms == before and atoms.calc is None  # the input is never modified
    assert res.converged
    traj = ase.io.read(res.files["trajectory"], ":")
    assert len(traj) == res.steps + 1
    assert ase.io.read(res.files["structure"]).get_volume() == pytest.approx(res.volume)
    assert ase.io.read(tmp_path / "cu.cif").get_volume() == pytest.approx(res.volume, rel=1e-5)
    log = np.loadtxt(res.files["log"], ndmin=2)
    assert log.shape == (res.steps + 1, 5)
    assert "[eV]" in open(res.files["log"]).readline()
    summary = yaml.safe_load(open(res.files["summary"]))
    assert summary["task"] == "relax" and summary["results"]["converged"] is True
    assert summary["provenance"]["calculator"] == "EMT"
    assert json.loads(json.dumps(res.to_dict()))["converged"] is True


def test_accepts_pymatgen_and_paths(emt_cu, tmp_path):
    from pymatgen.io.ase import AseAtomsAdaptor

    structure = AseAtomsAdaptor.get_structure(emt_cu.primitive())
    res = run_relax(structure, EMT(), fmax=0.01)
    assert res.converged and res["energy"] == res.energy
    assert res.structure.composition.reduced_formula == "Cu"
    structure.to(filename=str(tmp_path / "POSCAR"))
    assert run_relax(tmp_path / "POSCAR", EMT()).converged
    d = res.to_dict(structure=True)
    assert d["structure"]["@class"] == "Structure"


def test_not_converged_is_reported(emt_cu, rng):
    atoms = emt_cu.cubic(reps=2)
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    res = run_relax(atoms, EMT(), fmax=1e-6, steps=3)
    assert not res.converged and res.steps == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "newton"}, "optimizer"),
        ({"cell": "volume"}, "cell"),
        ({"pressure_GPa": 1.0}, "pressure"),
        ({"fmax": -1.0}, "fmax"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(GauntError, match=match):
        run_relax(bulk("Cu"), EMT(), **kwargs)


def test_cell_relax_needs_periodic_structure():
    from ase.build import molecule

    with pytest.raises(GauntError, match="periodic"):
        run_relax(molecule("H2O"), EMT(), cell="full")
