r"""The Gaunt tensor product on an exact sphere grid (route B of the design note, gtp.md section 3).

Each channel's coefficients ``x = (x_lm)_{l <= L}`` are read as a function on the sphere,
:math:`f_x(r) = \sum_{lm} x_{lm} Y_{lm}(r)`. The Gaunt product multiplies two such functions
pointwise and projects the result back onto the harmonics of degree ``<= L_out``:

.. math::

    z_{l_3 m_3} = \int_{S^2} f_x f_y \, Y_{l_3 m_3} \, d\Omega
                = \sum G[l_1 m_1, l_2 m_2, l_3 m_3] \, x_{l_1 m_1} \, y_{l_2 m_2},
    \qquad G = \int Y_{l_1 m_1} Y_{l_2 m_2} Y_{l_3 m_3} \, d\Omega .

On a grid that is exact for degree ``D = L1 + L2 + L_out`` (:mod:`gaunt_md.so3.grid`) this is
*exactly* the coupling by Gaunt coefficients, computed as two synthesis GEMMs, a pointwise
product and one analysis GEMM:

==========  =====================================  ===============================
symbol      meaning                                code
==========  =====================================  ===============================
Y(r_g)      SH at grid point g                     ``to_grid`` ``[K, G]``
W_g Y(r_g)  quadrature weight times SH             ``from_grid`` ``[G, K_out]``
f_x(r_g)    synthesis                              ``x @ to_grid``
z           analysis of the pointwise product      ``(f_x * f_y) @ from_grid``
==========  =====================================  ===============================

Tables are built in float64 once per module and stored as buffers, so ``.to(dtype, device)``
moves them; the module computes in the dtype of its buffers (cast the module, not the input).
Gaunt coefficients vanish unless ``l1 + l2 + l3`` is even: the product of natural-parity
inputs has natural parity, and the antisymmetric couplings (cross product) are absent.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from gaunt_md.so3.grid import SphereGrid, check_grid
from gaunt_md.so3.harmonics import num_coefficients


class GauntProduct(nn.Module):
    """Channel-wise Gaunt product ``[..., (l1_max+1)**2] x [..., (l2_max+1)**2] -> [..., (l_out_max+1)**2]``.

    Args:
        l1_max, l2_max: maximum degrees of the two inputs.
        l_out_max: maximum degree kept in the output (truncation is exact, never aliased).
        grid: optional ``(n_beta, n_alpha)`` override; a grid too small for
            ``D = l1_max + l2_max + l_out_max`` raises unless ``allow_inexact=True`` (tests only).
    """

    def __init__(
        self,
        l1_max: int,
        l2_max: int,
        l_out_max: int,
        *,
        grid: tuple[int, int] | None = None,
        allow_inexact: bool = False,
    ) -> None:
        super().__init__()
        self.l1_max, self.l2_max, self.l_out_max = l1_max, l2_max, l_out_max
        degree = l1_max + l2_max + l_out_max
        sphere = SphereGrid.build(*grid) if grid is not None else SphereGrid.exact(degree)
        check_grid(sphere, degree, allow_inexact=allow_inexact)
        self.grid_shape = (sphere.n_beta, sphere.n_alpha)
        y = sphere.harmonics(max(l1_max, l2_max, l_out_max))
        k1, k2, ko = (num_coefficients(l) for l in (l1_max, l2_max, l_out_max))
        self.register_buffer("to_grid_1", torch.from_numpy(np.ascontiguousarray(y[:, :k1].T)))  # [K1, G]
        self.register_buffer("to_grid_2", torch.from_numpy(np.ascontiguousarray(y[:, :k2].T)))  # [K2, G]
        self.register_buffer(
            "from_grid", torch.from_numpy(np.ascontiguousarray(sphere.weights[:, None] * y[:, :ko]))
        )  # [G, K_out]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f = torch.matmul(x, self.to_grid_1) * torch.matmul(y, self.to_grid_2)  # [..., G]
        return torch.matmul(f, self.from_grid)  # [..., K_out]

    def extra_repr(self) -> str:
        return (
            f"l1_max={self.l1_max}, l2_max={self.l2_max}, l_out_max={self.l_out_max}, "
            f"grid={self.grid_shape[0]}x{self.grid_shape[1]}"
        )


class GauntPowers(nn.Module):
    r"""Projected pointwise powers of one spherical function, all from one grid.

    ``forward(a)`` with ``a: [..., (l_max+1)**2]`` returns ``[..., nu_max, (l_out_max+1)**2]``:
    row ``nu - 1`` holds :math:`\mathrm{Proj}_{\le L_{out}}(f_a^{\nu})`, for ``nu = 1..nu_max``.
    The grid is exact for ``D = nu_max * l_max + l_out_max``, so every power is exact.
    This is the many-body (ACE/MACE product-basis) step of gtp.md section 3.4.
    """

    def __init__(
        self,
        l_max: int,
        nu_max: int,
        l_out_max: int,
        *,
        grid: tuple[int, int] | None = None,
        allow_inexact: bool = False,
    ) -> None:
        super().__init__()
        if nu_max < 1:
            raise ValueError(f"nu_max must be >= 1, got {nu_max}")
        self.l_max, self.nu_max, self.l_out_max = l_max, nu_max, l_out_max
        degree = nu_max * l_max + l_out_max
        sphere = SphereGrid.build(*grid) if grid is not None else SphereGrid.exact(degree)
        check_grid(sphere, degree, allow_inexact=allow_inexact)
        self.grid_shape = (sphere.n_beta, sphere.n_alpha)
        y = sphere.harmonics(max(l_max, l_out_max))
        k, ko = num_coefficients(l_max), num_coefficients(l_out_max)
        self.register_buffer("to_grid", torch.from_numpy(np.ascontiguousarray(y[:, :k].T)))  # [K, G]
        self.register_buffer(
            "from_grid", torch.from_numpy(np.ascontiguousarray(sphere.weights[:, None] * y[:, :ko]))
        )  # [G, K_out]

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        f = torch.matmul(a, self.to_grid)  # [..., G]
        powers = [f]
        for _ in range(self.nu_max - 1):
            powers.append(powers[-1] * f)
        return torch.matmul(torch.stack(powers, dim=-2), self.from_grid)  # [..., nu, K_out]

    def extra_repr(self) -> str:
        return (
            f"l_max={self.l_max}, nu_max={self.nu_max}, l_out_max={self.l_out_max}, "
            f"grid={self.grid_shape[0]}x{self.grid_shape[1]}"
        )


@functools.lru_cache(maxsize=None)
def _gaunt_block_np(l1: int, l2: int, l3: int) -> np.ndarray:
    sphere = SphereGrid.exact(l1 + l2 + l3)
    y = sphere.harmonics(max(l1, l2, l3))
    b1, b2, b3 = (y[:, l * l : (l + 1) ** 2] for l in (l1, l2, l3))
    block = np.einsum("g,ga,gb,gc->abc", sphere.weights, b1, b2, b3)
    block[np.abs(block) < 1e-15] = 0.0
    return block


def gaunt_coefficients(l1: int, l2: int, l3: int) -> torch.Tensor:
    """Dense Gaunt block ``[2l1+1, 2l2+1, 2l3+1]`` (float64): the integral of three orthonormal real SH."""
    if min(l1, l2, l3) < 0:
        raise ValueError(f"degrees must be >= 0, got {(l1, l2, l3)}")
    return torch.from_numpy(_gaunt_block_np(l1, l2, l3).copy())


def gaunt_tensor(l1_max: int, l2_max: int, l_out_max: int) -> torch.Tensor:
    """The full Gaunt tensor ``[(l1_max+1)**2, (l2_max+1)**2, (l_out_max+1)**2]`` (float64)."""
    out = torch.zeros(num_coefficients(l1_max), num_coefficients(l2_max), num_coefficients(l_out_max), dtype=torch.float64)
    for l1 in range(l1_max + 1):
        for l2 in range(l2_max + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, l_out_max) + 1):
                if (l1 + l2 + l3) % 2 == 0:
                    out[l1 * l1 : (l1 + 1) ** 2, l2 * l2 : (l2 + 1) ** 2, l3 * l3 : (l3 + 1) ** 2] = gaunt_coefficients(l1, l2, l3)
    return out
