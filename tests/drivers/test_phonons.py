"""Phonon driver: acoustic sum rule at Gamma, symmetry of the bands, files, batching."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from gaunt_md.drivers import run_phonons
from gaunt_md.drivers.phonons import frequencies_at, supercell_for_length
from gaunt_md.errors import GauntError


@pytest.fixture(scope="module")
def cu_phonons(emt_cu, tmp_path_factory):
    out = tmp_path_factory.mktemp("ph") / "cu"
    return run_phonons(emt_cu.primitive(), EMT(), supercell=3, file_prefix=out, mesh=[8, 8, 8])


def test_acoustic_modes_at_gamma_vanish(crystal):
    res = run_phonons(crystal.primitive(), crystal.make_calc(), supercell=2, plot=False, mesh=[6, 6, 6])
    acoustic = np.sort(np.abs(res.gamma_frequencies_THz))[:3]
    assert np.all(acoustic < 0.05)
    assert res.n_displacements >= 1


def test_bands_follow_the_cubic_symmetry(crystal):
    """fcc/diamond: the three X points, and the four L points, of the primitive BZ are equivalent;
    q and -q give the same frequencies; the transverse branches are degenerate at X."""
    res = run_phonons(crystal.primitive(), crystal.make_calc(), supercell=2, plot=False, mesh=[4, 4, 4])
    ph = res.phonopy
    x = frequencies_at(ph, [[0.5, 0.0, 0.5], [0.0, 0.5, 0.5], [0.5, 0.5, 0.0], [-0.5, 0.0, -0.5]])
    np.testing.assert_allclose(x, np.broadcast_to(x[0], x.shape), atol=1e-6)
    l_pts = frequencies_at(ph, [[0.5, 0.5, 0.5], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]])
    np.testing.assert_allclose(l_pts, np.broadcast_to(l_pts[0], l_pts.shape), atol=1e-6)
    q = np.array([[0.1, 0.23, 0.37]])
    np.testing.assert_allclose(frequencies_at(ph, q), frequencies_at(ph, -q), atol=1e-8)
    assert x[0][0] == pytest.approx(x[0][1], abs=1e-6)  # TA doublet at X


def test_cu_bands_files_and_thermal(cu_phonons):
    import phonopy
    import yaml

    res = cu_phonons
    assert not res.has_imaginary_modes and res.min_frequency_THz > -0.05
    assert res.band_labels[0] == "Gamma" and "X" in res.band_labels
    for key in ("phonopy_yaml", "band_yaml", "total_dos", "thermal", "force_constants", "plot", "summary"):
        assert res.files[key] and open(res.files[key], "rb").read(1), key
    again = phonopy.load(res.files["phonopy_yaml"], log_level=0)
    np.testing.assert_allclose(frequencies_at(again, [[0.5, 0, 0.5]]), frequencies_at(res.phonopy, [[0.5, 0, 0.5]]),
                               atol=1e-8)
    band = yaml.safe_load(open(res.files["band_yaml"]))
    assert band["nqpoint"] > 50 and "phonon" in band
    dos = np.loadtxt(res.files["total_dos"])
    assert dos.shape[1] == 2 and dos[:, 1].max() > 0
    t = np.asarray(res.thermal["temperature_K"])
    cv = np.asarray(res.thermal["heat_capacity_J_per_K_mol"])
    assert cv[0] == pytest.approx(0.0, abs=1e-6)
    assert cv[t == 1000][0] == pytest.approx(3 * 8.314462618, rel=0.02)  # Dulong-Petit, 1 atom per cell
    assert json.loads(json.dumps(res.to_dict()))["has_imaginary_modes"] is False
    assert "phonopy" not in res.to_dict()


def test_all_displacements_in_one_batch(emt_cu):
    class BatchEMT(EMT):
        batches: list[int] = []

        def calculate_batch(self, atoms_list, properties=("energy", "forces"), progress=False):
            self.batches.append(len(atoms_list))
            out = []
            for atoms in atoms_list:
                atoms = atoms.copy()
                atoms.calc = EMT()
                out.append({"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()})
            return out

    calc = BatchEMT()
    res = run_phonons(bulk("Cu", "fcc", a=emt_cu.a0, cubic=True), calc, supercell=[2, 2, 1], plot=False, mesh=[4, 4, 4])
    assert calc.batches == [res.n_displacements + 1]  # displaced cells + the perfect one, one call


def test_relax_first_and_min_length(emt_cu):
    res = run_phonons(emt_cu.primitive(emt_cu.a0 * 1.01), EMT(), relax=True, min_length_A=6.0, plot=False,
                      mesh=[4, 4, 4])
    assert res.atoms.get_volume() == pytest.approx(emt_cu.primitive().get_volume(), rel=1e-4)
    assert np.all(np.diag(res.supercell_matrix) >= 3)


def test_supercell_for_length():
    cell = bulk("Cu", "fcc", a=3.6).cell.array
    m = np.array(supercell_for_length(cell, 10.0))
    sc = m @ cell
    vol = abs(np.linalg.det(sc))
    heights = [vol / np.linalg.norm(np.cross(sc[(i + 1) % 3], sc[(i + 2) % 3])) for i in range(3)]
    assert min(heights) >= 10.0
    assert supercell_for_length(np.eye(3) * 5, 10.0) == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]


@pytest.mark.parametrize(("kwargs", "match"), [({"supercell": [2, 2]}, "supercell"),
                                               ({"displacement_A": 0.0}, "displacement_A"),
                                               ({"t_min_K": 10, "t_max_K": 5}, "t_min_K")])
def test_bad_input(kwargs, match):
    with pytest.raises(GauntError, match=match):
        run_phonons(bulk("Cu"), EMT(), plot=False, **kwargs)


def test_needs_periodic():
    from ase.build import molecule

    with pytest.raises(GauntError, match="periodic"):
        run_phonons(molecule("H2O"), EMT())
