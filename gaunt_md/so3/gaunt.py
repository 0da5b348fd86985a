r"""The Gaunt tensor product on an exact sphere grid (route B of the design note, gtp.md section 3).

Each channel's coefficients ``x = (x_lm)_{l <= L}`` are read as a function on the sphere,
:math:`f_x(r) = \sum_{lm} x_{lm} Y_{lm}(r)`. The Gaunt product multiplies two such functions
pointwise and projects the result back onto the harmonics of degree ``<= L_out``:

.. math::

    z_{l_3 m_3} = \int_{S^2} f_x f_y \, Y_{l_3 m_3} \, d\Omega
                = \sum G[l_1 m_1, l_2 m_2, l_3 m_3] \, x_{l_1 m_1} \, y_{l_2 m_2},
    \qquad G = \int Y_{l_1 m_1} Y_{l_2 m_2} Y_{l_3 m_3} \, d\Omega .

On a grid that is exact for degree ``D = L1 + L2 + L_out`` (:mod:`gaunt_md.so3.grid`) this is
*exactly* the coupling by Gaunt coefficients, computed as two syntheses, a pointwise product and
one quadrature analysis (:mod:`gaunt_md.so3.transforms`):

==========  =====================================  =====================================
symbol      meaning                                code
==========  =====================================  =====================================
Y(r_g)      SH at grid point g                     ``GridTransform.table`` ``[K, G]``
w_g         quadrature weight                      ``GridTransform.weights`` ``[G]``
f_x(r_g)    synthesis                              ``t1.synthesis(x)`` ``[B, G]``
z           analysis of the pointwise product      ``t3.adjoint(f_x * w f_y)`` ``[B, K_out]``
==========  =====================================  =====================================

Inputs are ``[..., K]`` (any leading shape, e.g. ``[N, C, K]``; the model permutes its degree-major
features to that), flattened to rows.
By default the maps run as plain tensor ops (the same code eager, scripted and on GPUs). With
``fused=True`` (eager CPU only) the rows run in cache-sized chunks on a small pool of
single-threaded workers, with hand-written, any-order backward passes (:mod:`gaunt_md.so3.fused`).
Tables are built in float64 once per module and stored as (non-persistent) buffers, so
``.to(dtype, device)`` moves them; the module computes in the dtype of its buffers (cast the
module, not the input). Gaunt coefficients vanish unless ``l1 + l2 + l3`` is even: the product of
natural-parity inputs has natural parity, and the antisymmetric couplings (cross product) are
absent.
"""

from __future__ import annotations

import functools
from typing import Union

import numpy as np
import torch
from torch import nn

from gaunt_md.so3 import fused
from gaunt_md.so3.grid import Grid, LebedevGrid, SphereGrid, check_grid
from gaunt_md.so3.harmonics import num_coefficients
from gaunt_md.so3.transforms import GridTransform


GridSpec = Union[tuple[int, int], str, SphereGrid, LebedevGrid, None]


def _grid(degree: int, grid: GridSpec, allow_inexact: bool, separable: bool | None) -> Grid:
    """Resolve the ``grid`` argument of the product modules and check its exactness."""
    if grid is None:
        sphere = SphereGrid.exact(degree)
    elif isinstance(grid, str):
        kinds = {"gauss-legendre": SphereGrid.exact, "lebedev": LebedevGrid.exact}
        if grid not in kinds:
            raise ValueError(f"grid must be one of {sorted(kinds)}, a (n_beta, n_alpha) pair or a grid; got {grid!r}")
        sphere = kinds[grid](degree)
    elif isinstance(grid, (SphereGrid, LebedevGrid)):
        sphere = grid
    else:
        sphere = SphereGrid.build(*grid)
    check_grid(sphere, degree, allow_inexact=allow_inexact)
    return sphere


def _grid_shape(sphere: Grid) -> tuple[int, ...]:
    return (sphere.n_beta, sphere.n_alpha) if isinstance(sphere, SphereGrid) else (sphere.size,)


class GauntProduct(nn.Module):
    """Channel-wise Gaunt product ``[..., (l1_max+1)**2] x [..., (l2_max+1)**2] -> [..., (l_out_max+1)**2]``.

    Args:
        l1_max, l2_max: maximum degrees of the two inputs.
        l_out_max: maximum degree kept in the output (truncation is exact, never aliased).
        grid: ``None`` or ``"gauss-legendre"`` (default): the smallest exact Gauss-Legendre x
            uniform grid for ``D = l1_max + l2_max + l_out_max`` (route B of gtp.md, the same
            grid whatever SciPy is installed); ``"lebedev"``: the smallest exact Lebedev rule
            (opt-in, SciPy >= 1.15; about 0.7x the points, dense transforms only); a pair
            ``(n_beta, n_alpha)``: that Gauss-Legendre grid; or a grid object. A grid that is not
            exact for ``D`` raises ``ValueError`` unless ``allow_inexact=True`` (tests only).
        separable: force the separable (``True``, needs a Gauss-Legendre grid) or dense (``False``) transforms; ``None`` picks by size
            (:func:`~gaunt_md.so3.transforms.use_separable`).
        fused: opt in to the chunked CPU kernels of :mod:`gaunt_md.so3.fused` (a worker-thread
            pool with hand-written backward passes; eager CPU only). Off by default: at the
            model's sizes they were no faster, and on an oversubscribed machine with 2 torch
            threads a call of the ethanol model took 4.6 s fused against 0.42 s plain.

    ``forward(x, y)`` needs equal leading shapes. Passing the same tensor twice (``f_x^2``) shares
    the synthesis.
    """

    def __init__(
        self,
        l1_max: int,
        l2_max: int,
        l_out_max: int,
        *,
        grid: GridSpec = None,
        allow_inexact: bool = False,
        separable: bool | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__()
        self.fused = bool(fused)
        if min(l1_max, l2_max, l_out_max) < 0:
            raise ValueError(f"degrees must be >= 0, got {(l1_max, l2_max, l_out_max)}")
        self.l1_max, self.l2_max, self.l_out_max = l1_max, l2_max, l_out_max
        sphere = _grid(l1_max + l2_max + l_out_max, grid, allow_inexact, separable)
        self.grid_shape, self.grid_name = _grid_shape(sphere), sphere.name
        self.t1 = GridTransform(l1_max, sphere, separable=separable)
        self.t2 = GridTransform(l2_max, sphere, separable=separable)
        self.t3 = GridTransform(l_out_max, sphere, separable=separable)
        self.k1, self.k2, self.k_out = (num_coefficients(l) for l in (l1_max, l2_max, l_out_max))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2, y2 = x.reshape(-1, self.k1), y.reshape(-1, self.k2)  # [B, K1], [B, K2]
        if torch.jit.is_scripting() or not self.fused or x2.device.type != "cpu":
            z = self._plain(x2, y2)
        else:
            z = self._fused(x2, y2)
        return z.reshape(list(lead) + [self.k_out])  # [..., K_out]

    def _plain(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.t3.adjoint(self.t1.synthesis(x) * self.t2.synthesis(y, True))

    @torch.jit.unused
    def _fused(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fused.gaunt_product(x, y, self.t1, self.t2, self.t3)

    def extra_repr(self) -> str:
        return (
            f"l1_max={self.l1_max}, l2_max={self.l2_max}, l_out_max={self.l_out_max}, "
            f"grid={self.grid_name}"
        )


class GauntPowers(nn.Module):
    r"""Projected pointwise powers of one spherical function, all from one grid.

    ``forward(a)`` with ``a: [..., (l_max+1)**2]`` returns ``[..., nu_max, (l_out_max+1)**2]``:
    row ``nu - 1`` holds :math:`\mathrm{Proj}_{\le L_{out}}(f_a^{\nu})`, for ``nu = 1..nu_max``.
    The grid is exact for ``D = nu_max * l_max + l_out_max``, so every power is exact.
    This is the many-body (ACE/MACE product-basis) step of gtp.md section 3.4. Arguments as in
    :class:`GauntProduct`.
    """

    def __init__(
        self,
        l_max: int,
        nu_max: int,
        l_out_max: int,
        *,
        grid: GridSpec = None,
        allow_inexact: bool = False,
        separable: bool | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__()
        self.fused = bool(fused)
        if nu_max < 1:
            raise ValueError(f"nu_max must be >= 1, got {nu_max}")
        if min(l_max, l_out_max) < 0:
            raise ValueError(f"degrees must be >= 0, got l_max={l_max}, l_out_max={l_out_max}")
        self.l_max, self.nu_max, self.l_out_max = l_max, nu_max, l_out_max
        sphere = _grid(nu_max * l_max + l_out_max, grid, allow_inexact, separable)
        self.grid_shape, self.grid_name = _grid_shape(sphere), sphere.name
        self.t = GridTransform(l_max, sphere, separable=separable)
        self.t_out = GridTransform(l_out_max, sphere, separable=separable)
        self.k, self.k_out = num_coefficients(l_max), num_coefficients(l_out_max)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        lead = a.shape[:-1]
        a2 = a.reshape(-1, self.k)  # [B, K]
        if torch.jit.is_scripting() or not self.fused or a2.device.type != "cpu":
            z = self._plain(a2)
        else:
            z = self._fused(a2)
        return z.reshape(list(lead) + [self.nu_max, self.k_out])  # [..., nu, K_out]

    def _plain(self, a: torch.Tensor) -> torch.Tensor:
        f = self.t.synthesis(a)  # [B, G]
        p = f * self.t.weights
        powers = [p]
        for _ in range(self.nu_max - 1):
            p = p * f
            powers.append(p)
        g = self.t.grid_size
        z = self.t_out.adjoint(torch.stack(powers, dim=1).reshape(-1, g))  # [B nu, K_out]
        return z.reshape(a.shape[0], self.nu_max, self.k_out)

    @torch.jit.unused
    def _fused(self, a: torch.Tensor) -> torch.Tensor:
        return fused.gaunt_powers(a, self.t, self.t_out, self.nu_max)

    def extra_repr(self) -> str:
        return (
            f"l_max={self.l_max}, nu_max={self.nu_max}, l_out_max={self.l_out_max}, "
            f"grid={self.grid_name}"
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
