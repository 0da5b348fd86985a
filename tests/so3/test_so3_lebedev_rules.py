"""The shipped Lebedev rules are SciPy's, and reading them does not import scipy.integrate."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gaunt_md.so3.grid import LebedevGrid, lebedev_order
from gaunt_md.so3.lebedev_rules import SHIPPED_ORDERS, shipped_rule


def test_shipped_rules_are_scipys():
    integrate = pytest.importorskip("scipy.integrate")
    if not hasattr(integrate, "lebedev_rule"):
        pytest.skip("SciPy < 1.15 has no lebedev_rule")
    for order in SHIPPED_ORDERS:
        x, w = integrate.lebedev_rule(order)
        points, weights = shipped_rule(order)
        np.testing.assert_array_equal(points, x.T)
        np.testing.assert_array_equal(weights, w)
        assert abs(weights.sum() - 4 * np.pi) < 1e-12
        np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, rtol=0, atol=1e-14)


def test_grids_up_to_order_31_come_without_scipy_integrate():
    code = (
        "import sys; from gaunt_md.so3.grid import smallest_exact_grid, LebedevGrid; "
        "g = smallest_exact_grid(10); LebedevGrid.build(31); "
        "print(g.size, 'scipy.integrate' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["50", "False"]
    assert lebedev_order(30) == 31 and LebedevGrid.build(9).size == 38
