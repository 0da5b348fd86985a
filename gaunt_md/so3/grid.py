r"""Gauss-Legendre x uniform quadrature grids on the sphere, sized to be exact.

A grid point is :math:`r = (\sin\beta \sin\alpha,\ \cos\beta,\ \sin\beta \cos\alpha)` (e3nn's
``s2_grid`` frame: :math:`\beta` from the polar ``+y`` axis, :math:`\alpha = 0` along ``+z``) with
:math:`\cos\beta_i` the Gauss-Legendre nodes and :math:`\alpha_j = 2\pi j / n_\alpha`. The weight
of point ``(i, j)`` is :math:`w_i \cdot 2\pi / n_\alpha` (weights sum to :math:`4\pi`).

**Exactness rule** (design note gtp.md section 3.2). The Gaunt projection integrates a product of
band-limited functions of total degree ``D`` (``D = L1 + L2 + L_out`` for a product,
``D = nu * L_A + L_out`` for a ``nu``-fold power). After the alpha sum the beta integrand is a
polynomial of degree ``<= D`` in ``cos(beta)``, so the grid is exact iff

    n_beta  >= ceil((D + 1) / 2)      (Gauss-Legendre is exact to degree 2 n_beta - 1)
    n_alpha >= D + 1                  (the uniform rule integrates e^{ik alpha}, |k| <= D)

One point fewer in either direction gives O(1) errors, not a crash; :func:`exact_grid_size`
computes the minimum and :class:`SphereGrid` refuses a smaller grid unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gaunt_md.so3.harmonics import spherical_harmonics


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


def check_grid(grid: SphereGrid, degree: int, *, allow_inexact: bool = False) -> None:
    """Raise ``ValueError`` if ``grid`` cannot integrate total ``degree`` exactly."""
    if not allow_inexact and not grid.is_exact_for(degree):
        need = exact_grid_size(degree)
        raise ValueError(
            f"a {grid.n_beta}x{grid.n_alpha} grid is not exact for total degree {degree}; "
            f"need at least {need[0]}x{need[1]} (n_beta >= ceil((D+1)/2), n_alpha >= D+1)"
        )


