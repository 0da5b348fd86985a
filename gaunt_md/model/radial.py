r"""Radial basis: Bessel functions times a smooth polynomial cutoff, then an MLP.

.. math::

    b_n(r) = \sqrt{2 / r_c}\, \frac{\sin(n \pi r / r_c)}{r}, \qquad
    u(x) = 1 - \tfrac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \tfrac{p(p+1)}{2} x^{p+2},
    \quad x = r / r_c,

with ``u(1) = u'(1) = u''(1) = 0``, so energies, forces and their first derivative are continuous
as a neighbour crosses the cutoff (MACE's ``PolynomialCutoff``, Klicpera et al. DimeNet, Eq. 8).
The MLP has no biases and ``SiLU(0) = 0``, so its output vanishes with the basis at ``r_c``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


class BesselBasis(nn.Module):
    """``[E] distances (Å) -> [E, num_basis]`` Bessel functions times the cutoff envelope."""

    def __init__(self, cutoff: float, num_basis: int = 8, p: int = 5) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)
        self.register_buffer("frequencies", math.pi / cutoff * torch.arange(1, num_basis + 1, dtype=torch.float64))
        self.prefactor = math.sqrt(2.0 / cutoff)

    def envelope(self, r: torch.Tensor) -> torch.Tensor:
        p = float(self.p)
        x = r / self.cutoff
        u = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * x.pow(self.p)
            + p * (p + 2.0) * x.pow(self.p + 1)
            - p * (p + 1.0) / 2.0 * x.pow(self.p + 2)
        )
        return u * (x < 1.0).to(r.dtype)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)  # [E, 1]
        basis = self.prefactor * torch.sin(self.frequencies * r) / r  # [E, n]
        return basis * self.envelope(r)


class Dense(nn.Module):
    """Bias-free ``x @ W / sqrt(fan_in)`` with ``W ~ N(0, 1)`` (e3nn-style normalisation)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out))
        self.scale = 1.0 / math.sqrt(n_in)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        # scale the (small) weight, not the (large) activation: one pass less over [E, n_out]
        return torch.matmul(x, self.weight * (self.scale * gain))

    def forward_columns(self, x: torch.Tensor, columns: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``forward(x)[:, columns]``, computed by gathering weight columns (not output columns)."""
        return torch.matmul(x, self.weight.index_select(1, columns) * (self.scale * gain))


class RadialMLP(nn.Module):
    """Bias-free SiLU MLP ``[E, widths[0]] -> [E, widths[-1]]``."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Dense(a, b) for a, b in zip(widths[:-1], widths[1:])])
        # SiLU of a unit normal has second moment ~0.3557: rescale to keep activations O(1)
        self.act_gain = 1.0 / math.sqrt(0.3557)

    def forward(self, x: torch.Tensor, columns: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``columns``: return only (or repeat) these output columns, ``MLP(x)[:, columns]``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            # the SiLU gain of the previous layer is folded into this layer's weight
            gain = 1.0 if i == 0 else self.act_gain
            if i == last and columns is not None:
                x = layer.forward_columns(x, columns, gain)
            else:
                x = layer(x, gain)
            if i < last:
                x = torch.nn.functional.silu(x)
        return x
