r"""Chunked, thread-parallel grid products with hand-written backward passes (eager mode, CPU).

Why. Written as plain tensor ops, a grid product allocates ``[B, G]`` grid tensors (166 MB each
for ``N = 1000, C = 128, L = 8``) and autograd keeps them for the backward pass. On CPU, fresh
large allocations cost page faults comparable to the GEMMs themselves (measured: 155k faults and
~40% of a ``L = 6`` forward+backward). Splitting the rows into cache-sized chunks instead issues
many small ops, and with intra-op threads every op is an OpenMP fork/join: on a shared, loaded
machine each join waits for a descheduled thread, and the chunked path became 2-5x *slower* than
the plain one (measured). So:

* rows are split into contiguous parts, one per worker thread of a small pool
  (:func:`_pool`, as many workers as ``torch.get_num_threads()`` in the caller); each worker runs
  single-threaded torch ops (intra-op threads 1 in that thread only) over its part in chunks
  whose grid buffers stay in cache and are reused; the only synchronisation is the final join;
* the backward pass recomputes the cheap syntheses instead of storing grids: only inputs are saved.

The Gaunt product is one instance of the trilinear form
:math:`T(a, b, c) = \sum_g w_g\, (a Y_a)_g (b Y_b)_g (c Y_c)_g`: the product is
:math:`z = \partial T / \partial c`, and its gradients are the same form with the roles permuted,

.. math::

    z = \big((a Y_a) \odot w (b Y_b)\big) Y_c^T, \quad
    \bar a = \big((b Y_b) \odot w (\bar z Y_c)\big) Y_a^T, \quad
    \bar b = \big((a Y_a) \odot w (\bar z Y_c)\big) Y_b^T,

so :class:`_Trilinear`'s backward calls itself (or :class:`_TrilinearPair`, which computes both
gradients with one synthesis of ``z-bar``) and every derivative order runs here.
Powers ``Proj(f^nu)`` use :class:`_Powers` (forward), :class:`_PowersGrad` (gradient) and explicit
second derivatives (here without a graph; plain differentiable ops when a further derivative is
requested).

TorchScript cannot compile ``autograd.Function``; the modules in :mod:`gaunt_md.so3.gaunt` run the
plain tensor-op path when scripted or on a GPU (same numbers, more memory).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

import torch

from gaunt_md.so3.transforms import GridTransform

#: bytes of all ``[rows, G]`` grid buffers of one chunk together: small enough to stay in a core's
#: cache, large enough that the per-op overhead stays small (tuned with benchmarks/tensor_product.py).
CHUNK_BYTES = 1 << 20


def chunk_rows(grid_size: int, itemsize: int, fields: int = 1) -> int:
    """Rows per chunk so that ``fields`` grid buffers ``[rows, grid_size]`` fit in ``CHUNK_BYTES``."""
    rows = CHUNK_BYTES // max(1, grid_size * itemsize * fields)
    return max(64, rows - rows % 16)


# ------------------------------------------------------------------------------------------------
# Worker pool: one single-threaded torch worker per core


class _Pool:
    """``size`` daemon threads, each with intra-op parallelism 1 (a per-thread setting)."""

    def __init__(self, size: int) -> None:
        self.size, self.pid = size, os.getpid()
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        ready = threading.Barrier(size + 1)
        for _ in range(size):
            threading.Thread(target=self._run, args=(ready,), daemon=True, name="gaunt-md-so3").start()
        ready.wait()  # every worker has set its own thread count
        # torch.set_num_threads also records the count process-wide (read by threads created
        # later): put the caller's back. The workers keep their own per-thread setting.
        torch.set_num_threads(size)

    def _run(self, ready: threading.Barrier) -> None:
        torch.get_num_threads()  # initialise this thread's OpenMP/MKL state first
        torch.set_num_threads(1)
        ready.wait()
        while True:
            fn, lo, hi, done = self.tasks.get()
            try:
                with torch.no_grad():
                    fn(lo, hi)
                done.put(None)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                done.put(exc)


_POOLS: dict[int, _Pool] = {}
_POOL_LOCK = threading.Lock()


def _pool(size: int) -> _Pool:
    """The pool with ``size`` workers (kept per size, so changing thread counts leaks no threads)."""
    with _POOL_LOCK:
        pool = _POOLS.get(size)
        if pool is None or pool.pid != os.getpid():  # first use, or a forked child (threads gone)
            pool = _POOLS[size] = _Pool(size)
        return pool


def run_rows(n: int, rows: int, work: Callable[[int, int], None]) -> None:
    """Call ``work(lo, hi)`` on contiguous parts of ``range(n)``, one per worker, in parallel.

    ``work`` processes its part in chunks of ``rows`` and writes disjoint outputs. Runs in the
    caller (no pool) when one thread is allowed, the batch is one chunk, or the caller is a worker.
    """
    workers = min(torch.get_num_threads(), -(-n // max(1, rows)))
    if workers <= 1 or threading.current_thread().name == "gaunt-md-so3":
        with torch.no_grad():
            work(0, n)
        return
    pool = _pool(torch.get_num_threads())
    per = -(-n // workers)
    per += -per % 16
    done: queue.SimpleQueue = queue.SimpleQueue()
    parts = [(lo, min(n, lo + per)) for lo in range(0, n, per)]
    for lo, hi in parts:
        pool.tasks.put((work, lo, hi, done))
    errors = [e for e in (done.get() for _ in parts) if e is not None]
    if errors:
        raise errors[0]


# ------------------------------------------------------------------------------------------------
# Chunk kernels


def _synth(t: GridTransform, x: torch.Tensor, weighted: bool, out: torch.Tensor) -> torch.Tensor:
    if t.chunk_separable_synthesis:
        return t.synthesis_separable(x, weighted)
    return torch.matmul(x, t.table_w if weighted else t.table, out=out)


def _adjoint(t: GridTransform, h: torch.Tensor, out: torch.Tensor) -> None:
    if t.chunk_separable_adjoint:
        out.copy_(t.adjoint_separable(h))
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


def trilinear_forward(a: torch.Tensor, b: torch.Tensor, ta: GridTransform, tb: GridTransform, tc: GridTransform) -> torch.Tensor:
    """``((a Y_a) * w (b Y_b)) Y_c^T`` for ``a [B, K_a]``, ``b [B, K_b]`` -> ``[B, K_c]``."""
    n, g = a.shape[0], ta.grid_size
    same = _same(a, b, ta, tb)
    out = torch.empty(n, tc.num_coefficients, dtype=a.dtype, device=a.device)
    rows = chunk_rows(g, a.element_size(), 2)

    def work(lo: int, hi: int) -> None:
        buf_a = torch.empty(min(rows, hi - lo), g, dtype=a.dtype, device=a.device)
        buf_b = torch.empty_like(buf_a) if not same else buf_a
        for i in range(lo, hi, rows):
            j = min(hi, i + rows)
            fa = _synth(ta, a[i:j], False, buf_a[: j - i])
            if same:
                h = fa.mul_(fa).mul_(ta.weights)
            else:
                h = fa.mul_(_synth(tb, b[i:j], True, buf_b[: j - i]))
            _adjoint(tc, h, out[i:j])

    run_rows(n, rows, work)
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
        if ctx.needs_input_grad[0] and ctx.needs_input_grad[1]:  # one synthesis of grad serves both
            ga, gb = _TrilinearPair.apply(a, b, grad, ta, tb, tc)
        elif ctx.needs_input_grad[0]:
            ga = _Trilinear.apply(b, grad, tb, tc, ta)
        elif ctx.needs_input_grad[1]:
            gb = _Trilinear.apply(a, grad, ta, tc, tb)
        return ga, gb, None, None, None


def trilinear_pair_forward(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, ta: GridTransform, tb: GridTransform, tc: GridTransform
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both gradients of the product at once: ``(((b Y_b) * w (c Y_c)) Y_a^T, ((a Y_a) * w (c Y_c)) Y_b^T)``."""
    n, g = a.shape[0], ta.grid_size
    out_a = torch.empty(n, ta.num_coefficients, dtype=a.dtype, device=a.device)
    out_b = torch.empty(n, tb.num_coefficients, dtype=a.dtype, device=a.device)
    rows = chunk_rows(g, a.element_size(), 3)

    def work(lo: int, hi: int) -> None:
        buf_a = torch.empty(min(rows, hi - lo), g, dtype=a.dtype, device=a.device)
        buf_b, buf_c = torch.empty_like(buf_a), torch.empty_like(buf_a)
        for i in range(lo, hi, rows):
            j = min(hi, i + rows)
            fc = _synth(tc, c[i:j], True, buf_c[: j - i])
            _adjoint(ta, _synth(tb, b[i:j], False, buf_b[: j - i]).mul_(fc), out_a[i:j])
            _adjoint(tb, _synth(ta, a[i:j], False, buf_a[: j - i]).mul_(fc), out_b[i:j])

    run_rows(n, rows, work)
    return out_a, out_b


class _TrilinearPair(torch.autograd.Function):
    """``(g_a, g_b)`` of :class:`_Trilinear` in one pass; its backward is four trilinear forms."""

    @staticmethod
    def forward(ctx, a, b, c, ta, tb, tc):  # type: ignore[override]
        ctx.save_for_backward(a, b, c)
        ctx.maps = (ta, tb, tc)
        return trilinear_pair_forward(a, b, c, ta, tb, tc)

    @staticmethod
    def backward(ctx, grad_a, grad_b):  # type: ignore[override]
        a, b, c = ctx.saved_tensors
        ta, tb, tc = ctx.maps
        da = db = dc = None
        if grad_b is not None:  # <grad_b, g_b(a, c)>
            grad_b = grad_b.contiguous()
            if ctx.needs_input_grad[0]:
                da = _Trilinear.apply(grad_b, c, tb, tc, ta)
            if ctx.needs_input_grad[2]:
                dc = _Trilinear.apply(a, grad_b, ta, tb, tc)
        if grad_a is not None:  # <grad_a, g_a(b, c)>
            grad_a = grad_a.contiguous()
            if ctx.needs_input_grad[1]:
                db = _Trilinear.apply(grad_a, c, ta, tc, tb)
            if ctx.needs_input_grad[2]:
                dca = _Trilinear.apply(b, grad_a, tb, ta, tc)
                dc = dca if dc is None else dc + dca
        return da, db, dc, None, None, None


def gaunt_product(x: torch.Tensor, y: torch.Tensor, t1: GridTransform, t2: GridTransform, t3: GridTransform) -> torch.Tensor:
    """Gaunt product of ``x [B, K1]`` and ``y [B, K2]`` -> ``[B, K3]`` (differentiable to any order)."""
    return _Trilinear.apply(x, y, t1, t2, t3)


# ------------------------------------------------------------------------------------------------
# Powers: z[:, nu-1] = ((a Y)^nu * w) Y_o^T, nu = 1..nu_max;  f = a Y,  q_nu = w (gz_nu Y_o)


def powers_grad_grad_plain(
    a: torch.Tensor, gz: torch.Tensor, gamma: torch.Tensor, t: GridTransform, to: GridTransform, nu_max: int
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Second derivatives, as plain differentiable ops.

    The gradient of the powers is ``g_a = Y[sum_nu nu f^(nu-1) q_nu]`` (:func:`_powers_grad`). For
    an incoming ``gamma`` and ``r = gamma Y`` the partials of :math:`\langle \gamma, g_a\rangle` are
    ``d/da = Y[r * sum_nu nu (nu-1) f^(nu-2) q_nu]`` and ``d/dgz_nu = Y_o[w * nu f^(nu-1) r]``.
    """
    b, g = a.shape[0], t.grid_size
    f = t.synthesis(a)  # [B, G]
    r = t.synthesis(gamma)  # [B, G]
    p = r * t.weights  # nu f^(nu-1) r w, nu = 1
    terms = [p]
    for nu in range(2, nu_max + 1):
        p = p * f
        terms.append(p * float(nu))
    dgz = to.adjoint(torch.stack(terms, dim=1).reshape(b * nu_max, g)).reshape(gz.shape)
    if nu_max < 2:
        return torch.zeros_like(a), dgz
    q = to.synthesis(gz.reshape(b * nu_max, -1), True).view(b, nu_max, g)  # w * (gz Y_o)
    acc = q[:, nu_max - 1] * float(nu_max * (nu_max - 1))
    for nu in range(nu_max - 1, 1, -1):
        acc = acc * f + q[:, nu - 1] * float(nu * (nu - 1))
    return t.adjoint(acc * r), dgz


def _powers_forward(a: torch.Tensor, t: GridTransform, to: GridTransform, nu_max: int) -> torch.Tensor:
    n, g, k_out = a.shape[0], t.grid_size, to.num_coefficients
    out = torch.empty(n, nu_max, k_out, dtype=a.dtype, device=a.device)
    rows = chunk_rows(g, a.element_size(), nu_max + 1)

    def work(lo: int, hi: int) -> None:
        buf_f = torch.empty(min(rows, hi - lo), g, dtype=a.dtype, device=a.device)
        buf_p = torch.empty(min(rows, hi - lo), nu_max, g, dtype=a.dtype, device=a.device)
        for i in range(lo, hi, rows):
            j = min(hi, i + rows)
            f = _synth(t, a[i:j], False, buf_f[: j - i])
            p = buf_p[: j - i]
            torch.mul(f, t.weights, out=p[:, 0])
            for nu in range(1, nu_max):
                torch.mul(p[:, nu - 1], f, out=p[:, nu])
            _adjoint(to, p.view(-1, g), out[i:j].view(-1, k_out))

    run_rows(n, rows, work)
    return out


def _powers_grad(a: torch.Tensor, gz: torch.Tensor, t: GridTransform, to: GridTransform, nu_max: int) -> torch.Tensor:
    """``g_a = Y[sum_nu nu f^(nu-1) q_nu]`` (Horner in ``f``)."""
    n, g = a.shape[0], t.grid_size
    out = torch.empty_like(a)
    rows = chunk_rows(g, a.element_size(), nu_max + 2)

    def work(lo: int, hi: int) -> None:
        m = min(rows, hi - lo)
        buf_f = torch.empty(m, g, dtype=a.dtype, device=a.device)
        buf_q = torch.empty(m * nu_max, g, dtype=a.dtype, device=a.device)
        buf_acc = torch.empty(m, g, dtype=a.dtype, device=a.device)
        for i in range(lo, hi, rows):
            j = min(hi, i + rows)
            r = j - i
            f = _synth(t, a[i:j], False, buf_f[:r])
            q = _synth(to, gz[i:j].reshape(r * nu_max, -1), True, buf_q[: r * nu_max]).view(r, nu_max, g)
            acc = torch.mul(q[:, nu_max - 1], float(nu_max), out=buf_acc[:r])
            for nu in range(nu_max - 1, 0, -1):
                acc.mul_(f).add_(q[:, nu - 1], alpha=float(nu))
            _adjoint(t, acc, out[i:j])

    run_rows(n, rows, work)
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
    """Gradient of the powers, ``g_a = d/da <gz, powers(a)>``; backward by the explicit second
    derivatives (:func:`powers_grad_grad_plain`), chunked without a graph, plain ops with one."""

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
        rows = chunk_rows(t.grid_size, a.element_size(), 2 * nu_max + 3)

        def work(lo: int, hi: int) -> None:
            for i in range(lo, hi, rows):
                j = min(hi, i + rows)
                da[i:j], dgz[i:j] = powers_grad_grad_plain(a[i:j], gz[i:j], grad[i:j], t, to, nu_max)

        run_rows(a.shape[0], rows, work)
        return da, dgz, None, None, None


def gaunt_powers(a: torch.Tensor, t: GridTransform, to: GridTransform, nu_max: int) -> torch.Tensor:
    """Projected powers ``[B, K] -> [B, nu_max, K_out]`` (differentiable to any order)."""
    return _Powers.apply(a, t, to, nu_max)
