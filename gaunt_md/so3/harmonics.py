r"""Real spherical harmonics in e3nn's basis and order.

Conventions (fixed for the whole project):

* flat index ``l*l + l + m`` with ``m = -l..l``; a degree-``L`` feature has ``(L+1)**2`` entries;
* e3nn's frame: ``y`` is the polar axis and the ``l = 1`` block is ordered ``(x, y, z)``;
* **orthonormal** ("integral") normalisation inside :mod:`gaunt_md.so3`:
  :math:`\int_{S^2} Y_{lm} Y_{l'm'} \, d\Omega = \delta_{ll'}\delta_{mm'}`, so
  ``Y_00 = 1/sqrt(4 pi)``. e3nn's ``"component"`` harmonics are ``sqrt(4 pi)`` times these.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3


def num_coefficients(l_max: int) -> int:
    """Number of real SH coefficients up to degree ``l_max``: ``(l_max + 1)**2``."""
    return (l_max + 1) ** 2


def degree_of_index(l_max: int) -> torch.Tensor:
    """``[(l_max+1)**2]`` int64 tensor giving the degree ``l`` of every flat index."""
    return torch.cat([torch.full((2 * l + 1,), l, dtype=torch.long) for l in range(l_max + 1)])


def spherical_harmonics(l_max: int, vectors: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """Orthonormal real spherical harmonics ``[..., 3] -> [..., (l_max+1)**2]``.

    ``vectors`` need not be unit length when ``normalize`` is true (the default).
    """
    y = o3.spherical_harmonics(list(range(l_max + 1)), vectors, normalize=normalize, normalization="component")
    return y / math.sqrt(4.0 * math.pi)
