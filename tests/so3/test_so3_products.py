"""GauntProduct and GauntPowers (route B): exactness, grid rule, symmetry, derivatives, export.

Test plan T1-T6 of gtp.md 4.6 at the feature level; the brute-force oracle is the independent
quadrature of ``conftest.oracle_gaunt``.
"""

from __future__ import annotations

import io
import itertools

import pytest
import torch
from conftest import e3nn_float64, einsum_product, kappa, random_rotation
from e3nn import o3

from gaunt_md.so3 import GauntPowers, GauntProduct, GauntProductFourier, exact_grid_size
from gaunt_md.so3.grid import LEBEDEV_ORDERS, LebedevGrid, lebedev_order, smallest_exact_grid

F64 = torch.float64


def _rand(gen, *shape, dtype=F64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


def test_product_equals_brute_force_for_all_degree_triples_up_to_6(gen):
    for l1, l2, lo in itertools.product(range(7), repeat=3):
        x, y = _rand(gen, 3, (l1 + 1) ** 2), _rand(gen, 3, (l2 + 1) ** 2)
        z = GauntProduct(l1, l2, lo)(x, y)
        torch.testing.assert_close(z, einsum_product(x, y, l1, l2, lo), atol=1e-12, rtol=0, msg=f"{(l1, l2, lo)}")


@pytest.mark.parametrize("dims", [(3, 3, 3), (2, 4, 6), (5, 1, 2), (6, 6, 6)])
def test_separable_and_dense_paths_agree_with_brute_force(gen, dims):
    l1, l2, lo = dims
    x, y = _rand(gen, 2, 5, (l1 + 1) ** 2), _rand(gen, 2, 5, (l2 + 1) ** 2)
    ref = einsum_product(x, y, l1, l2, lo)
    for separable, fused in itertools.product((None, False, True), (False, True)):
        m = GauntProduct(l1, l2, lo, separable=separable, fused=fused)
        torch.testing.assert_close(m(x, y), ref, atol=1e-12, rtol=0)


def test_same_input_twice_shares_the_synthesis(gen):
    x = _rand(gen, 4, 3, 16)
    m = GauntProduct(3, 3, 4)
    torch.testing.assert_close(m(x, x), einsum_product(x, x, 3, 3, 4), atol=1e-12, rtol=0)
    torch.testing.assert_close(m(x, x.clone()), m(x, x), atol=1e-13, rtol=0)


def test_equals_e3nn_tensor_product_with_kappa_squared_path_weights(gen):
    """The official repo's oracle: e3nn ``uuu`` over the even paths, weight kappa^2, no normalisation."""
    c = 3
    for l1, l2, lo in [(2, 2, 2), (3, 2, 4), (3, 3, 1)]:
        ir1, ir2, iro = (o3.Irreps([(c, (l, (-1) ** l)) for l in range(lm + 1)]) for lm in (l1, l2, lo))
        ins = [
            (a, b, o, "uuu", False, kappa(a, b, o) ** 2)
            for a, b, o in itertools.product(range(l1 + 1), range(l2 + 1), range(lo + 1))
            if abs(a - b) <= o <= a + b and (a + b + o) % 2 == 0
        ]
        with e3nn_float64():  # its Wigner 3j constants are built in the default dtype
            tp = o3.TensorProduct(ir1, ir2, iro, ins, irrep_normalization="none", path_normalization="none")
        x, y = _rand(gen, 4, c, (l1 + 1) ** 2), _rand(gen, 4, c, (l2 + 1) ** 2)

        def flat(t, lm):  # [N, C, K] -> e3nn layout [N, sum_l C (2l+1)]
            return torch.cat([t[:, :, l * l : (l + 1) ** 2].reshape(t.shape[0], -1) for l in range(lm + 1)], 1)

        torch.testing.assert_close(
            flat(GauntProduct(l1, l2, lo)(x, y), lo), tp(flat(x, l1), flat(y, l2)), atol=1e-12, rtol=0
        )


@pytest.mark.parametrize("dims", [(3, 3, 6), (3, 3, 2), (2, 1, 3), (4, 4, 4)])
def test_one_grid_point_fewer_in_beta_or_alpha_breaks_exactness(gen, dims):
    l1, l2, lo = dims
    n_beta, n_alpha = exact_grid_size(l1 + l2 + lo)
    x, y = _rand(gen, 64, (l1 + 1) ** 2), _rand(gen, 64, (l2 + 1) ** 2)
    ref = einsum_product(x, y, l1, l2, lo)
    assert _rel(GauntProduct(l1, l2, lo, grid=(n_beta, n_alpha))(x, y), ref) < 1e-13
    for grid in [(n_beta - 1, n_alpha), (n_beta, n_alpha - 1)]:
        z = GauntProduct(l1, l2, lo, grid=grid, allow_inexact=True)(x, y)
        assert _rel(z, ref) > 1e-3, grid


@pytest.mark.parametrize("dims", [(3, 3, 3), (3, 3, 6), (1, 2, 2), (5, 5, 5)])
def test_lebedev_rule_exact_at_order_d_and_not_below(gen, dims):
    l1, l2, lo = dims
    d = l1 + l2 + lo
    x, y = _rand(gen, 64, (l1 + 1) ** 2), _rand(gen, 64, (l2 + 1) ** 2)
    ref = einsum_product(x, y, l1, l2, lo)
    order = lebedev_order(d)
    assert order >= d and order - 2 < d  # the smallest odd order >= D
    assert _rel(GauntProduct(l1, l2, lo, grid=LebedevGrid.build(order))(x, y), ref) < 1e-13
    lower = LEBEDEV_ORDERS[LEBEDEV_ORDERS.index(order) - 1]
    with pytest.raises(ValueError, match="not exact"):
        GauntProduct(l1, l2, lo, grid=LebedevGrid.build(lower))
    assert _rel(GauntProduct(l1, l2, lo, grid=LebedevGrid.build(lower), allow_inexact=True)(x, y), ref) > 1e-3


def test_grid_choice():
    # route B (Gauss-Legendre x uniform) by default, whatever SciPy offers; Lebedev on request
    assert GauntProduct(3, 3, 3).grid_shape == (5, 10)
    assert GauntProduct(3, 3, 3, grid="gauss-legendre").grid_shape == (5, 10)
    assert GauntProduct(3, 3, 3, grid="lebedev").grid_name == "lebedev order 9 (38 points)"
    assert GauntProduct(3, 3, 3, separable=True).grid_shape == (5, 10)
    assert GauntPowers(3, 3, 2).grid_shape == (6, 12)
    assert GauntPowers(3, 3, 2, grid="lebedev").grid_shape == (50,)
    assert smallest_exact_grid(9).name == "lebedev order 9 (38 points)"
    assert smallest_exact_grid(2).name == "gauss-legendre 2x3"  # 6 points each: GL wins ties
    with pytest.raises(ValueError, match="Gauss-Legendre"):
        GauntProduct(3, 3, 3, grid="lebedev", separable=True)
    with pytest.raises(ValueError, match="grid must be one of"):
        GauntProduct(3, 3, 3, grid="lebedov")


def test_powers_grid_threshold(gen):
    a = _rand(gen, 64, 16)
    ref = GauntPowers(3, 3, 2)(a)
    n_beta, n_alpha = exact_grid_size(3 * 3 + 2)
    assert _rel(GauntPowers(3, 3, 2, grid=(n_beta + 2, n_alpha + 3))(a), ref) < 1e-13
    for grid in [(n_beta - 1, n_alpha), (n_beta, n_alpha - 1)]:
        assert _rel(GauntPowers(3, 3, 2, grid=grid, allow_inexact=True)(a)[:, 2], ref[:, 2]) > 1e-3, grid


def test_too_small_grid_raises():
    with pytest.raises(ValueError, match="not exact"):
        GauntProduct(3, 3, 3, grid=(5, 9))
    with pytest.raises(ValueError, match="not exact"):
        GauntPowers(3, 2, 2, grid=(4, 9))
    with pytest.raises(ValueError, match="nu_max"):
        GauntPowers(3, 0, 2)
    with pytest.raises(ValueError, match="degrees"):
        GauntProduct(-1, 2, 2)


@pytest.mark.parametrize("separable", [False, True])
def test_rotation_equivariance(gen, separable):
    l1, l2, lo = 3, 4, 5
    m = GauntProduct(l1, l2, lo, separable=separable)
    x, y = _rand(gen, 10, 4, (l1 + 1) ** 2), _rand(gen, 10, 4, (l2 + 1) ** 2)
    for seed in range(3):
        _, d = random_rotation(max(l1, l2, lo), seed)
        d1, d2, do = (d[: (lm + 1) ** 2, : (lm + 1) ** 2] for lm in (l1, l2, lo))
        torch.testing.assert_close(m(x @ d1.T, y @ d2.T), m(x, y) @ do.T, atol=1e-12, rtol=0)
        # float32 module, float32 inputs: 1e-5 relative
        m32 = GauntProduct(l1, l2, lo, separable=separable).to(torch.float32)
        z = m32((x @ d1.T).float(), (y @ d2.T).float()).double()
        assert _rel(z, m(x, y) @ do.T) < 1e-5


def test_powers_rotation_equivariance(gen):
    m = GauntPowers(3, 3, 4)
    a = _rand(gen, 6, 5, 16)
    _, do = random_rotation(4, 7)
    d = do[:16, :16]
    torch.testing.assert_close(m(a @ d.T), m(a) @ do.T, atol=1e-12, rtol=0)


def test_parity(gen):
    l1, l2, lo = 3, 2, 4

    def sign(lm):
        return torch.cat([torch.full((2 * l + 1,), (-1.0) ** l, dtype=F64) for l in range(lm + 1)])

    x, y = _rand(gen, 8, (l1 + 1) ** 2), _rand(gen, 8, (l2 + 1) ** 2)
    m = GauntProduct(l1, l2, lo)
    torch.testing.assert_close(m(x * sign(l1), y * sign(l2)), m(x, y) * sign(lo), atol=1e-13, rtol=0)
    p = GauntPowers(l1, 3, lo)
    torch.testing.assert_close(p(x * sign(l1)), p(x) * sign(lo), atol=1e-13, rtol=0)


def test_cross_product_is_absent(gen):
    """T2: ``1o x 1o -> 1e`` has an odd degree sum, so the l = 1 output of two vectors is zero."""
    x, y = torch.zeros(5, 4, dtype=F64), torch.zeros(5, 4, dtype=F64)
    x[:, 1:], y[:, 1:] = _rand(gen, 5, 3), _rand(gen, 5, 3)
    assert GauntProduct(1, 1, 2)(x, y)[:, 1:4].abs().max() < 1e-15


def test_route_a_equals_route_b(gen):
    for l1, l2, lo in [(3, 3, 3), (2, 4, 6), (4, 1, 2), (6, 6, 6), (0, 3, 3)]:
        x, y = _rand(gen, 6, (l1 + 1) ** 2), _rand(gen, 6, (l2 + 1) ** 2)
        torch.testing.assert_close(
            GauntProductFourier(l1, l2, lo)(x, y), GauntProduct(l1, l2, lo)(x, y), atol=1e-12, rtol=0
        )


def test_powers_equal_repeated_products(gen):
    la, lo = 3, 4
    a = _rand(gen, 5, 3, (la + 1) ** 2)
    p = GauntPowers(la, 4, lo)(a)  # [5, 3, 4, K_out]
    k_out = (lo + 1) ** 2
    torch.testing.assert_close(p[:, :, 0], torch.nn.functional.pad(a, (0, k_out - 16)), atol=1e-13, rtol=0)
    a2 = GauntProduct(la, la, 2 * la)(a, a)  # exact f^2, no truncation
    torch.testing.assert_close(p[:, :, 1], a2[..., :k_out], atol=1e-12, rtol=0)
    torch.testing.assert_close(p[:, :, 2], GauntProduct(2 * la, la, lo)(a2, a), atol=1e-12, rtol=0)
    torch.testing.assert_close(p[:, :, 3], GauntProduct(2 * la, 2 * la, lo)(a2, a2), atol=1e-12, rtol=0)
    torch.testing.assert_close(GauntPowers(la, 4, lo, separable=True)(a), p, atol=1e-12, rtol=0)


def test_gradcheck_and_gradgradcheck(gen):
    def inputs(*ks):
        return tuple(_rand(gen, 3, 2, k).requires_grad_() for k in ks)

    for separable in (False, True):
        m = GauntProduct(2, 3, 3, separable=separable)
        x, y = inputs(9, 16)
        assert torch.autograd.gradcheck(m, (x, y))
        assert torch.autograd.gradgradcheck(m, (x, y))
        (x,) = inputs(16)
        sq = GauntProduct(3, 3, 2, separable=separable)
        assert torch.autograd.gradgradcheck(lambda t: sq(t, t), (x,))  # shared synthesis path
        p = GauntPowers(2, 3, 3, separable=separable)
        (a,) = inputs(9)
        assert torch.autograd.gradcheck(p, (a,))
        assert torch.autograd.gradgradcheck(p, (a,))
    x, y = inputs(9, 4)
    assert torch.autograd.gradgradcheck(GauntProductFourier(2, 1, 3), (x, y))


def test_third_derivative_matches_plain_path(gen):
    """Force training differentiates the force loss: check an order beyond gradgradcheck too."""
    for module in (GauntProduct(2, 2, 2, fused=True), GauntPowers(2, 3, 2, fused=True)):
        a = (0.5 * _rand(gen, 7, 9)).requires_grad_()
        c = _rand(gen, 7, 9)

        def energy(f):
            out = f(a) if isinstance(module, GauntPowers) else f(a, a.sin())
            return out.pow(2).sum()

        plain = (lambda t: module._plain(t)) if isinstance(module, GauntPowers) else (lambda t, u: module._plain(t, u))
        results = []
        for f in (module, plain):
            (g,) = torch.autograd.grad(energy(f), a, create_graph=True)
            (h,) = torch.autograd.grad(g.pow(2).sum(), a, create_graph=True)
            (k,) = torch.autograd.grad((h * c).sum(), a)
            results.append((g, h, k))
        for r_fused, r_plain in zip(*results):
            assert _rel(r_fused, r_plain) < 1e-12


def test_float32_module(gen):
    x, y = _rand(gen, 20, 4, 16), _rand(gen, 20, 4, 9)
    ref = GauntProduct(3, 2, 3)(x, y)
    for module in (GauntProduct(3, 2, 3), GauntProductFourier(3, 2, 3)):
        m32 = module.to(torch.float32)
        z = m32(x.float(), y.float())
        assert z.dtype == torch.float32
        assert _rel(z.double(), ref) < 1e-5
    p = GauntPowers(3, 3, 2)
    ref_p = p(x)
    assert _rel(p.to(torch.float32)(x.float()).double(), ref_p) < 1e-5


def test_torchscript(gen):
    x, y = _rand(gen, 6, 3, 16), _rand(gen, 6, 3, 9)
    a = _rand(gen, 6, 3, 16)
    for module, args in [
        (GauntProduct(3, 2, 4), (x, y)),
        (GauntProduct(3, 2, 4, separable=True), (x, y)),
        (GauntPowers(3, 3, 2), (a,)),
        (GauntPowers(3, 3, 2, separable=True), (a,)),
        (GauntProductFourier(3, 2, 4), (x, y)),
    ]:
        scripted = torch.jit.script(module)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        buf.seek(0)
        loaded = torch.jit.load(buf)
        torch.testing.assert_close(loaded(*args), module(*args), atol=1e-12, rtol=0)
        # forces through the scripted module
        args_g = tuple(t.clone().requires_grad_() for t in args)
        grads = torch.autograd.grad(loaded(*args_g).pow(2).sum(), args_g)
        args_e = tuple(t.clone().requires_grad_() for t in args)
        expected = torch.autograd.grad(module(*args_e).pow(2).sum(), args_e)
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e, atol=1e-11, rtol=0)
