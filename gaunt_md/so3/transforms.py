r"""Sphere-grid transforms: SH coefficients to grid values (synthesis) and back (adjoint).

On any grid (Lebedev or Gauss-Legendre, :mod:`gaunt_md.so3.grid`) the transforms are dense GEMMs
with the ``[K, G]`` table of harmonics. On a :class:`~gaunt_md.so3.grid.SphereGrid` (``n_beta``
Gauss-Legendre rows x ``n_alpha`` uniform columns, point ``g = i * n_alpha + j``) e3nn's real
harmonics also factorise (gtp.md section 3.3), which allows separable transforms:

.. math::

    Y_{lm}(\beta_i, \alpha_j) = P_{lm}(\beta_i)\, S_m(\alpha_j), \qquad
    S_m(\alpha) = \sqrt2 \sin(|m|\alpha)\ (m<0),\ \ 1\ (m=0),\ \ \sqrt2 \cos(m\alpha)\ (m>0).

=============  ===================================================  ===============================
symbol         meaning                                              code
=============  ===================================================  ===============================
B              rows (nodes x channels, flattened)
K              ``(L+1)**2`` coefficients, flat index ``l*l + l + m``
M              ``2L+1`` orders, slot ``a = m + L``
G              ``n_beta * n_alpha`` grid points, beta-major
Y[k, g]        :math:`Y_k(r_g)`                                       ``table`` ``[K, G]``
w_g            quadrature weight, :math:`w^{GL}_i \cdot 2\pi/n_\alpha`  ``weights`` ``[G]``
P[a, l, i]     :math:`P_{lm}(\beta_i)`, zero for ``l < |m|``             ``legendre`` ``[M, L+1, n_beta]``
S[a, j]        :math:`S_m(\alpha_j)`                                   ``alpha`` ``[M, n_alpha]``
=============  ===================================================  ===============================

A :class:`GridTransform` applies three maps, all exact on an exact grid:

* ``synthesis(x)``: :math:`f_g = \sum_k x_k Y_k(r_g)`, ``[B, K] -> [B, G]``;
* ``synthesis(x, weighted=True)``: :math:`w_g f_g` (weights folded into the table);
* ``adjoint(h)``: :math:`z_k = \sum_g h_g Y_k(r_g)`, ``[B, G] -> [B, K]``. The quadrature
  analysis (projection) of a grid function ``f`` is ``adjoint(w * f)``.

Two equivalent implementations: plain tensor ops use dense tables; the chunked kernels of
:mod:`gaunt_md.so3.fused` choose by size (:func:`use_separable`):

* **dense**: one GEMM with ``Y`` (``O(K G)`` per row);
* **separable**: gather ``x`` to ``[M, B, L+1]``, one batched Legendre matmul per order, then one
  GEMM over orders in alpha, ``O(M (L+1) n_beta + M G)`` per row; the adjoint runs the steps
  transposed.

Tables are derived from e3nn's own harmonics (the Legendre factor is fitted on an exact alpha rule
and the factorisation checked to 1e-12), built in float64 and stored as non-persistent buffers:
``.to(dtype)`` casts them; cast the module, not the input.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gaunt_md.so3.grid import Grid, LebedevGrid
from gaunt_md.so3.harmonics import num_coefficients, spherical_harmonics


def alpha_basis(l_max: int, alpha: np.ndarray) -> np.ndarray:
    """``S[a, j] = S_m(alpha_j)`` with ``m = a - l_max``: ``[2 l_max + 1, len(alpha)]`` float64."""
    m = np.arange(-l_max, l_max + 1)[:, None]
    s2 = math.sqrt(2.0)
    return np.where(m < 0, s2 * np.sin(-m * alpha[None, :]), np.where(m == 0, 1.0, s2 * np.cos(m * alpha[None, :])))


def legendre_table(l_max: int, cos_beta: np.ndarray) -> np.ndarray:
    """``P[a, l, i]`` with ``Y_lm(beta_i, alpha) = P[m + l_max, l, i] * S_m(alpha)``, float64.

    Fitted from e3nn's harmonics on the exact alpha rule with ``2 l_max + 2`` points, then checked.
    """
    n_fit = 2 * l_max + 2
    alpha = 2.0 * np.pi * np.arange(n_fit) / n_fit
    sin_b = np.sqrt(np.clip(1.0 - cos_beta**2, 0.0, None))
    pts = np.stack(
        [
            sin_b[:, None] * np.sin(alpha)[None, :],
            np.broadcast_to(cos_beta[:, None], (len(cos_beta), n_fit)),
            sin_b[:, None] * np.cos(alpha)[None, :],
        ],
        axis=-1,
    )  # [n_beta, n_fit, 3]
    y = spherical_harmonics(l_max, torch.from_numpy(pts), normalize=False).numpy()  # [n_beta, n_fit, K]
    s = alpha_basis(l_max, alpha)  # [M, n_fit]; rows orthogonal, squared norm n_fit
    table = np.zeros((2 * l_max + 1, l_max + 1, len(cos_beta)))
    for l in range(l_max + 1):
        for m in range(-l, l + 1):
            table[m + l_max, l] = y[:, :, l * l + l + m] @ s[m + l_max] / n_fit
    recon = np.einsum("ali,aj->ijal", table, s)  # [n_beta, n_fit, M, L+1]
    for l in range(l_max + 1):
        err = np.abs(recon[:, :, l_max - l : l_max + l + 1, l] - y[:, :, l * l : (l + 1) ** 2]).max()
        if err > 1e-12:
            raise RuntimeError(f"e3nn harmonics do not factorise as P(beta) S_m(alpha) at l={l} (err {err:.1e})")
    return table


def _slot_indices(l_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``gather [M*(L+1)]``: flat ``k`` of slot ``(a, l)`` (0 where ``l < |m|``, whose Legendre
    row is zero); ``scatter [K]``: slot of coefficient ``k``."""
    gather = np.zeros((2 * l_max + 1, l_max + 1), dtype=np.int64)
    scatter = np.zeros(num_coefficients(l_max), dtype=np.int64)
    for l in range(l_max + 1):
        for m in range(-l, l + 1):
            gather[m + l_max, l] = l * l + l + m
            scatter[l * l + l + m] = (m + l_max) * (l_max + 1) + l
    return gather.reshape(-1), scatter


def transform_cost(l_max: int, n_beta: int, n_alpha: int) -> tuple[int, int]:
    """Multiply-adds per row ``(dense, separable)`` of one synthesis or adjoint."""
    m = 2 * l_max + 1
    return num_coefficients(l_max) * n_beta * n_alpha, m * (l_max + 1) * n_beta + m * n_beta * n_alpha


def use_separable(l_max: int, n_beta: int, n_alpha: int) -> tuple[bool, bool]:
    """Size rule ``(synthesis, adjoint)`` for the chunked kernels of :mod:`gaunt_md.so3.fused`.

    Measured per chunk on CPU (one thread, float32, ``~1 MB`` grid buffers): a dense GEMM runs near
    peak; the separable path's gathers, batched ``[B, L+1] @ [L+1, n_beta]`` matmuls and
    ``K = 2L+1`` alpha GEMM do not. The separable adjoint won from flop ratio 2 (``L = 4`` for
    ``L x L -> L``: 69 vs 104 us), the separable synthesis only from ratio 3.5 (``L = 8``: 146 vs
    201 us; ``L = 7``: 186 vs 157 us). With plain tensor ops on whole ``[N C, G]`` tensors the
    gathers, copies and their backward (scatter-add) cost more than the saved flops: dense won at
    every ``L <= 12`` (``N = 1000, C = 128``, forward+backward, e.g. ``L = 8``: 1.04 s dense,
    1.22 s separable adjoint, 1.56 s both separable), so plain ops always use dense tables.
    """
    dense, sep = transform_cost(l_max, n_beta, n_alpha)
    return dense >= 3.4 * sep, dense >= 2.0 * sep


def _buffer(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


class GridTransform(nn.Module):
    """Synthesis and adjoint between degree-``<= l_max`` coefficients and one sphere grid.

    Args:
        l_max: maximum degree of the coefficients.
        grid: the quadrature grid (exactness is the caller's business, see ``check_grid``);
            separable transforms need a Gauss-Legendre :class:`~gaunt_md.so3.grid.SphereGrid`.
        separable: force the separable (``True``) or dense (``False``) path for both maps; ``None``
            picks each by size (:func:`use_separable`).
    """

    def __init__(self, l_max: int, grid: Grid, *, separable: bool | None = None) -> None:
        super().__init__()
        self.l_max = l_max
        self.grid_size = grid.size  # G
        self.num_coefficients = num_coefficients(l_max)  # K
        y = grid.harmonics(l_max)[:, : self.num_coefficients].T  # [K, G]
        self.register_buffer("weights", _buffer(grid.weights), persistent=False)  # [G]
        self.register_buffer("table", _buffer(y), persistent=False)  # [K, G]
        self.register_buffer("table_w", _buffer(y * grid.weights), persistent=False)  # [K, G]
        if isinstance(grid, LebedevGrid):  # no product structure: dense only
            if separable:
                raise ValueError(f"separable transforms need a Gauss-Legendre grid, got {grid.name}")
            self.n_beta, self.n_alpha = 0, 0
            self.separable_synthesis = self.separable_adjoint = False
            self.chunk_separable_synthesis = self.chunk_separable_adjoint = False
            leg, alpha_s = np.zeros((0, 0, 0)), np.zeros((0, 0))
            w_beta = np.zeros(0)
            gather, scatter = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        else:
            self.n_beta, self.n_alpha = grid.n_beta, grid.n_alpha
            if separable is None:  # plain ops: dense (measured faster up to L = 12); chunks: by size
                self.separable_synthesis = self.separable_adjoint = False
                self.chunk_separable_synthesis, self.chunk_separable_adjoint = use_separable(
                    l_max, grid.n_beta, grid.n_alpha
                )
            else:
                self.separable_synthesis = self.separable_adjoint = bool(separable)
                self.chunk_separable_synthesis = self.chunk_separable_adjoint = bool(separable)
            cos_beta = grid.points.reshape(grid.n_beta, grid.n_alpha, 3)[:, 0, 1]
            w_beta = grid.weights.reshape(grid.n_beta, grid.n_alpha)[:, 0]  # GL weight * 2 pi / n_alpha
            leg = legendre_table(l_max, cos_beta)  # [M, L+1, n_beta]
            alpha_s = alpha_basis(l_max, 2.0 * np.pi * np.arange(grid.n_alpha) / grid.n_alpha)  # [M, n_alpha]
            gather, scatter = _slot_indices(l_max)
        self.register_buffer("legendre", _buffer(leg), persistent=False)  # [M, L+1, n_beta]
        self.register_buffer("legendre_w", _buffer(leg * w_beta), persistent=False)  # [M, L+1, n_beta]
        self.register_buffer("alpha", _buffer(alpha_s), persistent=False)  # [M, n_alpha]
        self.register_buffer("gather", torch.from_numpy(gather), persistent=False)  # [M (L+1)]
        self.register_buffer("scatter", torch.from_numpy(scatter), persistent=False)  # [K]

    def synthesis(self, x: torch.Tensor, weighted: bool = False) -> torch.Tensor:
        """``[B, K] -> [B, G]``: grid values, times the quadrature weights if ``weighted``."""
        if self.separable_synthesis:
            return self.synthesis_separable(x, weighted)
        return torch.matmul(x, self.table_w if weighted else self.table)

    def adjoint(self, h: torch.Tensor) -> torch.Tensor:
        """``[B, G] -> [B, K]``: ``z_k = sum_g h_g Y_k(r_g)`` (no weights)."""
        if self.separable_adjoint:
            return self.adjoint_separable(h)
        return torch.matmul(h, self.table.t())

    def synthesis_separable(self, x: torch.Tensor, weighted: bool = False) -> torch.Tensor:
        """:meth:`synthesis` by a Legendre matmul per order, then one GEMM over orders in alpha."""
        b = x.shape[0]
        m, l1 = self.legendre.shape[0], self.legendre.shape[1]
        xs = x.index_select(1, self.gather).view(b, m, l1).transpose(0, 1)  # [M, B, L+1]
        f = torch.bmm(xs, self.legendre_w if weighted else self.legendre)  # [M, B, n_beta]
        f = torch.matmul(f.reshape(m, b * self.n_beta).t(), self.alpha)  # [B n_beta, n_alpha]
        return f.view(b, self.n_beta * self.n_alpha)

    def adjoint_separable(self, h: torch.Tensor) -> torch.Tensor:
        """:meth:`adjoint` by one GEMM over alpha, then a Legendre matmul per order."""
        b = h.shape[0]
        m, l1 = self.legendre.shape[0], self.legendre.shape[1]
        hm = torch.matmul(self.alpha, h.reshape(b * self.n_beta, self.n_alpha).t())  # [M, B n_beta]
        z = torch.bmm(self.legendre, hm.view(m, b, self.n_beta).transpose(1, 2))  # [M, L+1, B]
        return z.view(m * l1, b).index_select(0, self.scatter).t()  # [B, K] (transposed view)

    def extra_repr(self) -> str:
        return (
            f"l_max={self.l_max}, grid points={self.grid_size}, separable synthesis/adjoint: "
            f"plain {self.separable_synthesis}/{self.separable_adjoint}, "
            f"chunked {self.chunk_separable_synthesis}/{self.chunk_separable_adjoint}"
        )
