r"""The Gaunt product basis as one C++ pass per (node, channel) row (``csrc/product_basis.cpp``).

:class:`~gaunt_md.model.blocks.GauntProductBasis` computes
``B[b, k] = sum_nu w[b, nu, deg k] Proj_k(f_b^nu) / sigma_{nu, deg k}`` with torch ops that write
the grid values of every power, ``[N C, nu, G]``, and read them back (forward and backward).
Projection is linear, so the weighted sum can move onto the grid: per output degree ``l`` one
polynomial ``P_l(f) = sum_nu c[b, nu, l] f^nu`` (Horner), then one projection,

.. math::

    B_{b,k} = \sum_g \tilde Y_{k g}\, P_{\deg k}\big(f_b(\hat s_g)\big), \qquad
    f_b(\hat s_g) = \sum_j a_{b j} Y_{j g},

with ``Ytilde`` the projection table times the quadrature weights. The kernel keeps one row's
``G`` grid values in a buffer. Backward: ``dL/da`` only (inference: the weights are frozen).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from gaunt_md.model.kernels.build import pointer, require_library, suffix


class _FusedProductBasis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, coef, synthesis, synthesis_t, projection, deg_out):  # type: ignore[override]
        lib = require_library()
        k_in, rows = a.shape
        _, nu_max, l_out1 = coef.shape
        k_out, grid = projection.shape
        head = (rows, k_in, k_out, grid, nu_max, l_out1, pointer(a), pointer(coef), pointer(synthesis),
                pointer(projection), pointer(deg_out))
        out = torch.empty((k_out, rows), dtype=a.dtype)
        getattr(lib, f"gaunt_product_forward_{suffix(a.dtype)}")(*head, pointer(out), torch.get_num_threads())
        ctx.save_for_backward(a, coef, synthesis, synthesis_t, projection, deg_out)  # keeps ctx.head's pointers valid
        ctx.head = head
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        a, synthesis_t = ctx.saved_tensors[0], ctx.saved_tensors[3]
        grad_out = grad_out.contiguous()
        grad_a = torch.empty_like(a)
        getattr(require_library(), f"gaunt_product_backward_{suffix(a.dtype)}")(
            *ctx.head, pointer(synthesis_t), pointer(grad_out), pointer(grad_a), torch.get_num_threads()
        )
        return grad_a, None, None, None, None, None


def product_tables(synthesis: torch.Tensor, projection: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """``(Y [K, Gp], Y^T [Gp, K], Yw [K_out, Gp])`` in ``dtype``, contiguous, the grid padded with zero
    points up to a multiple of 16 (whole SIMD vectors, no remainder loops; f = 0 there, and every
    power of it is 0: the result is unchanged). Made once per model by :func:`~gaunt_md.model.kernels.enable`."""
    pad = -synthesis.shape[1] % 16
    synthesis = torch.nn.functional.pad(synthesis, (0, pad)).to(dtype)
    projection = torch.nn.functional.pad(projection, (0, pad)).to(dtype)
    return synthesis.contiguous(), synthesis.t().contiguous(), projection.contiguous()


def fused_product_basis(
    a: torch.Tensor,  # [K, B]: row b = (node, channel) in column b (the model's degree-major features)
    coef: torch.Tensor,  # [B, nu_max, L_out+1]: c[b, nu-1, l]
    synthesis: torch.Tensor,  # [K, G]
    projection: torch.Tensor,  # [K_out, G], quadrature weights included
    deg_out: torch.Tensor,  # [K_out] int64
    synthesis_t: Optional[torch.Tensor] = None,  # [G, K]; with all three from product_tables, nothing is copied
) -> torch.Tensor:
    """``out [K_out, B]``, differentiable once in ``a`` (not in ``coef``: inference only)."""
    if coef.requires_grad and torch.is_grad_enabled():
        raise RuntimeError("the fused product basis has no gradient for its weights (inference only)")
    if synthesis_t is None:
        synthesis, synthesis_t, projection = product_tables(synthesis, projection, a.dtype)
    return _FusedProductBasis.apply(
        a.contiguous(), coef.to(a.dtype).contiguous(), synthesis, synthesis_t, projection, deg_out
    )
