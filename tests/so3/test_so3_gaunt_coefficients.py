"""T1/T2 (gtp.md 4.6): Gaunt coefficients against Wigner 3j, selection rules, grid sizes."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import kappa, oracle_gaunt
from e3nn import o3

from gaunt_md.so3 import exact_grid_size, gaunt_coefficients, gaunt_tensor

L = 6


def _block(g: torch.Tensor, l1: int, l2: int, l3: int) -> torch.Tensor:
    return g[l1 * l1 : (l1 + 1) ** 2, l2 * l2 : (l2 + 1) ** 2, l3 * l3 : (l3 + 1) ** 2]


def test_oracle_is_kappa_times_wigner_3j_sign_included():
    g = oracle_gaunt(L)
    checked = 0
    for l1, l2, l3 in itertools.product(range(L + 1), repeat=3):
        if abs(l1 - l2) <= l3 <= l1 + l2 and (l1 + l2 + l3) % 2 == 0:
            expected = kappa(l1, l2, l3) * o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
            torch.testing.assert_close(_block(g, l1, l2, l3), expected, atol=1e-12, rtol=0)
            checked += 1
    assert checked == 106  # even triangle triples with l1, l2, l3 <= 6 (140 with l3 up to 12, gtp.md 1.3)


def test_odd_and_non_triangle_blocks_vanish():
    g = oracle_gaunt(L)
    for l1, l2, l3 in itertools.product(range(L + 1), repeat=3):
        if (l1 + l2 + l3) % 2 or not abs(l1 - l2) <= l3 <= l1 + l2:
            assert _block(g, l1, l2, l3).abs().max() < 1e-14, (l1, l2, l3)


def test_module_coefficients_equal_oracle():
    g = oracle_gaunt(L)
    torch.testing.assert_close(gaunt_tensor(L, L, L), g, atol=1e-13, rtol=0)
    torch.testing.assert_close(gaunt_tensor(3, 5, 2), g[:16, :36, :9], atol=1e-13, rtol=0)
    torch.testing.assert_close(gaunt_coefficients(2, 3, 1), _block(g, 2, 3, 1), atol=1e-13, rtol=0)
    with pytest.raises(ValueError, match="degrees"):
        gaunt_coefficients(-1, 0, 1)


def test_exact_grid_size_rule():
    for d in range(40):
        assert exact_grid_size(d) == ((d + 2) // 2, d + 1)  # GL n_beta >= ceil((D+1)/2), n_alpha >= D+1
        assert 2 * exact_grid_size(d)[0] - 1 >= d  # GL exact to degree 2 n_beta - 1
    with pytest.raises(ValueError, match="degree"):
        exact_grid_size(-1)
