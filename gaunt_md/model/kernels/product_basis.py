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

import torch
from torch.autograd.function import once_differentiable

from gaunt_md.model.kernels.build import pointer, require_library, suffix


class _FusedProductBasis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, coef, synthesis, projection, deg_out):  # type: ignore[override]
        lib = require_library()
        rows, k_in = a.shape
        _, nu_max, l_out1 = coef.shape
        k_out, grid = projection.shape
        head = (rows, k_in, k_out, grid, nu_max, l_out1, pointer(a), pointer(coef), pointer(synthesis),
                pointer(projection), pointer(deg_out))
        out = torch.empty((rows, k_out), dtype=a.dtype)
        getattr(lib, f"gaunt_product_forward_{suffix(a.dtype)}")(*head, pointer(out), torch.get_num_threads())
        ctx.save_for_backward(a, coef, synthesis, projection, deg_out)  # keeps ctx.head's pointers valid
        ctx.head = head
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        a, synthesis = ctx.saved_tensors[0], ctx.saved_tensors[2]
        grad_out = grad_out.contiguous()
        grad_a = torch.empty_like(a)
        synthesis_t = synthesis.t().contiguous()  # [G, K]
        getattr(require_library(), f"gaunt_product_backward_{suffix(a.dtype)}")(
            *ctx.head, pointer(synthesis_t), pointer(grad_out), pointer(grad_a), torch.get_num_threads()
        )
        return grad_a, None, None, None, None


def fused_product_basis(
    a: torch.Tensor,  # [B, K]
    coef: torch.Tensor,  # [B, nu_max, L_out+1]: c[b, nu-1, l]
    synthesis: torch.Tensor,  # [K, G]
    projection: torch.Tensor,  # [K_out, G], quadrature weights included
    deg_out: torch.Tensor,  # [K_out] int64
) -> torch.Tensor:
    """``B [B, K_out]``, differentiable once in ``a`` (not in ``coef``: inference only)."""
    if coef.requires_grad and torch.is_grad_enabled():
        raise RuntimeError("the fused product basis has no gradient for its weights (inference only)")
    dtype = a.dtype
    # zero grid columns up to a multiple of 16 points: whole SIMD vectors, no remainder loops
    # (f = 0 there, and every power of it is 0: the result is unchanged)
    pad = -synthesis.shape[1] % 16
    if pad:
        synthesis = torch.nn.functional.pad(synthesis, (0, pad))
        projection = torch.nn.functional.pad(projection, (0, pad))
    return _FusedProductBasis.apply(
        a.contiguous(), coef.to(dtype).contiguous(), synthesis.to(dtype).contiguous(),
        projection.to(dtype).contiguous(), deg_out.contiguous(),
    )
