r"""Quadrature grids on the sphere, sized to be exact: Gauss-Legendre x uniform, and Lebedev.

**Gauss-Legendre x uniform** (:class:`SphereGrid`). A grid point is
:math:`r = (\sin\beta \sin\alpha,\ \cos\beta,\ \sin\beta \cos\alpha)` (e3nn's ``s2_grid`` frame:
:math:`\beta` from the polar ``+y`` axis, :math:`\alpha = 0` along ``+z``) with
:math:`\cos\beta_i` the Gauss-Legendre nodes and :math:`\alpha_j = 2\pi j / n_\alpha`. The weight
of point ``(i, j)`` is :math:`w_i \cdot 2\pi / n_\alpha` (weights sum to :math:`4\pi`).

**Exactness rule** (design note gtp.md section 3.2). The Gaunt projection integrates a product of
band-limited functions of total degree ``D`` (``D = L1 + L2 + L_out`` for a product,
``D = nu * L_A + L_out`` for a ``nu``-fold power). After the alpha sum the beta integrand is a
polynomial of degree ``<= D`` in ``cos(beta)``, so the grid is exact iff

    n_beta  >= ceil((D + 1) / 2)      (Gauss-Legendre is exact to degree 2 n_beta - 1)
    n_alpha >= D + 1                  (the uniform rule integrates e^{ik alpha}, |k| <= D)

One point fewer in either direction gives O(1) errors, not a crash; :func:`exact_grid_size`
computes the minimum and :func:`check_grid` refuses a smaller grid unless told otherwise.

**Lebedev** (:class:`LebedevGrid`, the points and weights of ``scipy.integrate.lebedev_rule``:
orders up to 31 ship with the package, :mod:`~gaunt_md.so3.lebedev_rules`; higher ones need
SciPy >= 1.15). A rule of order ``n`` integrates every polynomial of degree ``<= n`` on the sphere
exactly, so it is exact for ``D`` iff ``n >= D``. It needs about 0.7x the points of the
Gauss-Legendre grid (``D = 24``: 230 against 13 x 25 = 325) but has no separable structure.
gtp.md 3.1 skipped it for that reason; on CPU the dense ``[K, G]`` GEMMs turned out faster than
the separable transforms anyway (:mod:`gaunt_md.so3.transforms`), so fewer points is simply fewer
flops and less memory (measured ``L x L -> L``, ``C = 128``, forward+backward: 0.74x the time at
``L = 8``, 0.62x at ``L = 3``). :func:`smallest_exact_grid` picks the smaller of the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gaunt_md.so3.harmonics import spherical_harmonics
from gaunt_md.so3.lebedev_rules import SHIPPED_ORDERS, shipped_rule


def exact_grid_size(degree: int) -> tuple[int, int]:
    """Smallest Gauss-Legendre x uniform grid ``(n_beta, n_alpha)`` exact for total ``degree``."""
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    return (degree + 2) // 2, degree + 1


@dataclass(frozen=True)
class SphereGrid:
    """A Gauss-Legendre (beta) x uniform (alpha) grid; tables are float64 numpy arrays.

    Attributes:
        n_beta, n_alpha: grid size; ``size = n_beta * n_alpha`` points, beta-major.
        points: ``[size, 3]`` unit vectors.
        weights: ``[size]`` quadrature weights, summing to ``4 pi``.
    """

    n_beta: int
    n_alpha: int
    points: np.ndarray
    weights: np.ndarray

    @property
    def size(self) -> int:
        return self.n_beta * self.n_alpha

    @classmethod
    def build(cls, n_beta: int, n_alpha: int) -> "SphereGrid":
        if n_beta < 1 or n_alpha < 1:
            raise ValueError(f"grid size must be positive, got n_beta={n_beta}, n_alpha={n_alpha}")
        x, w = np.polynomial.legendre.leggauss(n_beta)  # x = cos(beta)
        sin_b = np.sqrt(1.0 - x**2)
        alpha = 2.0 * np.pi * np.arange(n_alpha) / n_alpha
        points = np.stack(
            [
                sin_b[:, None] * np.sin(alpha)[None, :],
                np.broadcast_to(x[:, None], (n_beta, n_alpha)),
                sin_b[:, None] * np.cos(alpha)[None, :],
            ],
            axis=-1,
        ).reshape(-1, 3)
        weights = np.repeat(w * (2.0 * np.pi / n_alpha), n_alpha)
        return cls(n_beta, n_alpha, points, weights)

    @classmethod
    def exact(cls, degree: int) -> "SphereGrid":
        """The smallest grid that integrates every polynomial of total ``degree`` exactly."""
        return cls.build(*exact_grid_size(degree))

    def harmonics(self, l_max: int) -> np.ndarray:
        """``[size, (l_max+1)**2]`` orthonormal real SH at the grid points (float64)."""
        pts = torch.from_numpy(self.points)
        return spherical_harmonics(l_max, pts, normalize=False).numpy()

    def is_exact_for(self, degree: int) -> bool:
        n_beta, n_alpha = exact_grid_size(degree)
        return self.n_beta >= n_beta and self.n_alpha >= n_alpha


    @property
    def name(self) -> str:
        return f"gauss-legendre {self.n_beta}x{self.n_alpha}"


#: orders of ``scipy.integrate.lebedev_rule``
LEBEDEV_ORDERS = (3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 35, 41, 47, 53, 59, 65,
                  71, 77, 83, 89, 95, 101, 107, 113, 119, 125, 131)  # fmt: skip


def _lebedev_rule():
    try:
        from scipy.integrate import lebedev_rule
    except ImportError:  # SciPy < 1.15 (or none): Gauss-Legendre grids only
        return None
    return lebedev_rule


def lebedev_order(degree: int) -> int | None:
    """Smallest available Lebedev order exact for total ``degree`` (``None`` if none).

    Orders up to 31 ship with the package (:mod:`~gaunt_md.so3.lebedev_rules`); higher ones need
    SciPy >= 1.15."""
    shipped = next((n for n in SHIPPED_ORDERS if n >= max(degree, 0)), None)
    if shipped is not None and shipped_rule(shipped) is not None:
        return shipped
    if _lebedev_rule() is None:
        return None
    return next((n for n in LEBEDEV_ORDERS if n >= max(degree, 0)), None)


@dataclass(frozen=True)
class LebedevGrid:
    """A Lebedev rule: exact for spherical polynomials of degree ``<= order``; float64 numpy tables.

    Attributes:
        order: the rule's order (one of :data:`LEBEDEV_ORDERS`).
        points: ``[size, 3]`` unit vectors.
        weights: ``[size]`` quadrature weights, summing to ``4 pi`` (a few orders have some
            negative weights; exactness does not depend on their sign).
    """

    order: int
    points: np.ndarray
    weights: np.ndarray

    @property
    def size(self) -> int:
        return len(self.weights)

    @property
    def name(self) -> str:
        return f"lebedev order {self.order} ({self.size} points)"

    @classmethod
    def build(cls, order: int) -> "LebedevGrid":
        if order not in LEBEDEV_ORDERS:
            raise ValueError(f"Lebedev order must be one of {LEBEDEV_ORDERS}, got {order}")
        shipped = shipped_rule(order)  # SciPy's numbers, without importing scipy.integrate
        if shipped is not None:
            return cls(order, shipped[0].copy(), shipped[1].copy())
        rule = _lebedev_rule()
        if rule is None:
            raise ValueError(
                f"Lebedev grids of order > {SHIPPED_ORDERS[-1]} need scipy >= 1.15 (scipy.integrate.lebedev_rule)"
            )
        x, w = rule(order)
        return cls(order, np.ascontiguousarray(x.T), np.ascontiguousarray(w))

    @classmethod
    def exact(cls, degree: int) -> "LebedevGrid":
        """The smallest Lebedev rule exact for total ``degree``."""
        order = lebedev_order(degree)
        if order is None:
            raise ValueError(
                f"no Lebedev rule is exact for degree {degree} (orders up to {LEBEDEV_ORDERS[-1]}; "
                "scipy >= 1.15 needed)"
            )
        return cls.build(order)

    def harmonics(self, l_max: int) -> np.ndarray:
        """``[size, (l_max+1)**2]`` orthonormal real SH at the grid points (float64)."""
        return spherical_harmonics(l_max, torch.from_numpy(self.points), normalize=False).numpy()

    def is_exact_for(self, degree: int) -> bool:
        return self.order >= degree


Grid = SphereGrid | LebedevGrid


def smallest_exact_grid(degree: int) -> Grid:
    """The exact grid with the fewest points for total ``degree`` (Gauss-Legendre on a tie)."""
    gl = SphereGrid.exact(degree)
    order = lebedev_order(degree)
    if order is not None and LebedevGrid.build(order).size < gl.size:
        return LebedevGrid.build(order)
    return gl


def antipodal_halves(points: np.ndarray, weights: np.ndarray, tol: float = 1e-12) -> np.ndarray | None:
    """One point of every antipodal pair, ``[size / 2]`` indices in grid order, when every point's
    antipode ``-x`` is also a grid point with the same weight (to ``tol``); else ``None``.

    On such a grid ``Y_lm(-x) = (-1)^l Y_lm(x)`` halves the work of synthesis and projection: the
    even- and odd-degree parts of a function are summed on one half and give its values on both
    (:mod:`gaunt_md.model.kernels.product_basis`). Lebedev rules (octahedral symmetry with
    inversion) and Gauss-Legendre grids with an even ``n_alpha`` have it.
    """
    n = len(points)
    if n % 2:
        return None
    # every point against every negated point: the grids here have at most a few hundred points
    distance = np.linalg.norm(points[:, None, :] + points[None, :, :], axis=-1)
    partner = distance.argmin(axis=1)
    if not (np.all(distance[np.arange(n), partner] < tol) and np.all(partner[partner] == np.arange(n))
            and np.all(partner != np.arange(n)) and np.allclose(weights[partner], weights, rtol=0, atol=tol)):
        return None
    return np.flatnonzero(np.arange(n) < partner)


def check_grid(grid: Grid, degree: int, *, allow_inexact: bool = False) -> None:
    """Raise ``ValueError`` if ``grid`` cannot integrate total ``degree`` exactly."""
    if allow_inexact or grid.is_exact_for(degree):
        return
    if isinstance(grid, LebedevGrid):
        raise ValueError(
            f"a Lebedev grid of order {grid.order} is not exact for total degree {degree}; "
            f"need order >= {degree}"
        )
    need = exact_grid_size(degree)
    raise ValueError(
        f"a {grid.n_beta}x{grid.n_alpha} grid is not exact for total degree {degree}; "
        f"need at least {need[0]}x{need[1]} (n_beta >= ceil((D+1)/2), n_alpha >= D+1)"
    )


