"""Crystals + calculators for the driver physics tests.

Every physics test takes the ``crystal`` fixture, so the same assertions run against

- ``emt-cu``: fcc Cu with ASE's EMT (always available, fast);
- ``gaunt-si``: diamond Si with the default shipped GauntCalculator in float64 (skipped until a
  default model covering Si is installed).

``Crystal.a0`` is the potential's own lattice constant, found independently of the drivers by
solving P(a) = 0 from the stress with Brent's method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk


@pytest.fixture(scope="session", autouse=True)
def _single_blas_thread():
    """OpenBLAS threads spin on a busy 2-core machine: 20x slower 3x3 algebra in cell filters."""
    from gaunt_md.runtime import limit_blas_threads

    limit_blas_threads(1)


@dataclass
class Crystal:
    name: str
    symbol: str
    lattice: str  # ase.build.bulk crystal structure
    make_calc: Callable[[], object]
    a_guess: float
    a0: float = float("nan")

    def primitive(self, a: float | None = None) -> Atoms:
        return bulk(self.symbol, self.lattice, a=a or self.a0)

    def cubic(self, a: float | None = None, reps: int = 1) -> Atoms:
        return bulk(self.symbol, self.lattice, a=a or self.a0, cubic=True) * (reps, reps, reps)


def _pressure(crystal: Crystal, a: float) -> float:
    atoms = crystal.primitive(a)
    atoms.calc = crystal.make_calc()
    return float(-atoms.get_stress()[:3].mean())


def _lattice_constant(crystal: Crystal) -> float:
    from scipy.optimize import brentq

    return float(brentq(lambda a: _pressure(crystal, a), 0.93 * crystal.a_guess, 1.07 * crystal.a_guess, xtol=1e-7))


def default_model_elements() -> set[str]:
    """Symbols covered by the default shipped model (empty when there is none)."""
    try:
        from ase.data import chemical_symbols

        from gaunt_md.potentials import model_info

        elements = model_info("default")["elements"]
    except Exception:  # noqa: BLE001 - no default model installed yet
        return set()
    return {chemical_symbols[e] if isinstance(e, int) else str(e) for e in elements}


def _emt():
    from ase.calculators.emt import EMT

    return EMT()


def _gaunt64():
    from gaunt_md.calculator import GauntCalculator

    return GauntCalculator("default", device="cpu", dtype="float64")


_CRYSTALS = {
    "emt-cu": lambda: Crystal("emt-cu", "Cu", "fcc", _emt, 3.60),
    "gaunt-si": lambda: Crystal("gaunt-si", "Si", "diamond", _gaunt64, 5.45),
}


@pytest.fixture(scope="session", params=list(_CRYSTALS))
def crystal(request) -> Crystal:
    if request.param == "gaunt-si" and "Si" not in default_model_elements():
        pytest.skip("no default GauntCalculator model covering Si installed")
    c = _CRYSTALS[request.param]()
    c.a0 = _lattice_constant(c)
    return c


@pytest.fixture(scope="session")
def emt_cu() -> Crystal:
    c = _CRYSTALS["emt-cu"]()
    c.a0 = _lattice_constant(c)
    return c


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
