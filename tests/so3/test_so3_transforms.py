"""Grid transforms, the chunked (fused) evaluation, and route A's tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import einsum_product

from gaunt_md.so3 import GauntPowers, GauntProduct, GridTransform, SphereGrid, fused
from gaunt_md.so3.fourier import sh_to_fourier, torus_points, zeta_table
from gaunt_md.so3.harmonics import spherical_harmonics
from gaunt_md.so3.transforms import use_separable

F64 = torch.float64


@pytest.mark.parametrize("l_max", [0, 1, 4, 7])
def test_separable_equals_dense_and_adjoint_is_transpose(gen, l_max):
    grid = SphereGrid.exact(3 * l_max + 1)
    dense, sep = GridTransform(l_max, grid, separable=False), GridTransform(l_max, grid, separable=True)
    x = torch.randn(6, (l_max + 1) ** 2, generator=gen, dtype=F64)
    h = torch.randn(6, grid.size, generator=gen, dtype=F64)
    for weighted in (False, True):
        torch.testing.assert_close(sep.synthesis(x, weighted), dense.synthesis(x, weighted), atol=1e-13, rtol=0)
    torch.testing.assert_close(sep.adjoint(h), dense.adjoint(h), atol=1e-12, rtol=0)
    torch.testing.assert_close((dense.synthesis(x) * h).sum(1), (x * dense.adjoint(h)).sum(1), atol=1e-12, rtol=0)
    # analysis after synthesis is the identity on an exact grid (degree 2L)
    torch.testing.assert_close(sep.adjoint(sep.synthesis(x, True)), x, atol=1e-13, rtol=0)


def test_size_rule_keeps_small_products_dense():
    for l_max in range(13):
        grid = SphereGrid.exact(3 * l_max)  # L x L -> L
        assert use_separable(l_max, grid.n_beta, grid.n_alpha) == (l_max >= 8, l_max >= 4), l_max
        t = GridTransform(l_max, grid)
        assert (t.separable_synthesis, t.separable_adjoint) == (False, False)  # plain ops: dense
        assert (t.chunk_separable_synthesis, t.chunk_separable_adjoint) == (l_max >= 8, l_max >= 4)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Intra-op threads of the caller: 2 runs the fused kernels on the worker pool."""
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.mark.parametrize("n", [0, 1, 150, 333])
def test_chunk_boundaries(gen, monkeypatch, threads, n):
    monkeypatch.setattr(fused, "CHUNK_BYTES", 1)  # 64 rows per chunk
    x = torch.randn(n, 16, generator=gen, dtype=F64, requires_grad=True)
    y = torch.randn(n, 9, generator=gen, dtype=F64, requires_grad=True)
    for separable in (False, True):
        m = GauntProduct(3, 2, 3, separable=separable, fused=True)
        z = m(x, y)
        assert z.shape == (n, 16)
        torch.testing.assert_close(z, einsum_product(x, y, 3, 2, 3), atol=1e-12, rtol=0)
        cot = torch.randn(z.shape, generator=gen, dtype=F64)
        got = torch.autograd.grad(z, (x, y), cot)
        want = torch.autograd.grad(m._plain(x, y), (x, y), cot)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=1e-12, rtol=0)
        p = GauntPowers(3, 3, 2, separable=separable, fused=True)
        zp = p(x)
        assert zp.shape == (n, 3, 9)
        torch.testing.assert_close(zp, p._plain(x), atol=1e-12, rtol=0)
        (g,) = torch.autograd.grad(zp.pow(2).sum(), x)
        (w,) = torch.autograd.grad(p._plain(x).pow(2).sum(), x)
        torch.testing.assert_close(g, w, atol=1e-11, rtol=0)


def test_leading_shapes_and_non_contiguous_inputs(gen):
    m = GauntProduct(2, 2, 2)
    x = torch.randn(9, 4, 5, generator=gen, dtype=F64).transpose(0, 2)  # [5, 4, 9], non-contiguous
    y = torch.randn(5, 4, 9, generator=gen, dtype=F64)
    torch.testing.assert_close(m(x, y), einsum_product(x, y, 2, 2, 2), atol=1e-12, rtol=0)
    assert GauntPowers(2, 2, 1)(torch.zeros(2, 3, 4, 9, dtype=F64)).shape == (2, 3, 4, 2, 4)


def test_route_a_tables():
    """SH -> Fourier is sparse (v = +-m, u = l mod 2); zeta matches a direct quadrature."""
    l_max = 4
    y = sh_to_fourier(l_max)  # [K, u + L, v + L]
    u = np.arange(-l_max, l_max + 1)
    for l in range(l_max + 1):
        for m in range(-l, l + 1):
            c = np.abs(y[l * l + l + m])
            allowed = (np.abs(u)[:, None] <= l) & ((u[:, None] - l) % 2 == 0) & (np.abs(u)[None, :] == abs(m))
            assert c[~allowed].max() < 1e-13, (l, m)
    # the expansion reproduces the harmonics off the FFT points (DFS torus, theta in [0, 2 pi))
    th = np.linspace(0.1, 6.2, 7)
    pts = np.stack([np.sin(th) * np.sin(2 * th), np.cos(th), np.sin(th) * np.cos(2 * th)], -1)
    ref = spherical_harmonics(l_max, torch.from_numpy(pts), normalize=False).numpy()
    series = np.einsum("kuv,tu,tv->tk", y, np.exp(1j * np.outer(th, u)), np.exp(1j * np.outer(2 * th, u)))
    np.testing.assert_allclose(series.real, ref, atol=1e-13)
    # zeta[k, u, v] = int_0^pi int_0^2pi e^{i(u theta + v phi)} Y_k sin(theta): GL in theta, uniform in phi
    l_out, l_prod = 2, 3
    zeta = zeta_table(l_out, l_prod)
    x, w = np.polynomial.legendre.leggauss(40)
    theta = (x + 1) * np.pi / 2
    n_phi = 32
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    pts = np.stack(
        [np.sin(theta)[:, None] * np.sin(phi), np.cos(theta)[:, None] + 0 * phi, np.sin(theta)[:, None] * np.cos(phi)], -1
    )
    yk = spherical_harmonics(l_out, torch.from_numpy(pts), normalize=False).numpy()  # [t, p, K]
    uu = np.arange(-l_prod, l_prod + 1)
    et = np.exp(1j * np.outer(theta, uu)) * (np.sin(theta) * w * np.pi / 2)[:, None]  # [t, u]
    ep = np.exp(1j * np.outer(phi, uu)) * (2 * np.pi / n_phi)  # [p, v]
    direct = np.einsum("tpk,tu,pv->kuv", yk, et, ep)
    np.testing.assert_allclose(zeta, direct, atol=1e-12)
    assert torus_points(3).shape == (3, 3, 3)
