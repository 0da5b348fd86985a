"""MD driver: energy conservation, thermostat temperatures, files, seeds, ramps.

Fast versions run by default on small cells; ``-m slow`` runs the sizes named in the issue
(64-atom Si, 2 ps NVE; long NVT runs).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from gaunt_md.drivers import run_md
from gaunt_md.drivers.md_files import STATS_COLUMNS, read_stats
from gaunt_md.errors import GauntError


def _drift_meV_per_atom(stats: dict[str, np.ndarray]) -> float:
    """|<E_tot> over the last tenth - <E_tot> over the first tenth| per atom, meV."""
    e = stats["ETot/N"]
    k = max(len(e) // 10, 1)
    return float(abs(e[-k:].mean() - e[:k].mean()) * 1000)


def _cell_of_64(crystal):
    """64 atoms: 2x2x2 cubic cells of diamond Si, 4x4x4 primitive cells of fcc Cu."""
    for atoms in (crystal.cubic(reps=2), crystal.primitive() * (4, 4, 4)):
        if len(atoms) == 64:
            return atoms
    raise ValueError(f"no 64-atom cell for {crystal.name}")


def _run_nve(crystal, atoms, steps, tmp_path):
    res = run_md(atoms, crystal.make_calc(), ensemble="nve", steps=steps, timestep_fs=1.0, temperature_K=300.0,
                 seed=1, file_prefix=tmp_path / "nve", stats_every=5, traj_every=0, restart_every=0)
    return res, read_stats(res.files["stats"])


def test_nve_energy_conservation_short(crystal, tmp_path):
    gaunt = crystal.name.startswith("gaunt")  # ~30 ms/step on a busy CPU: a shorter run
    res, stats = _run_nve(crystal, crystal.cubic(reps=1 if gaunt else 2), 120 if gaunt else 300, tmp_path)
    assert _drift_meV_per_atom(stats) < 1.0
    assert np.ptp(stats["ETot/N"]) * 1000 < 5.0  # fluctuations of a symplectic integrator stay bounded
    assert 50 < res.mean_temperature_K < 300  # equipartition takes half of the initial kinetic energy


@pytest.mark.slow
def test_nve_energy_drift_2ps_64_atoms(crystal, tmp_path):
    """The issue's criterion: 64-atom cell, 300 K, dt 1 fs, 2 ps, float64, drift < 1 meV/atom."""
    res, stats = _run_nve(crystal, _cell_of_64(crystal), 2000, tmp_path)
    drift = _drift_meV_per_atom(stats)
    print(f"{crystal.name}: NVE drift {drift:.4f} meV/atom over 2 ps, {res.steps_per_second:.1f} steps/s")
    assert drift < 1.0


@pytest.mark.parametrize(("ensemble", "kw"), [("nvt", {"friction_per_fs": 0.05}), ("nvt-csvr", {"taut_fs": 20.0})])
def test_nvt_mean_temperature_short(emt_cu, ensemble, kw, tmp_path):
    # 32 atoms, 1.2 ps with short thermostat times; seeds 0-4 all gave <T> within 4 % (incl. transient)
    res = run_md(emt_cu.cubic(reps=2), EMT(), ensemble=ensemble, steps=600, timestep_fs=2.0, temperature_K=300.0,
                 seed=3, stats_every=4, file_prefix=tmp_path / "nvt", traj_every=0, restart_every=0, **kw)
    T = read_stats(res.files["stats"])["T"]
    mean = T[len(T) // 5:].mean()  # skip the first 20 % (equilibration)
    assert mean == pytest.approx(300.0, rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize(("ensemble", "kw"), [("nvt", {"friction_per_fs": 0.01}), ("nvt-csvr", {"taut_fs": 100.0}),
                                              ("nvt-nh", {"taut_fs": 100.0})])
def test_nvt_mean_temperature_long(crystal, ensemble, kw, tmp_path):
    res = run_md(_cell_of_64(crystal), crystal.make_calc(), ensemble=ensemble, steps=3000, timestep_fs=2.0,
                 temperature_K=300.0, seed=5, stats_every=5, file_prefix=tmp_path / "nvt", traj_every=0,
                 restart_every=0, **kw)
    T = read_stats(res.files["stats"])["T"]
    mean = T[len(T) // 5:].mean()
    print(f"{crystal.name} {ensemble}: <T> = {mean:.1f} K")
    assert mean == pytest.approx(300.0, rel=0.05)


@pytest.mark.slow
def test_npt_mtk_holds_pressure(emt_cu, tmp_path):
    res = run_md(emt_cu.cubic(reps=3), EMT(), ensemble="npt", steps=4000, timestep_fs=2.0, temperature_K=300.0,
                 pressure_GPa=2.0, taup_fs=500.0, seed=2, stats_every=5, file_prefix=tmp_path / "npt",
                 traj_every=0, restart_every=0)
    stats = read_stats(res.files["stats"])
    p = stats["P"][len(stats["P"]) // 4:]
    assert p.mean() == pytest.approx(2.0, abs=0.3)
    assert stats["Volume"][-1] < stats["Volume"][0]


def test_files_and_units_header(emt_cu, tmp_path):
    import ase.io
    import yaml

    res = run_md(emt_cu.cubic(), EMT(), ensemble="nvt", steps=40, seed=11, file_prefix=tmp_path / "run" / "cu",
                 traj_every=10, stats_every=5, restart_every=20)
    header = open(res.files["stats"]).readline()
    for name, unit in STATS_COLUMNS:
        assert name in header and (not unit or f"[{unit}]" in header)
    stats = read_stats(res.files["stats"])
    np.testing.assert_array_equal(stats["Step"], np.arange(0, 41, 5))
    np.testing.assert_allclose(stats["Time"], stats["Step"] * 1.0)
    frames = ase.io.read(res.files["trajectory"], ":")
    assert [f.info["step"] for f in frames] == [0, 10, 20, 30, 40]
    assert frames[-1].get_momenta().shape == (4, 3) and "forces" in frames[-1].calc.results
    assert ase.io.read(res.files["final"]).info["step"] == 40
    assert res.files["restart"].endswith("cu-res-40.traj")
    summary = yaml.safe_load(open(res.files["summary"]))
    assert summary["seed"] == 11 and summary["inputs"]["ensemble"] == "nvt"
    json.dumps(res.to_dict())


def test_seed_reproducible_and_recorded(emt_cu):
    a = run_md(emt_cu.cubic(), EMT(), steps=20, seed=42)
    b = run_md(emt_cu.cubic(), EMT(), steps=20, seed=42)
    c = run_md(emt_cu.cubic(), EMT(), steps=20, seed=43)
    np.testing.assert_array_equal(a.atoms.positions, b.atoms.positions)
    assert not np.allclose(a.atoms.positions, c.atoms.positions)
    d = run_md(emt_cu.cubic(), EMT(), steps=2)
    assert isinstance(d.seed, int)
    e = run_md(emt_cu.cubic(), EMT(), steps=2, seed=d.seed)
    np.testing.assert_array_equal(d.atoms.positions, e.atoms.positions)


def test_temperature_ramp(emt_cu, tmp_path):
    res = run_md(emt_cu.cubic(reps=2), EMT(), ensemble="nvt", steps=300, timestep_fs=2.0, temperature_K=100.0,
                 temperature_end_K=700.0, friction_per_fs=0.05, seed=1, stats_every=10, file_prefix=tmp_path / "r",
                 traj_every=0)
    stats = read_stats(res.files["stats"])
    np.testing.assert_allclose(stats["Target_T"], 100.0 + 600.0 * stats["Step"] / 300)
    assert stats["T"][-5:].mean() > 2 * stats["T"][1:6].mean()


@pytest.mark.parametrize("ensemble", ["nvt-nh", "npt", "npt-mtk", "npt-berendsen"])
def test_other_ensembles_run(emt_cu, ensemble):
    res = run_md(emt_cu.cubic(), EMT(), ensemble=ensemble, steps=20, seed=1, stats_every=5)
    assert np.isfinite(res.final_etot_per_atom)
    if ensemble.startswith("npt"):
        assert res.mean_pressure_GPa is not None


def test_molecule_md(tmp_path):
    atoms = molecule("CH3CH2OH")
    res = run_md(atoms, EMT(), ensemble="nvt-csvr", steps=20, seed=1, file_prefix=tmp_path / "eth", stats_every=5)
    stats = read_stats(res.files["stats"])
    assert np.isnan(stats["Volume"]).all() and np.isfinite(stats["T"]).all()
    assert res.mean_volume is None and res.mean_pressure_GPa is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ensemble": "nvk"}, "ensemble"),
        ({"timestep_fs": 0.0}, "timestep_fs"),
        ({"steps": -1}, "steps"),
        ({"traj_format": "dcd"}, "traj_format"),
        ({"restart": True}, "file_prefix"),
        ({"ensemble": "nvt", "temperature_K": 0.0}, "temperature_K"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(GauntError, match=match):
        run_md(bulk("Cu", cubic=True), EMT(), **{"steps": 2, **kwargs})


def test_npt_needs_periodic():
    with pytest.raises(GauntError, match="periodic"):
        run_md(molecule("H2O"), EMT(), ensemble="npt", steps=2, seed=0)
