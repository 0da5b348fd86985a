r"""Chunked grid products with hand-written backward passes (eager mode only).

Why: a grid product written as plain tensor ops allocates ``[B, G]`` grid tensors (166 MB each for
``N = 1000, C = 128, L = 8``) and autograd keeps them for the backward pass. On CPU the cost of
fresh large allocations (page faults, zeroing) is comparable to the GEMMs themselves. Here the rows
are processed in chunks whose grid buffers stay in cache and are reused; the backward pass
recomputes the cheap syntheses instead of storing grids, so only the inputs are saved.

The Gaunt product is one instance of the trilinear form
:math:`T(a, b, c) = \sum_g w_g\, (a Y_a)_g (b Y_b)_g (c Y_c)_g`: the product is
:math:`z = \partial T / \partial c`, and its gradients are the same form with the roles permuted,

.. math::

    z = \big((a Y_a) \odot w (b Y_b)\big) Y_c^T, \quad
    \bar a = \big((b Y_b) \odot w (\bar z Y_c)\big) Y_a^T, \quad
    \bar b = \big((a Y_a) \odot w (\bar z Y_c)\big) Y_b^T,

so :class:`_Trilinear`'s backward calls itself and every derivative order stays chunked.
Powers ``Proj(f^nu)`` use :class:`_Powers` (chunked forward), :class:`_PowersGrad` (chunked
gradient) and explicit second derivatives (chunked without a graph, plain differentiable ops
when a further derivative is requested).

TorchScript cannot compile ``autograd.Function``; the modules in :mod:`gaunt_md.so3.gaunt` run the
plain tensor-op path when scripted (same numbers, more memory).
"""

from __future__ import annotations

import torch

from gaunt_md.so3.transforms import GridTransform

#: bytes of all ``[rows, G]`` grid buffers of one chunk together: small enough to stay in cache,
#: large enough that the per-chunk op overhead stays small (tuned with benchmarks/tensor_product.py).
CHUNK_BYTES = 2 << 20


def chunk_rows(grid_size: int, itemsize: int, fields: int = 1) -> int:
    """Rows per chunk so that ``fields`` grid buffers ``[rows, grid_size]`` fit in ``CHUNK_BYTES``."""
    rows = CHUNK_BYTES // max(1, grid_size * itemsize * fields)
    return max(64, rows - rows % 16)


def _synth(t: GridTransform, x: torch.Tensor, weighted: bool, out: torch.Tensor) -> torch.Tensor:
    if t.separable:
        return t.synthesis(x, weighted)
    return torch.matmul(x, t.table_w if weighted else t.table, out=out)


def _adjoint(t: GridTransform, h: torch.Tensor, out: torch.Tensor) -> None:
    if t.separable:
        out.copy_(t.adjoint(h))
    else:
        torch.matmul(h, t.table.t(), out=out)


def _same(a: torch.Tensor, b: torch.Tensor, ta: GridTransform, tb: GridTransform) -> bool:
    """True when ``a`` and ``b`` hold the same values on the same grid (so one synthesis serves)."""
    return (
        ta.l_max == tb.l_max
        and a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
    )


@torch.no_grad()
def trilinear_forward(a: torch.Tensor, b: torch.Tensor, ta: GridTransform, tb: GridTransform, tc: GridTransform) -> torch.Tensor:
    """``((a Y_a) * w (b Y_b)) Y_c^T`` for ``a [B, K_a]``, ``b [B, K_b]`` -> ``[B, K_c]``, chunked."""
    n, g = a.shape[0], ta.grid_size
    same = _same(a, b, ta, tb)
    out = torch.empty(n, tc.num_coefficients, dtype=a.dtype, device=a.device)
    rows = max(1, min(n, chunk_rows(g, a.element_size(), 2)))
    buf_a = torch.empty(rows, g, dtype=a.dtype, device=a.device)
    buf_b = torch.empty(rows, g, dtype=a.dtype, device=a.device)
    for i in range(0, n, rows):
        j = min(n, i + rows)
        fa = _synth(ta, a[i:j], False, buf_a[: j - i])
        if same:
            fa.mul_(fa).mul_(ta.weights)
            h = fa
        else:
            h = fa.mul_(_synth(tb, b[i:j], True, buf_b[: j - i]))
        _adjoint(tc, h, out[i:j])
    return out


class _Trilinear(torch.autograd.Function):
    """``z = ((a Y_a) * w (b Y_b)) Y_c^T``; backward is the same form with permuted roles."""

    @staticmethod
    def forward(ctx, a, b, ta, tb, tc):  # type: ignore[override]
        a, b = a.contiguous(), b.contiguous()
        ctx.save_for_backward(a, b)
        ctx.maps = (ta, tb, tc)
        return trilinear_forward(a, b, ta, tb, tc)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        a, b = ctx.saved_tensors
        ta, tb, tc = ctx.maps
        grad = grad.contiguous()
        ga = gb = None
        if _same(a, b, ta, tb) and ctx.needs_input_grad[0] and ctx.needs_input_grad[1]:
            ga = _Trilinear.apply(b, grad, tb, tc, ta)
            return ga, ga, None, None, None
        if ctx.needs_input_grad[0]:
            ga = _Trilinear.apply(b, grad, tb, tc, ta)
        if ctx.needs_input_grad[1]:
            gb = _Trilinear.apply(a, grad, ta, tc, tb)
        return ga, gb, None, None, None


def gaunt_product(x: torch.Tensor, y: torch.Tensor, t1: GridTransform, t2: GridTransform, t3: GridTransform) -> torch.Tensor:
    """Gaunt product of ``x [B, K1]`` and ``y [B, K2]`` -> ``[B, K3]`` (differentiable to any order)."""
    return _Trilinear.apply(x, y, t1, t2, t3)


# ------------------------------------------------------------------------------------------------
# Powers: z[:, nu-1] = ((a Y)^nu * w) Y_o^T, nu = 1..nu_max


def powers_grad_plain(a: torch.Tensor, gz: torch.Tensor, t: GridTransform, to: GridTransform, nu_max: int) -> torch.Tensor:
    """``d/da <gz, powers(a)>`` with plain tensor ops; ``gz [B, nu_max, K_out]`` -> ``[B, K]``."""
    b, g = a.shape[0], t.grid_size
    f = t.synthesis(a)  # [B, G]
    q = to.synthesis(gz.reshape(b * nu_max, -1), True).view(b, nu_max, g)  # w * (gz Y_o)
    acc = q[:, nu_max - 1] * float(nu_max)
    for nu in range(nu_max - 1, 0, -1):  # Horner: sum_nu nu f^(nu-1) q_nu
        acc = acc * f + q[:, nu - 1] * float(nu)
    return t.adjoint(acc)


def powers_grad_grad_plain(
    a: torch.Tensor, gz: torch.Tensor, gamma: torch.Tensor, t: GridTransform, to: GridTransform, nu_max: int
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Partial derivatives of :math:`\langle \gamma, g_a\rangle` (``g_a = powers_grad_plain``) with
    respect to ``a`` and ``gz``, with ``r = S gamma``:

    ``d/da = S^T[r * sum_nu nu (nu-1) f^(nu-2) q_nu]``, ``d/dgz_nu = Y_o^T[w * nu f^(nu-1) r]``.
    """
    b, g = a.shape[0], t.grid_size
    f = t.synthesis(a)  # [B, G]
    r = t.synthesis(gamma)  # [B, G]
    p = r * t.weights  # nu f^(nu-1) r w, nu = 1
    terms = [p]
    for nu in range(2, nu_max + 1):
        p = p * f
        terms.append(p * float(nu))
    dgz = to.adjoint(torch.stack(terms, dim=1).reshape(b * nu_max, g)).view(gz.shape)
    if nu_max < 2:
        return torch.zeros_like(a), dgz
    q = to.synthesis(gz.reshape(b * nu_max, -1), True).view(b, nu_max, g)  # w * (gz Y_o)
    acc = q[:, nu_max - 1] * float(nu_max * (nu_max - 1))
    for nu in range(nu_max - 1, 1, -1):
        acc = acc * f + q[:, nu - 1] * float(nu * (nu - 1))
    return t.adjoint(acc * r), dgz


@torch.no_grad()
def _powers_forward(a: torch.Tensor, t: GridTransform, to: GridTransform, nu_max: int) -> torch.Tensor:
    n, g = a.shape[0], t.grid_size
    k_out = to.num_coefficients
    out = torch.empty(n, nu_max, k_out, dtype=a.dtype, device=a.device)
    rows = max(1, min(n, chunk_rows(g, a.element_size(), nu_max + 1)))
    buf_f = torch.empty(rows, g, dtype=a.dtype, device=a.device)
    buf_p = torch.empty(rows, nu_max, g, dtype=a.dtype, device=a.device)
    for i in range(0, n, rows):
        j = min(n, i + rows)
        f = _synth(t, a[i:j], False, buf_f[: j - i])
        p = buf_p[: j - i]
        torch.mul(f, t.weights, out=p[:, 0])
        for nu in range(1, nu_max):
            torch.mul(p[:, nu - 1], f, out=p[:, nu])
        _adjoint(to, p.view(-1, g), out[i:j].view(-1, k_out))
    return out


@torch.no_grad()
def _powers_grad(a: torch.Tensor, gz: torch.Tensor, t: GridTransform, to: GridTransform, nu_max: int) -> torch.Tensor:
    n, g = a.shape[0], t.grid_size
    out = torch.empty_like(a)
    rows = max(1, min(n, chunk_rows(g, a.element_size(), nu_max + 2)))
    buf_f = torch.empty(rows, g, dtype=a.dtype, device=a.device)
    buf_q = torch.empty(rows * nu_max, g, dtype=a.dtype, device=a.device)
    buf_acc = torch.empty(rows, g, dtype=a.dtype, device=a.device)
    for i in range(0, n, rows):
        j = min(n, i + rows)
        r = j - i
        f = _synth(t, a[i:j], False, buf_f[:r])
        q = _synth(to, gz[i:j].reshape(r * nu_max, -1), True, buf_q[: r * nu_max]).view(r, nu_max, g)
        acc = torch.mul(q[:, nu_max - 1], float(nu_max), out=buf_acc[:r])
        for nu in range(nu_max - 1, 0, -1):
            acc.mul_(f).add_(q[:, nu - 1], alpha=float(nu))
        _adjoint(t, acc, out[i:j])
    return out


class _Powers(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, t, to, nu_max):  # type: ignore[override]
        a = a.contiguous()
        ctx.save_for_backward(a)
        ctx.maps = (t, to, nu_max)
        return _powers_forward(a, t, to, nu_max)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (a,) = ctx.saved_tensors
        t, to, nu_max = ctx.maps
        return _PowersGrad.apply(a, grad.contiguous(), t, to, nu_max), None, None, None


class _PowersGrad(torch.autograd.Function):
    """Gradient of the powers, ``ga = d/da <gz, powers(a)>``; its backward uses the explicit second
    derivatives (:func:`powers_grad_grad_plain`): chunked without a graph, plain ops with one."""

    @staticmethod
    def forward(ctx, a, gz, t, to, nu_max):  # type: ignore[override]
        ctx.save_for_backward(a, gz)
        ctx.maps = (t, to, nu_max)
        return _powers_grad(a, gz, t, to, nu_max)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        a, gz = ctx.saved_tensors
        t, to, nu_max = ctx.maps
        grad = grad.contiguous()
        if torch.is_grad_enabled():  # create_graph: differentiable plain ops, any order
            da, dgz = powers_grad_grad_plain(a, gz, grad, t, to, nu_max)
            return da, dgz, None, None, None
        da, dgz = torch.empty_like(a), torch.empty_like(gz)
        rows = max(1, min(a.shape[0], chunk_rows(t.grid_size, a.element_size(), 2 * nu_max + 3)))
        for i in range(0, a.shape[0], rows):
            j = min(a.shape[0], i + rows)
            da[i:j], dgz[i:j] = powers_grad_grad_plain(a[i:j], gz[i:j], grad[i:j], t, to, nu_max)
        return da, dgz, None, None, None


def gaunt_powers(a: torch.Tensor, t: GridTransform, to: GridTransform, nu_max: int) -> torch.Tensor:
    """Projected powers ``[B, K] -> [B, nu_max, K_out]`` (differentiable to any order)."""
    return _Powers.apply(a, t, to, nu_max)
