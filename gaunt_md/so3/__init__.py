"""SO(3) maths for gaunt_md: real spherical harmonics, exact sphere grids, the Gaunt product.

Knows nothing about atoms. Conventions: e3nn's real SH and order (flat index ``l*l + l + m``,
y polar), orthonormal normalisation, features ``[..., (L+1)**2]`` per channel.

=====================  ===========================================================================
module                 contents
=====================  ===========================================================================
``harmonics``          orthonormal real SH in e3nn's basis
``grid``               exact grids: Gauss-Legendre x uniform (``exact_grid_size``), Lebedev
``transforms``         ``GridTransform``: synthesis / adjoint on a grid (dense or separable)
``fused``              chunked, cache-resident products with any-order backward (eager mode)
``gaunt``              ``GauntProduct``, ``GauntPowers`` (route B), Gaunt coefficients
``fourier``            ``GauntProductFourier`` (route A, 2D Fourier + FFT): oracle and benchmark
=====================  ===========================================================================
"""

from gaunt_md.so3.fourier import GauntProductFourier
from gaunt_md.so3.gaunt import GauntPowers, GauntProduct, gaunt_coefficients, gaunt_tensor
from gaunt_md.so3.grid import LebedevGrid, SphereGrid, exact_grid_size, smallest_exact_grid
from gaunt_md.so3.harmonics import degree_of_index, num_coefficients, spherical_harmonics
from gaunt_md.so3.transforms import GridTransform

__all__ = [
    "GauntPowers",
    "GauntProduct",
    "GauntProductFourier",
    "GridTransform",
    "LebedevGrid",
    "SphereGrid",
    "degree_of_index",
    "exact_grid_size",
    "gaunt_coefficients",
    "gaunt_tensor",
    "num_coefficients",
    "smallest_exact_grid",
    "spherical_harmonics",
]
