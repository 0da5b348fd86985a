r"""The Gaunt product basis as one C++ pass per (node, channel) row (``csrc/product_basis.cpp``).

:class:`~gaunt_md.model.blocks.GauntProductBasis` computes
``B[b, k] = sum_nu w[b, nu, deg k] Proj_k(f_b^nu) / sigma_{nu, deg k}`` with torch ops that write
the grid values of every power, ``[N C, nu, G]``, and read them back (forward and backward).
Projection is linear, so the weighted sum can move onto the grid: per output degree ``l`` one
polynomial ``P_l(f) = sum_nu c[b, nu, l] f^nu`` (Horner), then one projection,

.. math::

    B_{b,k} = \sum_g \tilde Y_{k g}\, P_{\deg k}\big(f_b(\hat s_g)\big), \qquad
    f_b(\hat s_g) = \sum_j a_{b j} Y_{j g},

with ``Ytilde`` the projection table times the quadrature weights. Rows are the model's
degree-major features' last axis, so the kernel takes a SIMD vector of consecutive rows at a time
through the grid. Backward: ``dL/da`` only (inference: the weights are frozen).

On a grid of antipodal pairs with equal weights (Lebedev rules), ``Y_j(-x) = (-1)^{\deg j} Y_j(x)``:
the tables then hold one point of each pair (``paired=True``, :func:`~gaunt_md.so3.grid.antipodal_halves`),
``f(\pm x) = E(x) \pm O(x)`` from the even- and odd-degree sums, and synthesis and projection
cost half.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from gaunt_md.native.build import pointer, require_library, suffix, threads_for

#: Below this many (node, channel) rows the product basis runs on one thread (see threads_for).
PARALLEL_ROWS = 4096


class _FusedProductBasis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, coef, synthesis, projection, paired):  # type: ignore[override]
        lib = require_library()
        k_in, rows = a.shape
        nu_max, l_out1, _ = coef.shape
        k_out, grid = projection.shape
        head = (rows, k_in, k_out, grid, nu_max, l_out1, int(paired), pointer(a), pointer(coef), pointer(synthesis),
                pointer(projection))
        out = torch.empty((k_out, rows), dtype=a.dtype)
        threads = threads_for(rows, PARALLEL_ROWS)
        _check(getattr(lib, f"gaunt_product_forward_{suffix(a.dtype)}")(*head, pointer(out), threads), head)
        ctx.save_for_backward(a, coef, synthesis, projection)  # keeps ctx.head's pointers valid
        ctx.head = head
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        a = ctx.saved_tensors[0]
        grad_out = grad_out.contiguous()
        grad_a = torch.empty_like(a)
        _check(getattr(require_library(), f"gaunt_product_backward_{suffix(a.dtype)}")(
            *ctx.head, pointer(grad_out), pointer(grad_a), threads_for(ctx.head[0], PARALLEL_ROWS)
        ), ctx.head)
        return grad_a, None, None, None, None


def _check(status: int, head: tuple) -> None:
    if status != 0:
        raise ValueError(
            f"the fused product basis supports K_in, K_out <= {MAX_COEFFICIENTS} and nu_max (L_out + 1) <= "
            f"{MAX_COEFFICIENTS}; got K_in={head[1]}, K_out={head[2]}, nu_max={head[4]}, L_out+1={head[5]}"
        )


#: Largest K_in, K_out and nu_max (L_out + 1) of the kernel (``kMaxKIn`` etc. in the C++ source).
MAX_COEFFICIENTS = 64


def supports(k_in: int, l_out: int, nu_max: int) -> bool:
    """Whether the kernel takes a product basis of this shape (else the model keeps the torch ops)."""
    return max(k_in, (l_out + 1) ** 2, nu_max * (l_out + 1)) <= MAX_COEFFICIENTS


def fused_product_basis(
    a: torch.Tensor,  # [K, B]: row b = (node, channel) in column b (the model's degree-major features)
    coef: torch.Tensor,  # [nu_max, L_out+1, B]: c[nu-1, l, b]
    synthesis: torch.Tensor,  # [K, G]
    projection: torch.Tensor,  # [K_out, G], quadrature weights included; K_out = (L_out+1)^2
    paired: bool = False,  # the G points are one of each antipodal pair of the grid
) -> torch.Tensor:
    """``out [K_out, B]``, differentiable once in ``a`` (not in ``coef``: inference only)."""
    if coef.requires_grad and torch.is_grad_enabled():
        raise RuntimeError("the fused product basis has no gradient for its weights (inference only)")
    dtype = a.dtype
    return _FusedProductBasis.apply(
        a.contiguous(), coef.to(dtype).contiguous(), synthesis.to(dtype).contiguous(),
        projection.to(dtype).contiguous(), bool(paired),
    )
