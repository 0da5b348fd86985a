"""Independent oracles for the so3 tests (nothing here uses gaunt_md's grids or tables).

* ``oracle_gaunt(L)``: the full Gaunt tensor ``[K, K, K]`` for degrees ``<= L`` by a high-order
  Gauss-Legendre x uniform quadrature (``n_beta = 2L+2``, ``n_alpha = 4L+3``, exact far beyond the
  degree ``3L`` integrand) of e3nn's own harmonics, scaled to orthonormal;
* ``kappa(l1, l2, l3)``: the closed form of gtp.md 1.2 with the m = 0 Wigner 3j symbol;
* ``irreps(L)``: e3nn natural-parity irreps ``0e + 1o + 2e + ...``; ``wigner_d(L, R)`` their
  block-diagonal ``D(R)`` from e3nn's ``D_from_matrix``.

e3nn builds its Lie-algebra generators and the constants of ``TensorProduct`` in the *default*
dtype, which limits ``D_from_matrix`` and ``TensorProduct`` to float32 accuracy (~1e-7) even for
float64 inputs. :func:`e3nn_float64` switches the default to float64 for the duration of a
``with`` block and restores it: test-only (library code never touches the default dtype).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from e3nn import o3


@functools.lru_cache(maxsize=None)
def _oracle_gaunt_np(l_max: int) -> np.ndarray:
    n_beta, n_alpha = 2 * l_max + 2, 4 * l_max + 3
    x, w = np.polynomial.legendre.leggauss(n_beta)
    alpha = 2.0 * np.pi * np.arange(n_alpha) / n_alpha
    s = np.sqrt(1.0 - x**2)
    pts = np.stack(
        [s[:, None] * np.sin(alpha), np.repeat(x[:, None], n_alpha, 1), s[:, None] * np.cos(alpha)], axis=-1
    ).reshape(-1, 3)
    weights = np.repeat(w, n_alpha) * 2.0 * np.pi / n_alpha
    y = o3.spherical_harmonics(list(range(l_max + 1)), torch.from_numpy(pts), False, normalization="integral")
    y = y.numpy()  # e3nn "integral" normalisation: orthonormal
    return np.einsum("g,ga,gb,gc->abc", weights, y, y, y)


def oracle_gaunt(l_max: int) -> torch.Tensor:
    return torch.from_numpy(_oracle_gaunt_np(l_max).copy())


def threej_000(l1: int, l2: int, l3: int) -> float:
    """Wigner 3j ``(l1 l2 l3; 0 0 0)`` (closed form; zero for odd sum or broken triangle)."""
    j = l1 + l2 + l3
    if j % 2 or l3 < abs(l1 - l2) or l3 > l1 + l2:
        return 0.0
    g = j // 2
    f = math.factorial
    return (-1) ** g * math.sqrt(f(j - 2 * l1) * f(j - 2 * l2) * f(j - 2 * l3) / f(j + 1)) * f(g) / (
        f(g - l1) * f(g - l2) * f(g - l3)
    )


def kappa(l1: int, l2: int, l3: int) -> float:
    return math.sqrt((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1) / (4.0 * math.pi)) * abs(threej_000(l1, l2, l3))


def irreps(l_max: int) -> o3.Irreps:
    return o3.Irreps([(1, (l, (-1) ** l)) for l in range(l_max + 1)])


@contextlib.contextmanager
def e3nn_float64() -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def wigner_d(l_max: int, rot: torch.Tensor) -> torch.Tensor:
    """``[K, K]`` float64 ``D(R)`` from e3nn's ``D_from_matrix``, with ``Y(R r) = D Y(r)``."""
    with e3nn_float64():
        return irreps(l_max).D_from_matrix(rot.to(torch.float64))


def random_rotation(l_max: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, D(R))``: ``o3.rand_matrix`` (seeded; the global RNG is restored) and ``wigner_d``.

    Draws whose ``D`` misses ``Y(R r) = D Y(r)`` by more than 1e-13 are skipped: for about 1 in 75
    rotations (one Euler angle near 0) e3nn's ``D`` is only accurate to 1e-11..1e-10 (its
    ``matrix_exp`` of small angles), which would fail a 1e-12 test for reasons outside gaunt_md.
    """
    pts = torch.randn(50, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(100):
            rot = o3.rand_matrix(dtype=torch.float64)
            d = wigner_d(l_max, rot)
            y = o3.spherical_harmonics(list(range(l_max + 1)), pts, True)
            y_rot = o3.spherical_harmonics(list(range(l_max + 1)), pts @ rot.T, True)
            if (y_rot - y @ d.T).abs().max() < 1e-13:
                return rot, d
    raise RuntimeError("no accurate e3nn Wigner D in 100 draws")


def einsum_product(x: torch.Tensor, y: torch.Tensor, l1: int, l2: int, lo: int) -> torch.Tensor:
    """Brute-force ``z_c = sum G[a, b, c] x_a y_b`` with the oracle tensor."""
    g = oracle_gaunt(max(l1, l2, lo))[: (l1 + 1) ** 2, : (l2 + 1) ** 2, : (lo + 1) ** 2].to(x.dtype)
    return torch.einsum("abc,...a,...b->...c", g, x, y)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
