r"""Edge spherical harmonics (degrees 0..3) and lengths in one C++ pass over the edges (``csrc/harmonics.cpp``).

The model's ``o3.SphericalHarmonics(normalize=True, normalization="integral")`` evaluates the
polynomials of the unit edge vector with some forty elementwise torch ops over ``[E]`` arrays, and
as many again backward; for the hundred thousand edges of a batch of small cells that is a few
percent of a call. The kernel computes the same numbers (e3nn's formulas, frame and order,
:mod:`gaunt_md.so3.harmonics`) and their vector-Jacobian product per edge.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from gaunt_md.native.build import pointer, require_library, suffix, threads_for

#: Highest degree the kernel writes out.
MAX_DEGREE = 3

#: Below this many edges the harmonics run on one thread (see threads_for).
PARALLEL_EDGES = 8192


class _FusedEdgeHarmonics(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vectors, l_max):  # type: ignore[override]
        out = torch.empty((vectors.shape[0], (l_max + 1) ** 2), dtype=vectors.dtype)
        lengths = torch.empty(vectors.shape[0], dtype=vectors.dtype)
        getattr(require_library(), f"gaunt_edge_harmonics_forward_{suffix(vectors.dtype)}")(
            vectors.shape[0], l_max, pointer(vectors), pointer(out), pointer(lengths),
            threads_for(vectors.shape[0], PARALLEL_EDGES),
        )
        ctx.save_for_backward(vectors)
        ctx.l_max = l_max
        return out, lengths

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_lengths):  # type: ignore[override]
        (vectors,) = ctx.saved_tensors
        if grad_out is None:  # only the lengths were used
            grad_out = vectors.new_zeros(vectors.shape[0], (ctx.l_max + 1) ** 2)
        grad_out = grad_out.contiguous()
        grad_lengths = None if grad_lengths is None else grad_lengths.contiguous()
        grad_vectors = torch.empty_like(vectors)
        getattr(require_library(), f"gaunt_edge_harmonics_backward_{suffix(vectors.dtype)}")(
            vectors.shape[0], ctx.l_max, pointer(vectors), pointer(grad_out), pointer(grad_lengths),
            pointer(grad_vectors), threads_for(vectors.shape[0], PARALLEL_EDGES),
        )
        return grad_vectors, None


def edge_geometry(vectors: torch.Tensor, l_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal real spherical harmonics ``[E, (l_max+1)^2]`` and lengths ``[E]`` of ``vectors
    [E, 3]``, differentiable once; ``l_max <= 3``. Zero vectors give ``Y_00`` only, as e3nn's do."""
    if not 0 <= l_max <= MAX_DEGREE:
        raise ValueError(f"the fused edge harmonics go up to l = {MAX_DEGREE}, got l_max = {l_max}")
    if vectors.dim() != 2 or vectors.shape[1] != 3:
        raise ValueError(f"expected edge vectors [E, 3], got {tuple(vectors.shape)}")
    return _FusedEdgeHarmonics.apply(vectors.contiguous(), int(l_max))


def edge_harmonics(vectors: torch.Tensor, l_max: int) -> torch.Tensor:
    """The harmonics of :func:`edge_geometry` alone."""
    return edge_geometry(vectors, l_max)[0]
