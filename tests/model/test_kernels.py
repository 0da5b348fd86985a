"""The fused C++ inference kernels (gaunt_md.model.kernels) against the torch ops they replace.

The physics tests of the calculator (finite differences, NVE, symmetry, periodic images) run on
both paths through the ``calc64`` fixture; here: the kernels' own derivatives (gradcheck), exact
agreement with the torch ops on awkward graphs, the accuracy of the tabulated radial weights,
threads, and the refusals (double backward, unfrozen weights, no compiler).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from gaunt_md.data.batch import collate
from gaunt_md.data.graph import atoms_to_graph
from gaunt_md.model import kernels
from gaunt_md.model.checkpoint import load_checkpoint
from gaunt_md.model.derivatives import ForceField, edge_vectors
from gaunt_md.model.kernels.edge_conv import _table_shape, block_table, fused_edge_convolution, tabulate_radial
from gaunt_md.model.kernels.product_basis import fused_product_basis
from gaunt_md.potentials import available_models, resolve_model
from gaunt_md.so3.grid import antipodal_halves, smallest_exact_grid

pytestmark = pytest.mark.skipif(
    not (os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")), reason="no C++ compiler"
)


def test_kernels_build_here():
    assert kernels.available(), kernels.load_error()


# ---------------------------------------------------------------------------------------------
# the kernels' own first derivatives, against numerical ones


def _conv_inputs(gen, n_nodes=5, n_edges=14, channels=3, l_in=1, l_out=3):
    k_in, k_out = (l_in + 1) ** 2, (l_out + 1) ** 2
    dst = torch.sort(torch.randint(0, n_nodes, (n_edges,), generator=gen)).values
    dst[0] = n_nodes - 1  # one receiver out of order: exercises the re-sorting path
    src = torch.randint(0, n_nodes, (n_edges,), generator=gen)
    edge_index = torch.stack([src, dst])
    h = torch.randn(k_in, n_nodes, channels, generator=gen, dtype=torch.float64)  # degree-major
    coupling = torch.randn(n_edges, k_in, k_out, generator=gen, dtype=torch.float64)
    deg_in = torch.tensor([l for l in range(l_in + 1) for _ in range(2 * l + 1)])
    deg_out = torch.tensor([l for l in range(l_out + 1) for _ in range(2 * l + 1)])
    return edge_index, h, coupling, deg_in, deg_out


def _reference_conv(h, coupling, edge_index, deg_in, deg_out, radial, scale=1.0):
    """A[k, i, c] = scale sum_e sum_a R[e, (deg k, deg a), c] h[a, src, c] S[e, a, k], by einsum."""
    l_in1 = int(deg_in.max()) + 1
    paths = deg_out[:, None] * l_in1 + deg_in[None, :]  # [K_A, K_in]
    r = radial[:, paths.reshape(-1)].view(radial.shape[0], len(deg_out), len(deg_in), -1)  # [E, k, a, C]
    msg = torch.einsum("ekac,aec,eak->kec", r, h[:, edge_index[0]], coupling)
    out = torch.zeros(len(deg_out), h.shape[1], h.shape[2], dtype=h.dtype).index_add(1, edge_index[1], msg)
    return scale * out


# the kernel making S_e = Y_e G itself (what EdgeConvolution asks for when l_in > 0): the same A as
# with S given, and dL/dY = dL/dS G^T; generic (3 channels, float64) and register-blocked (8)
# kernels, a G with zero columns and rows like the Gaunt coupling's, float32 too; K_in K_A = 36 (l_out
# 2) is not a whole number of float64 vectors: the kernel's scalar loops
@pytest.mark.parametrize("channels, dtype, l_out", [(3, torch.float64, 3), (8, torch.float64, 3),
                                                    (16, torch.float32, 3), (8, torch.float64, 2)])
def test_edge_convolution_kernel_makes_coupling_from_harmonics(channels, dtype, l_out):
    gen = torch.Generator().manual_seed(6)
    edge_index, h, _, deg_in, deg_out = _conv_inputs(gen, channels=channels, l_out=l_out)
    k_in, k_out = len(deg_in), len(deg_out)
    y = torch.randn(edge_index.shape[1], k_out, generator=gen, dtype=torch.float64)
    matrix = torch.randn(k_out, k_in * k_out, generator=gen, dtype=torch.float64)
    matrix[:, 3:11] = 0.0  # a whole vector of zeros in every row (skipped by the kernel)
    matrix[5] = 0.0  # a harmonic that couples to nothing
    radial = torch.randn(edge_index.shape[1], 2 * (l_out + 1), channels, generator=gen, dtype=torch.float64)
    h, y, matrix, radial = h.to(dtype), y.to(dtype), matrix.to(dtype), radial.to(dtype)
    coupling = (y @ matrix).view(-1, k_in, k_out)
    out = fused_edge_convolution(h, None, edge_index, deg_in, deg_out, radial=radial, scale=0.3,
                                 edge_sh=y, coupling_matrix=matrix)
    ref = fused_edge_convolution(h, coupling, edge_index, deg_in, deg_out, radial=radial, scale=0.3)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
    y.requires_grad_()
    (grad_y,) = torch.autograd.grad(
        fused_edge_convolution(h, None, edge_index, deg_in, deg_out, radial=radial, scale=0.3, edge_sh=y,
                               coupling_matrix=matrix), y, g)
    coupling.requires_grad_()
    (grad_s,) = torch.autograd.grad(
        fused_edge_convolution(h, coupling, edge_index, deg_in, deg_out, radial=radial, scale=0.3), coupling, g)
    torch.testing.assert_close(grad_y, grad_s.reshape(len(y), -1) @ matrix.T, rtol=tol, atol=tol)
    if dtype == torch.float32:  # dL/dS (the lane sums of the float32 kernel) against the float64 kernel's
        s64 = coupling.detach().double().requires_grad_()
        (grad_s64,) = torch.autograd.grad(fused_edge_convolution(
            h.double(), s64, edge_index, deg_in, deg_out, radial=radial.double(), scale=0.3), s64, g.double())
        torch.testing.assert_close(grad_s.double(), grad_s64, rtol=1e-4, atol=1e-4)
    if dtype == torch.float64:
        inputs = (radial.requires_grad_(), h.requires_grad_(), y)
        assert torch.autograd.gradcheck(
            lambda r, x, sh: fused_edge_convolution(x, None, edge_index, deg_in, deg_out, radial=r, edge_sh=sh,
                                                    coupling_matrix=matrix), inputs, atol=1e-8, rtol=1e-6)
    with pytest.raises(ValueError, match="either coupling or both"):
        fused_edge_convolution(h, coupling, edge_index, deg_in, deg_out, radial=radial, edge_sh=y,
                               coupling_matrix=matrix)
    for bad in ({"edge_sh": y}, {"coupling_matrix": matrix}):  # half of the pair, with or without S
        for s in (coupling, None):
            with pytest.raises(ValueError, match="either coupling or both"):
                fused_edge_convolution(h, s, edge_index, deg_in, deg_out, radial=radial, **bad)
    with pytest.raises(ValueError, match="columns, expected"):
        fused_edge_convolution(h, None, edge_index, deg_in, deg_out, radial=radial, edge_sh=y,
                               coupling_matrix=matrix[:, :-1])


# 3 channels: the generic kernel; 8 and 64: the register-blocked one (whole float64 vectors)
@pytest.mark.parametrize("l_in, channels, l_out", [(0, 3, 3), (1, 3, 3), (0, 8, 3), (1, 64, 3), (1, 8, 2)])
def test_edge_convolution_kernel_matches_einsum_and_gradcheck(l_in, channels, l_out):
    gen = torch.Generator().manual_seed(1)
    edge_index, h, coupling, deg_in, deg_out = _conv_inputs(gen, l_in=l_in, channels=channels, l_out=l_out)
    radial = torch.randn(edge_index.shape[1], (l_out + 1) * (l_in + 1), channels, generator=gen, dtype=torch.float64)
    out = fused_edge_convolution(h, coupling, edge_index, deg_in, deg_out, radial=radial, scale=0.3)
    ref = _reference_conv(h, coupling, edge_index, deg_in, deg_out, radial, scale=0.3)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    inputs = (radial.requires_grad_(), h.requires_grad_(), coupling.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda r, x, s: fused_edge_convolution(x, s, edge_index, deg_in, deg_out, radial=r, scale=0.3), inputs,
        atol=1e-8, rtol=1e-6, fast_mode=channels > 8,  # fast mode: random directions, not every input
    )


# 3 channels: the generic kernel; 8: the register-blocked one (a whole number of float64 vectors)
@pytest.mark.parametrize("layout", ["coefficients", "knots"])
@pytest.mark.parametrize("channels", [3, 8])
def test_edge_convolution_kernel_with_table_gradcheck_in_lengths(channels, layout):
    gen = torch.Generator().manual_seed(2)
    edge_index, h, coupling, deg_in, deg_out = _conv_inputs(gen, channels=channels)
    width, cutoff, n = 8 * channels, 4.0, 64
    freq = torch.rand(width, generator=gen, dtype=torch.float64) * 3

    def radial_function(r):
        return torch.cos(freq * r[:, None]) * (1 - r[:, None] / cutoff) ** 3

    table = tabulate_radial(radial_function, cutoff, n, torch.float64, layout=layout)
    lengths = 0.5 + 3.0 * torch.rand(edge_index.shape[1], generator=gen, dtype=torch.float64)

    def f(r, x, s):
        return fused_edge_convolution(x, s, edge_index, deg_in, deg_out, table=table, lengths=r, dx=cutoff / n)

    # the table reproduces the function it was made from (cubic Hermite, dx = 1/16 Å)
    radial = radial_function(lengths).view(-1, 8, channels)
    ref = fused_edge_convolution(h, coupling, edge_index, deg_in, deg_out, radial=radial)
    torch.testing.assert_close(f(lengths, h, coupling), ref, rtol=0, atol=1e-5)
    inputs = (lengths.requires_grad_(), h.requires_grad_(), coupling.requires_grad_())
    assert torch.autograd.gradcheck(f, inputs, atol=1e-8, rtol=1e-6)


# 3 channels: the generic kernel, plain tables; 8 with l_in = 1: the register-blocked kernel; 8 with
# l_in = 2 (K_in = 9): the generic kernel on blocked tables too
@pytest.mark.parametrize("channels, l_in", [(3, 1), (8, 1), (8, 2)])
def test_table_layouts_are_one_cubic(channels, l_in):
    """Coefficients per interval and value/slope per knot, each in plain or the register-blocked
    kernels' memory order: the same interpolant, so the same messages and length gradients to
    rounding (float64); a knot table has half the rows."""
    gen = torch.Generator().manual_seed(6)
    edge_index, h, coupling, deg_in, deg_out = _conv_inputs(gen, channels=channels, l_in=l_in)
    paths = 4 * (l_in + 1)
    width, cutoff, n = paths * channels, 4.0, 32
    freq = torch.rand(width, generator=gen, dtype=torch.float64) * 3

    def radial_function(r):
        return torch.sin(freq * r[:, None] + 0.3) * (1 - r[:, None] / cutoff) ** 3

    tables = {layout: tabulate_radial(radial_function, cutoff, n, torch.float64, layout=layout)
              for layout in ("coefficients", "knots")}
    assert tables["coefficients"].shape == (n, 4, width) and tables["knots"].shape == (n + 1, 2, width)
    if channels % 8 == 0:  # whole float64 vectors: the register-blocked kernels' memory order too
        for layout in ("coefficients", "knots"):
            tables[layout + ", blocked"] = block_table(tables[layout], channels)
        assert tables["knots, blocked"].shape == (n + 1, 1, channels // 8, paths, 2, 8)
    else:
        with pytest.raises(ValueError, match="cannot block"):
            block_table(tables["knots"], channels)
    # lengths on knots, inside intervals, and past the last knot (clamped)
    lengths = torch.cat([torch.tensor([0.0, cutoff / n, 1.0, cutoff, cutoff + 0.2], dtype=torch.float64),
                         4.2 * torch.rand(edge_index.shape[1] - 5, generator=gen, dtype=torch.float64)])
    out, grads = {}, {}
    for layout, table in tables.items():
        r = lengths.clone().requires_grad_()
        out[layout] = fused_edge_convolution(h, coupling, edge_index, deg_in, deg_out, table=table, lengths=r,
                                             dx=cutoff / n)
        (grads[layout],) = torch.autograd.grad((out[layout] * torch.cos(out[layout])).sum(), r)
    for layout in out:
        torch.testing.assert_close(out[layout], out["coefficients"], rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(grads[layout], grads["coefficients"], rtol=1e-11, atol=1e-11)
    assert grads["knots"].abs().max() > 1e-2
    with pytest.raises(ValueError, match="layout"):
        tabulate_radial(radial_function, cutoff, n, torch.float64, layout="nodes")
    with pytest.raises(ValueError, match=r"\[n \+ 1, 2, width\]"):
        fused_edge_convolution(h, coupling, edge_index, deg_in, deg_out, table=tables["knots"][:, :1], lengths=lengths)


@pytest.mark.parametrize("l_in, l_out", [(2, 2), (3, 0)])  # K_in = 9: the generic kernel; 16: unrolled
def test_product_basis_kernel_on_other_degrees(l_in, l_out):
    from gaunt_md.model.blocks import GauntProductBasis

    product = GauntProductBasis(num_channels=3, l_in=l_in, nu_max=3, l_out=l_out, num_species=2).double()
    product.requires_grad_(False)
    gen = torch.Generator().manual_seed(4)
    a = torch.randn((l_in + 1) ** 2, 4, 3, generator=gen, dtype=torch.float64)  # [K, N, C]
    species = torch.tensor([0, 1, 1, 0])
    ref = product(a, species)
    product.fused = True
    torch.testing.assert_close(product(a, species), ref, rtol=1e-12, atol=1e-12)
    a.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: product(x, species), (a,), atol=1e-8, rtol=1e-6)


# K_in 9: the generic kernel; 16: the unrolled ones (L_out + 1 = 1, 2 and any)
@pytest.mark.parametrize("l_in, l_out", [(2, 2), (3, 0), (3, 1), (3, 2)])
def test_product_basis_kernel_on_antipodal_pairs(l_in, l_out):
    """Half a Lebedev grid (one point of each antipodal pair, the other by parity) gives the whole
    grid's product basis and gradient, and both give the module's (Gauss-Legendre) numbers."""
    from gaunt_md.model.blocks import GauntProductBasis
    from gaunt_md.model.kernels.product_basis import fused_product_basis

    nu_max, rows = 3, 21  # 21 rows: two whole float64 vectors and a partial one
    grid = smallest_exact_grid(nu_max * l_in + l_out)
    half = antipodal_halves(grid.points, grid.weights)
    assert half is not None and len(half) == grid.size // 2
    y = torch.from_numpy(grid.harmonics(max(l_in, l_out))).T  # [K, G]
    w = torch.from_numpy(grid.weights)
    k_in, k_out = (l_in + 1) ** 2, (l_out + 1) ** 2
    gen = torch.Generator().manual_seed(8)
    a = torch.randn(k_in, rows, generator=gen, dtype=torch.float64, requires_grad=True)
    coef = torch.randn(nu_max, l_out + 1, rows, generator=gen, dtype=torch.float64)
    whole = fused_product_basis(a, coef, y[:k_in], y[:k_out] * w)
    idx = torch.from_numpy(half)
    y_half, w_half = y.index_select(1, idx), w.index_select(0, idx)

    def paired(x):
        return fused_product_basis(x, coef, y_half[:k_in], y_half[:k_out] * w_half, paired=True)

    torch.testing.assert_close(paired(a), whole, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(paired, (a,), atol=1e-8, rtol=1e-6)
    # the module's own grid and weights (Gauss-Legendre, torch ops) agree too
    product = GauntProductBasis(num_channels=rows, l_in=l_in, nu_max=nu_max, l_out=l_out, num_species=1).double()
    product.requires_grad_(False)
    inv_std = product.inv_std.index_select(1, product.degree_starts)  # [nu, L_out+1]
    product.weight.copy_((coef / inv_std[:, :, None]).permute(2, 0, 1).unsqueeze(0))  # [S = 1, C, nu, L_out+1]
    ref = product(a.detach().view(k_in, 1, rows), torch.zeros(1, dtype=torch.long))  # one node, C = rows
    torch.testing.assert_close(whole.detach(), ref.view(k_out, rows), rtol=1e-10, atol=1e-10)


def test_product_basis_kernel_matches_torch_ops_and_gradcheck(tiny_model_path):
    model, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
    product = model.layers[0].product.requires_grad_(False)
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(product.powers.k, 7, product.weight.shape[1], generator=gen, dtype=torch.float64)
    species = torch.randint(0, product.weight.shape[0], (7,), generator=gen)
    ref = product(a, species)
    product.fused = True
    torch.testing.assert_close(product(a, species), ref, rtol=1e-12, atol=1e-12)
    a3 = a[:, :3].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: product(x, species[:3]), (a3,), atol=1e-8, rtol=1e-6)

    inv_std = product.inv_std.index_select(1, torch.tensor([l * l for l in range(product.weight.shape[3])]))
    coef = (product.weight.index_select(0, species) * inv_std).permute(2, 3, 0, 1)  # [nu, L_out+1, N, C]
    out = fused_product_basis(a.reshape(a.shape[0], -1), coef.reshape(*coef.shape[:2], -1), product.powers.t.table,
                              product.powers.t_out.table_w)
    torch.testing.assert_close(out.view_as(ref), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-14), (torch.float32, 1e-6)])
@pytest.mark.parametrize("l_max", [0, 1, 2, 3])
def test_edge_harmonics_kernel_matches_e3nn(l_max, dtype, tol):
    """Values and vector-Jacobian product of the model's harmonics (e3nn, normalize=True, integral)."""
    from e3nn import o3

    from gaunt_md.model.kernels.harmonics import edge_harmonics

    gen = torch.Generator().manual_seed(11)
    v = 3 * torch.randn(300, 3, generator=gen, dtype=dtype)
    v[0] = 0.0  # a zero vector: Y_00 only, as e3nn (normalize divides by max(|v|, 1e-12))
    v[1] = torch.tensor([0.0, 2.0, 0.0])  # on the polar axis
    reference = o3.SphericalHarmonics(list(range(l_max + 1)), normalize=True, normalization="integral")
    grad = torch.randn(300, (l_max + 1) ** 2, generator=gen, dtype=dtype)
    a, b = v.clone().requires_grad_(), v.clone().requires_grad_()
    ya, yb = reference(a), edge_harmonics(b, l_max)
    torch.testing.assert_close(yb, ya, rtol=0, atol=tol)
    (yb * grad).sum().backward()
    if l_max == 0:  # a constant: no gradient at all
        assert not b.grad.any()
        return
    (ya * grad).sum().backward()
    scale = a.grad.abs().max()
    torch.testing.assert_close(b.grad / scale, a.grad / scale, rtol=0, atol=10 * tol)
    assert (b.grad[1:] - a.grad[1:]).abs().max() < 10 * tol * a.grad[1:].abs().max()
    if dtype == torch.float64:
        c = v[1:20].clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda x: edge_harmonics(x, l_max), (c,), atol=1e-8, rtol=1e-6)


def test_edge_geometry_kernel_gives_lengths_and_their_gradient():
    """The lengths come from the same pass; their gradient joins the harmonics' (v / |v|, zero at 0)."""
    from gaunt_md.model.kernels.harmonics import edge_geometry

    gen = torch.Generator().manual_seed(12)
    v = 2 * torch.randn(50, 3, generator=gen, dtype=torch.float64)
    v[0] = 0.0
    w = torch.randn(50, 16, generator=gen, dtype=torch.float64)
    a, b = v.clone().requires_grad_(), v.clone().requires_grad_()
    sh, lengths = edge_geometry(b, 3)
    torch.testing.assert_close(lengths, torch.linalg.norm(v, dim=-1), rtol=1e-15, atol=0)
    ((sh * w).sum() + (lengths**3).sum()).backward()
    from e3nn import o3

    ref = o3.SphericalHarmonics(list(range(4)), normalize=True, normalization="integral")(a)
    ((ref * w).sum() + (torch.linalg.norm(a, dim=-1) ** 3).sum()).backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-12)
    c = v[1:10].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: edge_geometry(x, 3), (c,), atol=1e-8, rtol=1e-6)
    assert torch.autograd.gradcheck(lambda x: edge_geometry(x, 2)[1], (c,), atol=1e-8, rtol=1e-6)  # lengths only


def test_edge_harmonics_kernel_refuses_what_it_cannot_do():
    from gaunt_md.model.kernels.harmonics import edge_harmonics

    with pytest.raises(ValueError, match="up to l = 3"):
        edge_harmonics(torch.ones(2, 3), 4)
    with pytest.raises(ValueError, match=r"\[E, 3\]"):
        edge_harmonics(torch.ones(2, 4), 2)
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(edge_harmonics(x, 3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):  # first derivatives only
        g.sum().backward()


# ---------------------------------------------------------------------------------------------
# whole model: fused kernels == torch ops


def _awkward_batch(cutoff):
    """Periodic cells (one smaller than the cutoff), a molecule, an atom with no neighbours."""
    si = bulk("Si", "diamond", a=5.43)  # 2 atoms: many images of each
    si.rattle(0.05, seed=1)
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    cu.rattle(0.05, seed=2)
    mol = molecule("CH3CH2OH")
    lone = Atoms("HC", positions=[[0, 0, 0], [0, 0, cutoff + 1.0]])  # no edges at all
    return [si, cu, mol, lone]


def _evaluate(model, structures, shuffle_edges=False):
    batch = collate([atoms_to_graph(a, model.cutoff) for a in structures])
    edge_index, unit_shifts = batch.edge_index, batch.unit_shifts
    if shuffle_edges:
        order = torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(0))
        edge_index, unit_shifts = edge_index[:, order], unit_shifts[order]
    vectors = edge_vectors(batch.positions, batch.cell, edge_index, unit_shifts, batch.batch)
    out = ForceField(model)(
        batch.numbers, edge_index, vectors.to(model.embedding.dtype), batch.batch, batch.num_graphs,
        compute_forces=True, compute_virial=True,
    )
    return {k: out[k].detach().double() for k in ("energy", "node_energy", "forces", "virial")}


@pytest.mark.parametrize("shuffle_edges", [False, True])
def test_fused_model_matches_torch_ops_exactly(tiny_model_path, shuffle_edges):
    model, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
    model.requires_grad_(False)
    structures = _awkward_batch(model.cutoff)
    ref = _evaluate(model, structures)
    assert kernels.enable(model, radial_intervals=0)
    for layer in model.layers:  # the kernels' grid: the smallest exact one (Lebedev where SciPy has it)
        powers = layer.product.powers
        grid = smallest_exact_grid(powers.nu_max * powers.l_max + powers.l_out_max)
        assert grid.size <= layer.product.powers.t.grid_size
        # Lebedev rules come in antipodal pairs: the tables keep one point of each
        assert layer.product.fused_paired == (antipodal_halves(grid.points, grid.weights) is not None)
        assert layer.product.fused_synthesis.shape[1] == grid.size // (2 if layer.product.fused_paired else 1)
    out = _evaluate(model, structures, shuffle_edges)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], rtol=1e-12, atol=1e-12)
    assert ref["forces"].abs().max() > 1e-3


def test_fused_forces_and_virials_match_torch_ops(tiny_model_path):
    """ForceField.fused: forces and virials from one C++ pass over the edge gradients, the same as
    the index_adds (periodic cells, a molecule and an atom without edges in one batch)."""
    from gaunt_md.model.kernels.edges import edge_forces

    model, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
    model.requires_grad_(False)
    structures = _awkward_batch(model.cutoff)
    batch = collate([atoms_to_graph(a, model.cutoff) for a in structures])
    vectors = edge_vectors(batch.positions, batch.cell, batch.edge_index, batch.unit_shifts, batch.batch)
    out = {}
    for fused in (False, True):
        forcefield = ForceField(model)
        forcefield.fused = fused
        for compute_virial in (False, True):
            out[fused, compute_virial] = forcefield(batch.numbers, batch.edge_index, vectors, batch.batch,
                                                    batch.num_graphs, compute_forces=True, compute_virial=compute_virial)
    for compute_virial in (False, True):
        ref, got = out[False, compute_virial], out[True, compute_virial]
        assert set(got) == set(ref)
        for key in ref:
            torch.testing.assert_close(got[key], ref[key], rtol=1e-13, atol=1e-13)
    assert out[False, True]["virial"].abs().max() > 1e-3 and out[False, True]["forces"].abs().max() > 1e-3
    with pytest.raises(ValueError, match="both edge_vectors and node_graph"):
        edge_forces(batch.edge_index, vectors, batch.num_atoms, edge_vectors=vectors)
    # and the edge vectors themselves, from positions, cells and shifts in one pass
    torch.testing.assert_close(
        kernels.edge_vectors(batch.positions, batch.cell, batch.edge_index, batch.unit_shifts, batch.batch), vectors,
        rtol=0, atol=1e-12)


def test_small_kernel_calls_skip_sleeping_threads(monkeypatch):
    """One thread below the work threshold only when OpenMP threads sleep between regions."""
    from gaunt_md.native.build import threads_for

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
        assert threads_for(100, 512) == 1
        assert threads_for(512, 512) == 2
        monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
        assert threads_for(100, 512) == 2
        monkeypatch.delenv("OMP_WAIT_POLICY")
        assert threads_for(100, 512) == 2
    finally:
        torch.set_num_threads(threads)


def test_two_threads_give_the_same_numbers(tiny_model_path):
    """The backward pass scatters over senders into one buffer per thread."""
    model, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
    model.requires_grad_(False)
    structures = [bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)]
    ref = _evaluate(model, structures)
    kernels.enable(model, radial_intervals=0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = _evaluate(model, structures)
    finally:
        torch.set_num_threads(threads)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["gaunt-mlearn", "gaunt-3bpa"])
def test_tabulated_radial_weights_of_shipped_models(name):
    """2048 intervals: weights within 1e-9 of the MLP (relative); energies and forces follow."""
    if name not in available_models():
        pytest.skip(f"{name} is not shipped here")
    model, _ = load_checkpoint(resolve_model(name), dtype=torch.float64)
    model.requires_grad_(False)
    r = torch.linspace(0.6, model.cutoff, 3001, dtype=torch.float64)
    for layer in model.layers:
        conv = layer.conv
        table = tabulate_radial(lambda x, c=conv: c.radial(model.radial_basis(x), c.fused_columns),
                                model.cutoff, kernels.DEFAULT_RADIAL_INTERVALS, torch.float64)
        exact = conv.radial(model.radial_basis(r), conv.fused_columns)
        x = r / (model.cutoff / table.shape[0])
        k = x.floor().long().clamp(max=table.shape[0] - 1)
        t = (x - k)[:, None]
        c = table[k]
        approx = c[:, 0] + t * (c[:, 1] + t * (c[:, 2] + t * c[:, 3]))
        assert (approx - exact).abs().max() < 1e-9 * exact.abs().max()

    structures = [bulk("Si", "diamond", a=5.43, cubic=True)] if name == "gaunt-mlearn" else [molecule("CH3CH2OH")]
    structures[0].rattle(0.1, seed=3)
    ref = _evaluate(model, structures)
    kernels.enable(model)
    out = _evaluate(model, structures)
    assert abs(out["energy"] - ref["energy"]).max() < 1e-9 * abs(ref["energy"]).max()
    assert (out["forces"] - ref["forces"]).abs().max() < 1e-6 * ref["forces"].abs().max()


@pytest.mark.parametrize("shuffle_edges", [False, True])
def test_first_layer_folding_changes_nothing_but_rounding(tiny_model_path, shuffle_edges):
    """Species embedding and the two linear maps around the first convolution folded into its
    table (one set of columns per sender species) give the unfolded tables' numbers."""
    structures = _awkward_batch(5.0)  # H, C, O, Si, Cu: every sender species of the tiny model
    out = {}
    for fold in (False, True):
        model, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
        model.requires_grad_(False)
        assert kernels.enable(model, fold_first_layer=fold)
        assert [layer.conv.folded for layer in model.layers] == [fold] + [False] * (len(model.layers) - 1)
        n_species = model.embedding.shape[0]
        width = _table_shape(model.layers[0].conv.radial_table)[1]
        assert width == (n_species if fold else 1) * model.layers[0].conv.fused_columns.numel()
        out[fold] = _evaluate(model, structures, shuffle_edges)
    for key in out[False]:
        torch.testing.assert_close(out[True][key], out[False][key], rtol=1e-11, atol=1e-11)
    assert out[False]["forces"].abs().max() > 1e-3


def test_species_tables_are_checked():
    gen = torch.Generator().manual_seed(5)
    edge_index, h, coupling, deg_in, deg_out = _conv_inputs(gen, l_in=0)
    cols = 4 * 3  # (L_A+1)(l_in+1) C
    table = torch.randn(8, 4, 2 * cols, generator=gen, dtype=torch.float64)
    lengths = torch.rand(coupling.shape[0], generator=gen, dtype=torch.float64)
    species = torch.tensor([0, 1, 1, 0, 2])
    with pytest.raises(ValueError, match="outside the table's 2 sets"):
        fused_edge_convolution(h, coupling, edge_index, deg_in, deg_out, table=table, lengths=lengths, species=species)
    with pytest.raises(ValueError, match="one set of"):
        fused_edge_convolution(h, coupling, edge_index, deg_in, deg_out, table=table[:, :, :-1], lengths=lengths,
                               species=species.clamp(max=1))
    # each node's species picks its own columns: the same as a one-species table per sender
    species = species.clamp(max=1)
    both = fused_edge_convolution(h, coupling, edge_index, deg_in, deg_out, table=table, lengths=lengths, species=species)
    for z in (0, 1):
        mine = fused_edge_convolution(h * (species == z).to(h.dtype)[None, :, None], coupling, edge_index, deg_in,
                                      deg_out, table=table[:, :, z * cols:(z + 1) * cols].contiguous(), lengths=lengths)
        both = both - mine
    assert both.abs().max() < 1e-12


def test_float32_tables_keep_float32_accuracy(tiny_model_path):
    """Polynomial coefficients, not knot values: the force of a float32 table loses no digits."""
    structures = [bulk("Si", "diamond", a=5.43, cubic=True)]
    structures[0].rattle(0.1, seed=4)
    model64, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
    exact = _evaluate(model64.requires_grad_(False), structures)["forces"]
    errors = {}
    for fused in (False, True):
        model, _ = load_checkpoint(tiny_model_path, dtype=torch.float32)
        model.requires_grad_(False)
        if fused:
            kernels.enable(model)
        errors[fused] = (_evaluate(model, structures)["forces"] - exact).abs().max().item()
    assert errors[True] < 3 * errors[False] + 1e-7


def test_scripting_a_fused_model_keeps_the_torch_ops(tiny_model_path):
    model, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
    model.requires_grad_(False)
    structures = _awkward_batch(model.cutoff)[:2]
    ref = _evaluate(model, structures)
    kernels.enable(model)
    scripted = torch.jit.script(ForceField(model))
    batch = collate([atoms_to_graph(a, model.cutoff) for a in structures])
    vectors = edge_vectors(batch.positions, batch.cell, batch.edge_index, batch.unit_shifts, batch.batch)
    out = scripted(batch.numbers, batch.edge_index, vectors, batch.batch, batch.num_graphs, True, True, False)
    torch.testing.assert_close(out["forces"], ref["forces"], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# refusals


def test_fused_model_refuses_double_backward(tiny_model_path):
    model, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
    model.requires_grad_(False)
    kernels.enable(model)
    batch = collate([atoms_to_graph(bulk("Si", "diamond", a=5.43), model.cutoff)])
    vectors = edge_vectors(batch.positions, batch.cell, batch.edge_index, batch.unit_shifts, batch.batch)
    out = ForceField(model)(batch.numbers, batch.edge_index, vectors, batch.batch, 1, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|differentiate"):
        out["forces"].square().sum().backward()


def test_fused_model_refuses_trainable_weights(tiny_model_path):
    model, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
    kernels.enable(model)  # weights still require grad: a training setup
    with pytest.raises(RuntimeError, match="kernels.disable"):
        _evaluate(model, [bulk("Si", "diamond", a=5.43)])
    kernels.disable(model)
    _evaluate(model, [bulk("Si", "diamond", a=5.43)])


def test_without_a_compiler_the_calculator_uses_torch_ops(tiny_model_path, tmp_path):
    code = textwrap.dedent(f"""
        import torch
        from ase.build import bulk
        from gaunt_md.calculator import GauntCalculator
        calc = GauntCalculator({str(tiny_model_path)!r}, device="cpu")
        assert calc.fused is False and calc.parameters["fused"] is False
        atoms = bulk("Si", "diamond", a=5.43)
        atoms.calc = calc
        assert abs(atoms.get_potential_energy()) < 1e6
        try:
            GauntCalculator({str(tiny_model_path)!r}, device="cpu", fused=True)
        except RuntimeError as error:
            assert "could not be built" in str(error) and "no-such-compiler" in str(error), error
        else:
            raise AssertionError("fused=True without a compiler must raise")
    """)
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "GAUNT_MD_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_calculator_parameters_record_the_path(tiny_model_path):
    from gaunt_md.calculator import GauntCalculator

    fused = GauntCalculator(tiny_model_path, device="cpu")
    plain = GauntCalculator(tiny_model_path, device="cpu", fused=False)
    assert fused.parameters["fused"] is True and fused.parameters["radial_intervals"] == kernels.DEFAULT_RADIAL_INTERVALS
    assert plain.parameters["fused"] is False and plain.parameters["radial_intervals"] == 0
    with pytest.raises(ValueError, match="radial_intervals"):
        GauntCalculator(tiny_model_path, device="cpu", radial_intervals=-1)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=5)
    e = {}
    for calc in (fused, plain):
        atoms.calc = calc
        e[calc.fused] = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress())
    assert abs(e[True][0] - e[False][0]) < 1e-8
    np.testing.assert_allclose(e[True][1], e[False][1], atol=1e-7)
    np.testing.assert_allclose(e[True][2], e[False][2], atol=1e-8)
