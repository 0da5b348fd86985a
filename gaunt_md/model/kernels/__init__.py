"""Fused C++ kernels for inference on CPU: the edge convolution and the Gaunt product basis.

=================  ==============================================================================
module             contents
=================  ==============================================================================
``build``          compile ``csrc/*.cpp`` on first use, load with ctypes, cache per user and CPU
``edge_conv``      the edge convolution in one pass over the edges; tabulated radial weights
``product_basis``  synthesis, powers, weighted sum and projection in one pass per row
=================  ==============================================================================

:func:`enable` switches one :class:`~gaunt_md.model.potential.GauntPotential` to them (what
:class:`~gaunt_md.calculator.GauntCalculator` does on CPU); :func:`disable` switches it back.
They give the model's numbers (exactly, or within the table's error with tabulated radial
weights), first derivatives only: training (force losses) and TorchScript use the torch ops.
"""

from __future__ import annotations

import copy

import torch

from gaunt_md.native.build import available, load_error
from gaunt_md.model.kernels.edge_conv import tabulate_radial
from gaunt_md.model.kernels.product_basis import supports

__all__ = ["DEFAULT_RADIAL_INTERVALS", "available", "disable", "enable", "load_error"]

DEFAULT_RADIAL_INTERVALS = 2048


def enable(potential: torch.nn.Module, radial_intervals: int = DEFAULT_RADIAL_INTERVALS) -> bool:
    """Run ``potential`` through the fused kernels on CPU; ``True`` if they could be built.

    ``radial_intervals > 0`` also replaces each layer's radial MLP by its cubic Hermite table on
    ``[0, cutoff]`` with that many intervals (2048: radial weights within 1e-9 of the MLP,
    relative, for the shipped models, tests/model/test_kernels.py; energies and forces in
    benchmarks/radial_table.py); ``0`` keeps the MLP. The
    weights must be frozen (``requires_grad_(False)``): the tables are a snapshot of them. Call it
    after the last ``.to(dtype)``. Changes only this model instance, and only its eager CPU
    forward (TorchScript and CUDA keep the torch ops).
    """
    if radial_intervals < 0:
        raise ValueError(f"radial_intervals must be >= 0, got {radial_intervals}")
    if not available():
        return False
    dtype = potential.embedding.dtype
    basis = copy.deepcopy(potential.radial_basis).to(torch.float64)
    for layer in potential.layers:
        conv = layer.conv
        if radial_intervals > 0:
            mlp = copy.deepcopy(conv.radial).to(torch.float64)

            def radial_function(r: torch.Tensor, mlp=mlp, columns=conv.fused_columns) -> torch.Tensor:
                return mlp(basis(r), columns)

            table = tabulate_radial(radial_function, potential.cutoff, radial_intervals, dtype)
            conv.radial_table = table.to(conv.coupling_sparse.device)
            conv.radial_dx = potential.cutoff / radial_intervals
        else:
            conv.radial_table = torch.zeros(0, dtype=dtype, device=conv.coupling_sparse.device)
        conv.fused = True
        product = layer.product
        product.fused = supports(product.powers.k, product.degree_starts.numel() - 1, product.weight.shape[2])
    return True


def disable(potential: torch.nn.Module) -> None:
    """Back to the torch ops (radial MLP, no tables)."""
    for layer in potential.layers:
        layer.conv.fused = False
        layer.conv.radial_table = layer.conv.radial_table.new_zeros(0)
        layer.product.fused = False
