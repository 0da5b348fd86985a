"""EOS driver: B0 from the E(V) fit equals B from the stress-strain slope of the same potential."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from gaunt_md.drivers import run_eos
from gaunt_md.errors import GauntError
from gaunt_md.units import GPa


def _bulk_modulus_from_stress(atoms, make_calc, eps: float = 2e-3) -> float:
    """B = -V dP/dV from the pressures (-trace(sigma)/3) at +-eps isotropic strain, GPa."""
    p = []
    for s in (-eps, eps):
        a = atoms.copy()
        a.set_cell(atoms.cell.array * (1 + s), scale_atoms=True)
        a.calc = make_calc()
        p.append(-a.get_stress()[:3].mean())
    dlnv = np.log((1 + eps) ** 3 / (1 - eps) ** 3)
    return float(-(p[1] - p[0]) / dlnv / GPa)


def test_b0_matches_stress_strain_slope(crystal, tmp_path):
    res = run_eos(crystal.primitive(), crystal.make_calc(), min_volume=0.97, max_volume=1.03, n_volumes=9,
                  file_prefix=tmp_path / "eos")
    b_stress = _bulk_modulus_from_stress(res.atoms, crystal.make_calc)
    assert res.b0_GPa == pytest.approx(b_stress, rel=0.05)
    assert res.v0 == pytest.approx(crystal.primitive().get_volume(), rel=2e-3)
    # the pressures it reports are -dE/dV of the same potential: P(V0) ~ 0
    p = np.interp(res.v0, res.volumes, res.pressures_GPa)
    assert abs(p) < 0.05 * res.b0_GPa * 0.03
    for key in ("raw", "fit", "plot", "summary"):
        assert open(res.files[key], "rb").read(1)
    raw = np.loadtxt(res.files["raw"])
    assert raw.shape == (9, 3)


@pytest.mark.parametrize("eos_type", ["vinet", "murnaghan"])
def test_other_fits_and_relax(emt_cu, eos_type):
    res = run_eos(emt_cu.primitive(emt_cu.a0 * 1.02), EMT(), eos_type=eos_type, relax=True)
    assert res.v0 == pytest.approx(emt_cu.primitive().get_volume(), rel=2e-3)
    assert 100 < res.b0_GPa < 200  # EMT Cu: ~134 GPa


def test_relax_positions_per_volume(emt_cu, rng):
    atoms = emt_cu.cubic()
    atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
    res = run_eos(atoms, EMT(), relax_positions=True, fmax=1e-3)
    assert res.b0_GPa == pytest.approx(_bulk_modulus_from_stress(emt_cu.cubic(), lambda: EMT()), rel=0.05)


@pytest.mark.parametrize(("kwargs", "match"), [({"n_volumes": 3}, "n_volumes"), ({"eos_type": "spline"}, "eos_type"),
                                               ({"min_volume": 1.1}, "min_volume")])
def test_bad_input(kwargs, match):
    with pytest.raises(GauntError, match=match):
        run_eos(bulk("Cu"), EMT(), **kwargs)
