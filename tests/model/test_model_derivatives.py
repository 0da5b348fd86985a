"""Forces and stress against finite differences, periodic images, cutoff smoothness, NVE (gtp.md T8, T9)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from gaunt_md.testing import (
    assert_forces_match_fd,
    assert_stress_match_fd,
    evaluate,
    example_molecule,
    example_triclinic_cell,
    finite_difference_forces,
)


def _sheared(atoms: Atoms, rng: np.random.Generator, amount: float = 0.04) -> Atoms:
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + rng.uniform(-amount, amount, (3, 3))), scale_atoms=True)
    return out


# ---------------------------------------------------------------------------------------------
# forces and stress against central finite differences (float64)


def test_molecule_forces_match_finite_differences(calc64, rng):
    atoms = example_molecule()
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    assert np.abs(evaluate(calc64, atoms, ["forces"])["forces"]).max() > 0.05
    assert_forces_match_fd(calc64, atoms, eps=1e-4, atol=1e-7, rtol=1e-5)


def test_triclinic_forces_and_stress_match_finite_differences(calc64, rng):
    atoms = example_triclinic_cell(rng, rattle=0.12)
    res = evaluate(calc64, atoms, ["forces", "stress"])
    assert np.abs(res["forces"]).max() > 1e-2 and np.abs(res["stress"]).max() > 1e-4
    assert np.abs(res["stress"] - np.diag(np.diag(res["stress"]))).max() > 1e-5  # shear components present
    assert_forces_match_fd(calc64, atoms, eps=1e-4, atol=1e-7, rtol=1e-5)
    assert_stress_match_fd(calc64, atoms, eps=1e-5, atol=1e-8, rtol=1e-5)


def test_small_cell_stress_matches_finite_differences(calc64, rng):
    """One-atom sheared fcc cell: every neighbour is a periodic image of the atom itself."""
    atoms = _sheared(bulk("Cu", "fcc", a=3.6), rng, 0.05)
    stress = evaluate(calc64, atoms, ["stress"])["stress"]
    assert np.abs(stress).max() > 1e-4
    assert_stress_match_fd(calc64, atoms, eps=1e-5, atol=1e-8, rtol=1e-5)


def test_float32_forces_close_to_finite_differences(calc32, calc64, rng):
    """float32 forces agree with float64 finite differences to float32 accuracy."""
    atoms = example_triclinic_cell(rng, rattle=0.12)
    numeric = finite_difference_forces(calc64, atoms, eps=1e-4)
    analytic = evaluate(calc32, atoms, ["forces"])["forces"]
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=2e-5 * max(1.0, np.abs(numeric).max()))


def test_energies_sum_to_energy(calc64, rng):
    for atoms in (example_molecule(), example_triclinic_cell(rng)):
        res = evaluate(calc64, atoms, ["energy", "energies"])
        assert res["energies"].shape == (len(atoms),)
        assert res["energies"].sum() == pytest.approx(res["energy"], abs=1e-10)


# ---------------------------------------------------------------------------------------------
# periodic images


def test_supercell_energy_per_atom_forces_and_stress(calc64, rng):
    cell = example_triclinic_cell(rng, rattle=0.1)
    reps = (2, 1, 2)
    supercell = cell.repeat(reps)
    ref = evaluate(calc64, cell, ["energy", "energies", "forces", "stress"])
    big = evaluate(calc64, supercell, ["energy", "energies", "forces", "stress"])
    n_copies = int(np.prod(reps))
    assert big["energy"] / len(supercell) == pytest.approx(ref["energy"] / len(cell), abs=1e-12)
    np.testing.assert_allclose(big["energies"], np.tile(ref["energies"], n_copies), atol=1e-11)
    np.testing.assert_allclose(big["forces"], np.tile(ref["forces"], (n_copies, 1)), atol=1e-11)
    np.testing.assert_allclose(big["stress"], ref["stress"], atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: bulk("Cu", "fcc", a=3.6), id="Cu-fcc-1atom"),
        pytest.param(lambda: bulk("Si", "diamond", a=5.43), id="Si-diamond-2atom"),
        pytest.param(lambda: bulk("Cu", "bcc", a=2.3), id="Cu-bcc-1atom-compressed"),
    ],
)
def test_cell_smaller_than_cutoff_matches_supercell(calc64, rng, make):
    """Cells whose heights are below r_c = 4 Å: the atom sees itself; results equal a 3x3x3 supercell."""
    small = _sheared(make(), rng, 0.03)
    heights = small.cell.volume / np.linalg.norm(np.cross(small.cell[[1, 2, 0]], small.cell[[2, 0, 1]]), axis=1)
    assert heights.min() < calc64.cutoff
    big = small.repeat((3, 3, 3))
    ref = evaluate(calc64, small, ["energy", "forces", "stress"])
    new = evaluate(calc64, big, ["energy", "forces", "stress"])
    assert new["energy"] / len(big) == pytest.approx(ref["energy"] / len(small), abs=1e-12)
    np.testing.assert_allclose(new["stress"], ref["stress"], atol=1e-12)
    np.testing.assert_allclose(new["forces"], np.tile(ref["forces"], (27, 1)), atol=1e-11)
    assert np.abs(ref["stress"]).max() > 1e-5


# ---------------------------------------------------------------------------------------------
# smoothness at the cutoff


def _dimer(r: float, pair=(6, 8)) -> Atoms:
    return Atoms(numbers=list(pair), positions=[[0.0, 0.0, 0.0], [r * 0.6, r * 0.48, r * 0.64]], pbc=False)


def test_energy_and_forces_vanish_smoothly_at_cutoff(calc64):
    """E(r) - E(inf) = O((r_c - r)^3) and F = O((r_c - r)^2) as r -> r_c; exactly zero beyond r_c.

    The envelope gives order 3 (u = u' = u'' = 0 at r_c); the Bessel functions vanish at r_c too,
    so orders 4 and 3 are measured. Order >= 3 is the contract (C^2 energy, gtp.md 4.4).
    """
    rc = calc64.cutoff
    far = evaluate(calc64, _dimer(rc + 1.0), ["energy", "forces"])
    assert np.abs(far["forces"]).max() == 0.0

    for r in (rc, rc + 1e-9, rc + 0.3):
        res = evaluate(calc64, _dimer(r), ["energy", "forces"])
        assert res["energy"] == far["energy"], f"interaction at r = {r} >= r_c"
        assert np.abs(res["forces"]).max() == 0.0

    ds = np.array([0.2, 0.1, 0.05, 0.025, 0.0125])
    de, f = [], []
    for d in ds:
        res = evaluate(calc64, _dimer(rc - d), ["energy", "forces"])
        de.append(res["energy"] - far["energy"])
        f.append(np.linalg.norm(res["forces"][0]))
    de, f = np.abs(np.array(de)), np.array(f)
    assert de[0] > 1e-8 and f[0] > 1e-7, "the pair interacts too weakly for a meaningful check"
    # halving the distance to r_c divides |dE| by ~8 and |F| by ~4 (leading orders 3 and 2)
    e_order = np.log2(de[:-1] / de[1:])
    f_order = np.log2(f[:-1] / f[1:])
    assert np.all(e_order[-2:] > 2.7), f"energy vanishes with order {e_order} (expected 3)"
    assert np.all(f_order[-2:] > 1.7), f"forces vanish with order {f_order} (expected 2)"


def test_dimer_scan_is_continuous_and_consistent(calc64):
    """A fine scan through r_c: no jumps in E, and F matches -dE/dr everywhere."""
    rc = calc64.cutoff
    rs = np.linspace(rc - 0.6, rc + 0.1, 141)
    energies, radial_forces = [], []
    direction = np.array([0.6, 0.48, 0.64])
    for r in rs:
        res = evaluate(calc64, _dimer(r), ["energy", "forces"])
        energies.append(res["energy"])
        radial_forces.append(res["forces"][1] @ direction)  # force on atom 1 along the bond
    energies, radial_forces = np.array(energies), np.array(radial_forces)
    h = rs[1] - rs[0]
    steps = np.abs(np.diff(energies))
    assert steps.max() < 1.5 * h * np.abs(radial_forces).max() + 1e-12, "energy jumps along the scan"
    central = -(energies[2:] - energies[:-2]) / (2 * h)
    np.testing.assert_allclose(radial_forces[1:-1], central, atol=5e-3 * np.abs(radial_forces).max() + 1e-10)


# ---------------------------------------------------------------------------------------------
# molecular dynamics


def _nve_drift(calc, atoms: Atoms, steps: int, dt_fs: float, temperature_K: float, seed: int):
    atoms = atoms.copy()
    atoms.calc = calc
    try:
        from ase.md.velocitydistribution import thermalize_momenta  # ASE >= 3.29
    except ImportError:  # pragma: no cover - older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs)
    total, potential = [], []

    def record():
        total.append(atoms.get_total_energy())
        potential.append(atoms.get_potential_energy())

    dyn.attach(record, interval=1)
    dyn.run(steps)
    return np.array(total), np.array(potential)


@pytest.mark.parametrize(
    "kind, dt_fs, temperature_K",
    [("triclinic", 1.0, 600.0), ("molecule", 0.5, 300.0)],
)
def test_nve_conserves_energy(calc64, rng, kind, dt_fs, temperature_K):
    """200 velocity-Verlet steps: the total energy moves < 0.5% of the potential energy's range.

    Measured: 6e-5 (8-atom cell, 1 fs) and 8e-4 (3BPA, 0.5 fs); forces scaled by 1.03 give 3e-2.
    """
    atoms = example_triclinic_cell(rng, rattle=0.05) if kind == "triclinic" else example_molecule()
    total, potential = _nve_drift(calc64, atoms, 200, dt_fs, temperature_K, seed=1)
    fluctuation = potential.max() - potential.min()
    drift = np.abs(total - total[0]).max()
    assert fluctuation > 1e-3, "the system does not move: the check would be vacuous"
    assert drift < 5e-3 * fluctuation, f"total energy drifted by {drift:.2e} eV (E_pot range {fluctuation:.2e} eV)"


@pytest.mark.slow
def test_nve_molecule_1000_steps(calc64):
    """gtp.md T9: 1000 steps of the 3BPA molecule at 0.5 fs show bounded energy drift."""
    total, potential = _nve_drift(calc64, example_molecule(), 1000, 0.5, 300.0, seed=2)
    fluctuation = potential.max() - potential.min()
    drift = np.abs(total - total[0]).max()
    assert drift < 5e-3 * fluctuation, f"total energy drifted by {drift:.2e} eV (E_pot range {fluctuation:.2e} eV)"
