"""Dataset evaluation: MAE/RMSE against REF labels in the units model cards quote."""

from __future__ import annotations

import json

import ase.io
import pytest
from ase.calculators.emt import EMT

from gaunt_md.drivers import run_eval
from gaunt_md.errors import GauntError
from gaunt_md.units import GPa


@pytest.fixture
def labelled(tmp_path, emt_cu, rng):
    """Rattled Cu cells labelled with EMT plus known offsets: dE = +10 meV/atom, dF = +50 meV/Å per
    component, dσ = +0.1 GPa per Voigt component; and an isolated atom that must not count."""
    frames = []
    for k in range(5):
        atoms = emt_cu.cubic(reps=1 + k % 2)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy() - 0.010 * len(atoms)
        atoms.arrays["REF_forces"] = atoms.get_forces() - 0.050
        atoms.info["REF_stress"] = atoms.get_stress() - 0.1 * GPa
        atoms.info["config_type"] = "bulk" if k < 3 else "rattled"
        atoms.calc = None
        frames.append(atoms)
    iso = emt_cu.cubic()[:1]
    iso.pbc, iso.cell = False, None
    iso.info.update(REF_energy=123.0, config_type="IsolatedAtom")
    frames.append(iso)
    path = tmp_path / "data.xyz"
    ase.io.write(path, frames, format="extxyz")
    return path


def test_metrics_recover_known_errors(labelled, tmp_path):
    res = run_eval(labelled, EMT(), batch_size=2, file_prefix=tmp_path / "ev")
    m = res.metrics
    assert m["n_structures"] == 5
    assert m["energy_mae_meV_per_atom"] == pytest.approx(10.0, abs=1e-6)
    assert m["energy_rmse_meV_per_atom"] == pytest.approx(10.0, abs=1e-6)
    assert m["forces_mae_meV_per_A"] == pytest.approx(50.0, abs=1e-6)
    assert m["stress_mae_GPa"] == pytest.approx(0.1, abs=1e-6)
    assert set(res.metrics_by_config_type) == {"bulk", "rattled"}
    assert res.metrics_by_config_type["rattled"]["n_structures"] == 2
    written = ase.io.read(res.files["predictions"], ":")
    assert len(written) == 6 and "gaunt_forces" in written[0].arrays and "REF_energy" in written[0].info
    assert json.load(open(res.files["metrics"]))["metrics"] == pytest.approx(m)


def test_batched_calculator_is_used_in_chunks(labelled):
    class BatchEMT(EMT):
        sizes: list[int] = []

        def calculate_batch(self, atoms_list, properties=("energy", "forces"), progress=False):
            self.sizes.append(len(atoms_list))
            out = []
            for atoms in atoms_list:
                a = atoms.copy()
                a.calc = EMT()
                r = {"energy": a.get_potential_energy(), "forces": a.get_forces()}
                if "stress" in properties and a.pbc.all():
                    r["stress"] = a.get_stress()
                out.append(r)
            return out

    calc = BatchEMT()
    res = run_eval(labelled, calc, batch_size=4)
    assert calc.sizes == [4, 2]
    assert res.metrics["energy_mae_meV_per_atom"] == pytest.approx(10.0, abs=1e-6)


def test_bad_input(tmp_path):
    with pytest.raises(GauntError, match="not found"):
        run_eval(tmp_path / "missing.xyz", EMT())
    with pytest.raises(GauntError, match="batch_size"):
        run_eval(tmp_path / "missing.xyz", EMT(), batch_size=0)
