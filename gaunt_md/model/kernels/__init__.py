"""Fused C++ kernels for CPU inference: edge convolution, Gaunt product basis, edge harmonics.

=================  ==============================================================================
module             contents
=================  ==============================================================================
``build``          compile ``csrc/*.cpp`` on first use, load with ctypes, cache per user and CPU
``edge_conv``      the edge convolution in one pass over the edges; tabulated radial weights
``product_basis``  synthesis, powers, weighted sum and projection in one pass per row
``harmonics``      the edge spherical harmonics (degrees <= 3) and their derivative, one pass
``edges``          edge vectors from positions; forces and strain derivatives from dE/dr_e
=================  ==============================================================================

:func:`enable` switches one :class:`~gaunt_md.model.potential.GauntPotential` to them (what
:class:`~gaunt_md.calculator.GauntCalculator` does on CPU); :func:`disable` switches it back.
They give the model's numbers (exactly, or within the table's error with tabulated radial
weights), first derivatives only: training (force losses) and TorchScript use the torch ops.
"""

from __future__ import annotations

import copy

import torch

from gaunt_md.model.kernels.edge_conv import TABLE_LAYOUTS, block_table, simd_lanes, tabulate_radial
from gaunt_md.model.kernels.edges import edge_forces, edge_vectors
from gaunt_md.model.kernels.harmonics import MAX_DEGREE
from gaunt_md.model.kernels.product_basis import supports
from gaunt_md.native.build import available, load_error
from gaunt_md.native.memory import huge_page_empty
from gaunt_md.so3.grid import antipodal_halves, smallest_exact_grid

__all__ = [
    "DEFAULT_RADIAL_INTERVALS", "MAX_FOLDED_TABLE_BYTES", "available", "disable", "edge_forces", "edge_vectors", "enable",
    "load_error",
]

DEFAULT_RADIAL_INTERVALS = 2048


#: Largest first-layer table (bytes) that :func:`enable` folds the species in (one set of
#: columns per species; 2048 intervals, 6 species, 32 channels: 25 MB in float64 or float32).
MAX_FOLDED_TABLE_BYTES = 256 * 2**20


def enable(
    potential: torch.nn.Module, radial_intervals: int = DEFAULT_RADIAL_INTERVALS, fold_first_layer: bool = True
) -> bool:
    """Run ``potential`` through the fused kernels on CPU; ``True`` if they could be built.

    ``radial_intervals > 0`` also replaces each layer's radial MLP by its cubic Hermite table on
    ``[0, cutoff]`` with that many intervals (2048: radial weights within 1e-9 of the MLP,
    relative, for the shipped models, tests/model/test_kernels.py; energies and forces in
    benchmarks/radial_table.py): knot values and slopes in float64, coefficients in float32
    (:data:`~gaunt_md.model.kernels.edge_conv.TABLE_LAYOUTS`), in huge pages, and in the
    register-blocked kernels' memory order (:func:`~gaunt_md.model.kernels.edge_conv.block_table`)
    when the channels fill whole SIMD vectors. ``0`` keeps the MLP. The
    weights must be frozen (``requires_grad_(False)``): the tables are a snapshot of them. Call it
    after the last ``.to(dtype)``. Changes only this model instance, and only its eager CPU
    forward (TorchScript and CUDA keep the torch ops).

    The product bases run on the exact grid with the fewest points, one point of each antipodal
    pair where the grid has them (:func:`_grid_tables`); the edge harmonics come from one C++ pass
    when the edge degree is at most 3.

    ``fold_first_layer`` (with tables): the first layer's node features are the species
    embedding, so everything between it and the product basis is linear in the radial weights
    with species-only factors: ``linear_message(conv(linear_up(W_z)))`` has the radial weights
    ``R'_{z,l}(r) = sum_c R_{l,c}(r) linear_up(W_z)_c M_{l,c,c'}`` (``M`` the message linear
    map), one set per sender species ``z``. They are tabulated instead of ``R``, and the layer
    skips its two per-degree linear maps (the largest matmuls of the model: ``[16, N, C] x
    [C, C]`` forward and backward). Not done when the table would exceed
    :data:`MAX_FOLDED_TABLE_BYTES`.
    """
    if radial_intervals < 0:
        raise ValueError(f"radial_intervals must be >= 0, got {radial_intervals}")
    if not available():
        return False
    dtype = potential.embedding.dtype
    basis = copy.deepcopy(potential.radial_basis).to(torch.float64)
    for t, layer in enumerate(potential.layers):
        conv = layer.conv
        conv.folded = False
        if radial_intervals > 0:
            mlp = copy.deepcopy(conv.radial).to(torch.float64)

            def radial_function(r: torch.Tensor, mlp=mlp, columns=conv.fused_columns) -> torch.Tensor:
                return mlp(basis(r), columns)

            n_species, cols = potential.embedding.shape[0], conv.fused_columns.numel()
            layout = TABLE_LAYOUTS[dtype]
            rows = (radial_intervals + 1, 2) if layout == "knots" else (radial_intervals, 4)
            folded_bytes = rows[0] * rows[1] * n_species * cols * potential.embedding.element_size()
            fold = t == 0 and conv.l_in == 0 and fold_first_layer and folded_bytes <= MAX_FOLDED_TABLE_BYTES
            sets = n_species if fold else 1
            table = torch.empty((*rows, sets * cols), dtype=dtype)
            if fold:
                h_up, w = _first_layer_factors(potential, layer)
                for z in range(n_species):  # one species at a time: float64 temporaries of one set only
                    tabulate_radial(_folded_radial(radial_function, h_up[z], w), potential.cutoff, radial_intervals,
                                    dtype, out=table[:, :, z * cols:(z + 1) * cols], layout=layout)
                conv.folded = True
            else:
                tabulate_radial(radial_function, potential.cutoff, radial_intervals, dtype, out=table, layout=layout)
            # in huge pages: edges read the table's rows at random (fewer TLB misses); in the
            # register-blocked kernels' memory order where the channels fill whole vectors
            final = huge_page_empty(tuple(table.shape), dtype)
            if conv.c % simd_lanes(dtype) == 0:
                final = block_table(table, conv.c, sets, out=final)
            else:
                final.copy_(table)
            del table
            conv.radial_table = final.to(conv.coupling_sparse.device)
            conv.radial_dx = potential.cutoff / radial_intervals
        else:
            conv.radial_table = torch.zeros(0, dtype=dtype, device=conv.coupling_sparse.device)
        conv.fused = True
        product = layer.product
        product.fused = supports(product.powers.k, product.degree_starts.numel() - 1, product.weight.shape[2])
        if product.fused:
            product.fused_synthesis, product.fused_projection, product.fused_paired = _grid_tables(product.powers)
    potential.radial_tabulated = radial_intervals > 0
    potential.fused_harmonics = potential.config.l_max_edge <= MAX_DEGREE
    return True


def _grid_tables(powers: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Synthesis ``[K_in, G]`` and weighted projection ``[K_out, G]`` tables of the grid with the
    fewest points that is exact for ``powers`` (a Lebedev rule, shipped up to order 31: 50 and 38
    points for the shipped models' two layers, against 66 and 50 of the module's Gauss-Legendre
    grids), and whether they hold only one point of each antipodal pair (the kernel makes the
    other by parity; Lebedev rules are symmetric under inversion). Every exact grid gives the
    same product basis, up to rounding."""
    grid = smallest_exact_grid(powers.nu_max * powers.l_max + powers.l_out_max)
    dtype, device = powers.t.table.dtype, powers.t.table.device
    y = torch.from_numpy(grid.harmonics(max(powers.l_max, powers.l_out_max))).T  # [K, G] float64
    weights = torch.from_numpy(grid.weights)
    half = antipodal_halves(grid.points, grid.weights)
    if half is not None:
        index = torch.from_numpy(half)
        y, weights = y.index_select(1, index), weights.index_select(0, index)
    synthesis = y[: powers.k].contiguous()
    projection = (y[: powers.k_out] * weights).contiguous()
    return synthesis.to(dtype=dtype, device=device), projection.to(dtype=dtype, device=device), half is not None


def _first_layer_factors(potential: torch.nn.Module, layer: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The species-only factors folded into the first layer's table (see :func:`enable`), float64:
    its features per species ``linear_up(W_z)`` ``[S, C]`` and the message map ``[L_A+1, C, C']``."""
    with torch.no_grad():
        embedding = potential.embedding.detach().to(torch.float64)  # [S, C]
        h_up = copy.deepcopy(layer.linear_up).to(torch.float64)(embedding.unsqueeze(0))[0]  # [S, C]
        message = layer.linear_message
        w = message.weight.detach().to(torch.float64) * message.scale  # [L_A+1, C, C']
    return h_up, w


def _folded_radial(radial_function, h_up: torch.Tensor, w: torch.Tensor):
    """``r -> R'_z[r, (l3, c')] = sum_c R[r, l3, c] h_up[c] w[l3, c, c']``: the first layer's radial
    weights of one sender species with its features ``h_up [C]`` and the message map folded in."""
    channels = h_up.shape[0]

    def folded(r: torch.Tensor) -> torch.Tensor:
        radial = radial_function(r).view(r.shape[0], -1, channels)  # [M, (l3, l1 = 0), C]
        return torch.einsum("mlc,lcd->mld", radial * h_up, w).reshape(r.shape[0], -1)  # [M, (L_A+1, C')]

    return folded


def disable(potential: torch.nn.Module) -> None:
    """Back to the torch ops (radial MLP, no tables)."""
    potential.radial_tabulated = False
    potential.fused_harmonics = False
    for layer in potential.layers:
        layer.conv.fused = False
        layer.conv.folded = False
        layer.product.fused_synthesis = layer.product.fused_synthesis.new_zeros(0)
        layer.product.fused_projection = layer.product.fused_projection.new_zeros(0)
        layer.product.fused_paired = False
        layer.conv.radial_table = layer.conv.radial_table.new_zeros(0)
        layer.product.fused = False
