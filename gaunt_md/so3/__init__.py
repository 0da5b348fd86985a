"""SO(3) maths for gaunt_md: real spherical harmonics, exact sphere grids, the Gaunt product.

Knows nothing about atoms. Conventions: e3nn's real SH and order (flat index ``l*l + l + m``,
y polar), orthonormal normalisation, features ``[..., (L+1)**2]`` per channel.
"""

from gaunt_md.so3.gaunt import GauntPowers, GauntProduct, gaunt_coefficients, gaunt_tensor
from gaunt_md.so3.grid import SphereGrid, exact_grid_size
from gaunt_md.so3.harmonics import degree_of_index, num_coefficients, spherical_harmonics

__all__ = [
    "GauntPowers",
    "GauntProduct",
    "SphereGrid",
    "degree_of_index",
    "exact_grid_size",
    "gaunt_coefficients",
    "gaunt_tensor",
    "num_coefficients",
    "spherical_harmonics",
]
