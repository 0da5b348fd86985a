r"""Route A of the design note (gtp.md section 2): the Gaunt product by 2D Fourier series and FFT.

Kept as an independent oracle for :class:`~gaunt_md.so3.gaunt.GauntProduct` and for the benchmark;
the grid route is faster (gtp.md 3.5, 6.8). With the "double Fourier sphere" extension
:math:`\tilde f(\theta, \varphi) = f(\sin\theta\sin\varphi, \cos\theta, \sin\theta\cos\varphi)`
for :math:`\theta \in [0, 2\pi)` (e3nn's frame, ``y`` polar), every harmonic of degree ``l`` is a 2D
trigonometric polynomial, and a product of such functions is a 2D linear convolution of their
coefficient arrays:

.. math::

    \tilde Y_{lm}(\theta, \varphi) = \sum_{|u|, |v| \le l} y^{lm}_{uv} e^{i(u\theta + v\varphi)}, \qquad
    F_h = F_x \circledast F_y, \qquad
    z_{lm} = \sum_{uv} F_h[u, v]\, \zeta^{lm}_{uv},

    \zeta^{lm}_{uv} = \int_0^\pi\!\!\int_0^{2\pi} e^{i(u\theta + v\varphi)} Y_{lm} \sin\theta\, d\varphi\, d\theta
                    = 2\pi \sum_{u'} y^{lm}_{u', -v} K(u + u'),
    \quad K(n) = \int_0^\pi e^{in\theta}\sin\theta\, d\theta
               = \tfrac{2}{1 - n^2}\ (n \text{ even}),\ \pm\tfrac{i\pi}{2}\ (n = \pm1),\ 0\ \text{otherwise}.

Tables (float64, built once): ``y`` by evaluating e3nn's harmonics (Cartesian, so the sign of odd
``|m|`` on ``theta > pi`` comes out right) on the ``(2L+1)^2`` torus and taking ``FFT2 / N^2``
(exact: the functions are band-limited to ``|u|, |v| <= L``); ``zeta`` from the closed form above.

=============  ==============================================  ====================================
symbol         meaning                                         code
=============  ==============================================  ====================================
L_p            ``l1_max + l2_max``, degree of the product
n              ``2 L_p + 1``: convolution size (no wrap-around)
F_x[u, v]      coefficients, ``u`` wrapped mod ``n``, ``v >= 0``  ``[B, n, L_p + 1]`` complex
sh2f           ``n^2 y[u, v]`` on ``|u| <= L``, ``0 <= v <= L``    ``sh2f_{1,2}`` ``[K, 2L+1, L+1, 2]``
zeta_half      ``zeta[u, v] + conj(zeta[-u, -v])`` (v > 0), /n^2   ``zeta`` ``[n, L_out+1, K_out, 2]``
=============  ==============================================  ====================================

The grid functions are real, so the FFTs are real-input ones: values on the ``n x n`` torus are
``irfft2`` of the half spectrum, the pointwise product is real, ``rfft2`` gives its half spectrum,
and the Hermitian half of ``zeta`` folds the ``v < 0`` terms in. Complex tables are stored as
real ``[..., 2]`` buffers so that ``module.to(torch.float32)`` keeps them intact. The SH-to-Fourier
step here is a dense ``[K, (2L+1)(L+1)]`` matmul (``O(L^4)`` per row), not the ``O(L^3)``
per-order contraction of the official code; the FFT and the ``zeta`` step are as in the paper.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gaunt_md.so3.harmonics import num_coefficients, spherical_harmonics


def torus_points(n: int) -> np.ndarray:
    """``[n, n, 3]`` points ``r(theta_a, phi_b)``, ``theta_a = phi_a = 2 pi a / n``, in e3nn's frame."""
    t = 2.0 * np.pi * np.arange(n) / n
    th, ph = t[:, None], t[None, :]
    return np.stack(
        [np.sin(th) * np.sin(ph), np.broadcast_to(np.cos(th), (n, n)), np.sin(th) * np.cos(ph)], axis=-1
    )


def sh_to_fourier(l_max: int) -> np.ndarray:
    """``y[k, u, v]``: 2D Fourier coefficients of ``Y_k`` on the DFS torus, ``u, v`` from ``-L..L``.

    ``[(L+1)**2, 2L+1, 2L+1]`` complex128; index ``u + L``, ``v + L``.
    """
    n = 2 * l_max + 1
    values = spherical_harmonics(l_max, torch.from_numpy(torus_points(n)), normalize=False).numpy()  # [n, n, K]
    coeff = np.fft.fft2(values, axes=(0, 1)) / n**2  # [u mod n, v mod n, K]
    coeff = np.fft.fftshift(coeff, axes=(0, 1))  # index u + L
    return np.ascontiguousarray(coeff.transpose(2, 0, 1))


def _k_integral(n: np.ndarray) -> np.ndarray:
    """``K(n) = int_0^pi e^{i n theta} sin(theta) d theta`` (complex)."""
    n = np.asarray(n)
    out = np.zeros(n.shape, dtype=np.complex128)
    even = n % 2 == 0
    out[even] = 2.0 / (1.0 - n[even].astype(np.float64) ** 2)
    out[n == 1] = 0.5j * np.pi
    out[n == -1] = -0.5j * np.pi
    return out


def zeta_table(l_out_max: int, l_prod: int) -> np.ndarray:
    r"""``zeta[k, u, v]`` for ``|u|, |v| <= l_prod``, ``[(L_out+1)**2, n, n]`` complex, index ``u + l_prod``."""
    y = sh_to_fourier(l_out_max)  # [K, 2L+1, 2L+1]
    lo, n = l_out_max, 2 * l_prod + 1
    u = np.arange(-l_prod, l_prod + 1)
    up = np.arange(-lo, lo + 1)
    kmat = _k_integral(u[:, None] + up[None, :])  # [u, u']
    zeta = np.zeros((y.shape[0], n, n), dtype=np.complex128)
    for v in range(-min(lo, l_prod), min(lo, l_prod) + 1):
        # zeta[k, u, v] = 2 pi sum_u' y[k, u', -v] K(u + u')
        zeta[:, :, v + l_prod] = 2.0 * np.pi * y[:, :, -v + lo] @ kmat.T
    return zeta


def _pack(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.stack([a.real, a.imag], axis=-1)))


class GauntProductFourier(nn.Module):
    """The Gaunt product by route A (2D Fourier + FFT); same signature and result as :class:`GauntProduct`.

    ``forward(x, y)``: ``[..., (l1_max+1)**2] x [..., (l2_max+1)**2] -> [..., (l_out_max+1)**2]``.
    """

    def __init__(self, l1_max: int, l2_max: int, l_out_max: int) -> None:
        super().__init__()
        if min(l1_max, l2_max, l_out_max) < 0:
            raise ValueError(f"degrees must be >= 0, got {(l1_max, l2_max, l_out_max)}")
        self.l1_max, self.l2_max, self.l_out_max = l1_max, l2_max, l_out_max
        self.l_prod = l1_max + l2_max
        self.n = 2 * self.l_prod + 1
        self.k1, self.k2, self.k_out = (num_coefficients(l) for l in (l1_max, l2_max, l_out_max))
        for name, l in (("sh2f_1", l1_max), ("sh2f_2", l2_max)):
            y = sh_to_fourier(l)[:, :, l:]  # [K, u + L, v >= 0]
            y = np.concatenate([y[:, l:], y[:, :l]], axis=1)  # u wrapped: 0..L, -L..-1
            self.register_buffer(name, _pack(y * self.n**2), persistent=False)  # [K, 2L+1, L+1, 2]
        zeta = zeta_table(l_out_max, self.l_prod)  # [K_out, u + Lp, v + Lp]
        lp, vmax = self.l_prod, min(l_out_max, self.l_prod)
        half = zeta[:, :, lp : lp + vmax + 1].copy()  # v >= 0
        half[:, :, 1:] += np.conj(zeta[:, ::-1][:, :, lp - np.arange(1, vmax + 1)])  # conj zeta[-u, -v]
        half = np.fft.ifftshift(half, axes=1) / self.n**2  # u wrapped mod n
        self.register_buffer("zeta", _pack(half.transpose(1, 2, 0)), persistent=False)  # [n, vmax+1, K_out, 2]

    def _spectrum(self, x: torch.Tensor, table: torch.Tensor, l_max: int) -> torch.Tensor:
        """``[B, K] -> [B, n, L_p + 1]`` complex half spectrum (``u`` wrapped, zero padded)."""
        b = x.shape[0]
        t = table.view(table.shape[0], -1, 2)
        blk = torch.complex(torch.matmul(x, t[:, :, 0]), torch.matmul(x, t[:, :, 1]))
        blk = blk.view(b, 2 * l_max + 1, l_max + 1)  # [B, u, v]
        gap = torch.zeros(b, self.n - 2 * l_max - 1, l_max + 1, dtype=blk.dtype, device=blk.device)
        full = torch.cat([blk[:, : l_max + 1], gap, blk[:, l_max + 1 :]], dim=1)  # [B, n, L+1]
        return F.pad(full, [0, self.l_prod - l_max])  # [B, n, Lp+1]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2, y2 = x.reshape(-1, self.k1), y.reshape(-1, self.k2)
        s = [self.n, self.n]
        fx = torch.fft.irfft2(self._spectrum(x2, self.sh2f_1, self.l1_max), s=s)  # [B, n, n] real values
        fy = torch.fft.irfft2(self._spectrum(y2, self.sh2f_2, self.l2_max), s=s)
        h = torch.fft.rfft2(fx * fy)[:, :, : self.zeta.shape[1]]  # [B, n, vmax+1] (times n^2)
        b = h.shape[0]
        hr, hi = h.real.reshape(b, -1), h.imag.reshape(b, -1)
        zeta = self.zeta.view(-1, self.k_out, 2)
        z = torch.matmul(hr, zeta[:, :, 0]) - torch.matmul(hi, zeta[:, :, 1])  # [B, K_out]
        return z.view(list(lead) + [self.k_out])

    def extra_repr(self) -> str:
        return f"l1_max={self.l1_max}, l2_max={self.l2_max}, l_out_max={self.l_out_max}, torus={self.n}x{self.n}"
