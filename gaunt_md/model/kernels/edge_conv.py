r"""The edge convolution as one C++ pass over the edges (``csrc/edge_conv.cpp``).

:class:`~gaunt_md.model.blocks.EdgeConvolution` written as torch ops materialises several
``[E, C, (L_A+1) K_in]`` edge tensors per layer and direction (gather, radial scaling, a per-edge
``16 x 16`` matmul that is three-quarters zeros, scatter, and as many again backward). The
kernel computes the same message per receiver with every edge quantity in registers,

.. math::

    A_{k,i,c} = s \sum_{e:\,\mathrm{dst}(e) = i} \sum_a R_{e,\deg k,\deg a,c}\, h_{a,\mathrm{src}(e),c}\, S_{e,a,k},
    \qquad S_{e,a,k} = 4\pi \sum_b G_{a b k}\, Y_b(\hat r_e),

and its first derivatives, on the model's degree-major features (``h [K_in, N, C]``,
``A [K_A, N, C]``; ``s`` is the layer's message normalisation). The radial weights ``R`` come
from the MLP (evaluated by torch) or from a cubic Hermite table over distance
(:func:`tabulate_radial`), read inside the kernel.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from gaunt_md.native.build import pointer, require_library, suffix, threads_for

#: Below this many edges the edge kernels run on one thread (see threads_for).
PARALLEL_EDGES = 512


class _FusedEdgeConvolution(torch.autograd.Function):
    """Inputs: ``radial [E, P, C]`` or ``None``; ``table`` (``[n, 4, (S) P C]`` or
    ``[n + 1, 2, (S) P C]`` from :func:`tabulate_radial`, or either in :func:`block_table`'s order)
    and ``lengths [E]`` or ``None``; the coupling as ``coupling [E, K_in, K_A]``, or as ``edge_sh [E, K_edge]`` and
    ``matrix [K_edge, K_in K_A]`` (made per edge in the kernel); ``species [N]`` with a table of
    one set of columns per sender species, else ``None``."""

    @staticmethod
    def forward(ctx, radial, table, lengths, h, coupling, edge_sh, matrix, src, rowptr, deg_in, deg_out, dx, l_out1, l_in1, scale, species):  # type: ignore[override]
        lib = require_library()
        n_edges, n_nodes = src.shape[0], h.shape[1]
        k_in, channels, k_out = h.shape[0], h.shape[2], deg_out.shape[0]
        shape = (n_edges, n_nodes, channels, k_in, k_out, l_out1, l_in1)
        n_intervals, width, rows, block = (0, 0, 0, 0) if table is None else _table_shape(table)
        k_edge = 0 if edge_sh is None else edge_sh.shape[1]
        head = (*shape, pointer(radial), pointer(table), 1.0 / dx, n_intervals, width, rows, block, pointer(species),
                pointer(lengths), pointer(h), pointer(coupling), pointer(edge_sh), pointer(matrix), k_edge,
                pointer(src), pointer(rowptr), pointer(deg_in), pointer(deg_out), float(scale))
        out = torch.empty((k_out, n_nodes, channels), dtype=h.dtype)
        getattr(lib, f"gaunt_edge_conv_forward_{suffix(h.dtype)}")(*head, pointer(out), threads_for(n_edges, PARALLEL_EDGES))
        ctx.save_for_backward(radial, table, lengths, h, coupling, edge_sh, matrix, src, rowptr, deg_in, deg_out, species)
        ctx.head = head
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        radial, _, lengths, h, coupling, edge_sh = ctx.saved_tensors[:6]  # keeps the pointers in ctx.head alive
        lib = require_library()
        n_threads = threads_for(ctx.head[0], PARALLEL_EDGES)
        grad_out = grad_out.contiguous()
        grad_radial = None if radial is None else torch.empty_like(radial)
        grad_lengths = None if lengths is None else torch.empty_like(lengths)
        grad_coupling = torch.empty_like(coupling if coupling is not None else edge_sh)  # dL/dS or dL/dY
        want_h = ctx.needs_input_grad[3]  # not in the first layer: its h holds only (frozen) weights
        grad_h_work = torch.zeros((n_threads,) + tuple(h.shape), dtype=h.dtype) if want_h else None
        getattr(lib, f"gaunt_edge_conv_backward_{suffix(h.dtype)}")(
            *ctx.head, pointer(grad_out), pointer(grad_radial), pointer(grad_lengths), pointer(grad_coupling),
            pointer(grad_h_work), n_threads,
        )
        grad_h = grad_h_work.sum(0) if grad_h_work is not None else None
        if coupling is not None:
            grads = (grad_radial, None, grad_lengths, grad_h, grad_coupling, None)
        else:
            grads = (grad_radial, None, grad_lengths, grad_h, None, grad_coupling)
        return grads + (None,) * 10


def fused_edge_convolution(
    h: torch.Tensor,  # [K_in, N, C]
    coupling: Optional[torch.Tensor],  # [E, K_in, K_A]: S[e, a, k]; or None with edge_sh and coupling_matrix
    edge_index: torch.Tensor,  # [2, E] (sender j, receiver i)
    deg_in: torch.Tensor,  # [K_in] int64
    deg_out: torch.Tensor,  # [K_A] int64
    radial: Optional[torch.Tensor] = None,  # [E, (L_A+1)(l_in+1), C]: R[e, (l3, l1), c]
    table: Optional[torch.Tensor] = None,  # from tabulate_radial (or block_table)
    lengths: Optional[torch.Tensor] = None,  # [E] Å, with table
    dx: float = 1.0,  # knot spacing of table (Å)
    scale: float = 1.0,  # multiplies A
    species: Optional[torch.Tensor] = None,  # [N] int64, with a table of S sets of columns
    edge_sh: Optional[torch.Tensor] = None,  # [E, K_edge]: Y, with coupling_matrix
    coupling_matrix: Optional[torch.Tensor] = None,  # [K_edge, K_in K_A]: S_e = Y_e G
) -> torch.Tensor:
    """``A [K_A, N, C]`` (degree-major), differentiable once in ``radial`` (or ``lengths``), ``h``,
    ``coupling`` (or ``edge_sh``).

    Give the radial weights either directly (``radial``) or as a table over distance
    (``table``, ``lengths``, ``dx``). A table of width ``S (L_A+1)(l_in+1) C`` holds one set of
    columns per sender species; ``species`` (per node, ``0..S-1``) then picks the sender's.
    Give the coupling either per edge (``coupling``, ``S [E, K_in, K_A]``) or as the edge
    harmonics and the matrix that makes it (``edge_sh``, ``coupling_matrix``): the kernel then
    makes each edge's ``S`` where it needs it and never writes the ``[E, K_in, K_A]`` array.
    """
    if (radial is None) == (table is None):
        raise ValueError("give exactly one of radial= and table=")
    if table is not None and lengths is None:
        raise ValueError("table= needs lengths=")
    width = 0  # the table's columns, S (L_A+1)(l_in+1) C
    if table is not None:
        _, width, _, block = _table_shape(table)
        if block and table.shape[2] * block != h.shape[2]:
            raise ValueError(f"a blocked table of {table.shape[2]} x {block} channels for features of {h.shape[2]}")
    via_harmonics = edge_sh is not None or coupling_matrix is not None
    if (coupling is not None) == via_harmonics or (edge_sh is None) != (coupling_matrix is None):
        raise ValueError("give either coupling or both edge_sh= and coupling_matrix=")
    if coupling_matrix is not None and coupling_matrix.shape[1] != h.shape[0] * deg_out.numel():
        raise ValueError(f"coupling_matrix has {coupling_matrix.shape[1]} columns, expected K_in K_A = "
                         f"{h.shape[0] * deg_out.numel()}")
    if species is not None:
        cols = math.isqrt(deg_out.numel()) * math.isqrt(deg_in.numel()) * h.shape[2]
        if table is None or width % cols != 0:
            raise ValueError("species= needs a table= of one set of (L_A+1)(l_in+1) C columns per species")
        if species.numel() and not 0 <= int(species.min()) <= int(species.max()) < width // cols:
            raise ValueError(f"species outside the table's {width // cols} sets of columns")
    src, dst = edge_index[0], edge_index[1]
    n_nodes = h.shape[1]
    if dst.numel() > 1 and not bool((dst[1:] >= dst[:-1]).all()):
        order = torch.argsort(dst, stable=True)  # the kernel walks receivers in CSR order

        def reordered(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else t.index_select(0, order)

        src, dst, coupling, edge_sh, radial, lengths = map(reordered, (src, dst, coupling, edge_sh, radial, lengths))
    counts = torch.bincount(dst, minlength=n_nodes)
    rowptr = torch.zeros(n_nodes + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=rowptr[1:])
    l_out1 = math.isqrt(deg_out.numel())  # K = (l_max + 1)^2
    l_in1 = math.isqrt(deg_in.numel())

    def prepared(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if t is None else t.to(h.dtype).contiguous()

    return _FusedEdgeConvolution.apply(
        prepared(radial), prepared(table), prepared(lengths), h.contiguous(), prepared(coupling), prepared(edge_sh),
        prepared(coupling_matrix), src.contiguous(), rowptr, deg_in.contiguous(), deg_out.contiguous(), float(dx),
        l_out1, l_in1, float(scale), None if species is None else species.to(torch.int64).contiguous(),
    )


#: The table layout :func:`gaunt_md.model.kernels.enable` uses per dtype: value and slope per knot
#: in float64 (half the rows: the part of the table a batch of edges reads is half as large for
#: the caches); coefficients per interval in float32, whose derivative from knot values would
#: lose four digits to cancellation.
TABLE_LAYOUTS = {torch.float64: "knots", torch.float32: "coefficients"}


def _table_shape(table: torch.Tensor) -> tuple[int, int, int, int]:
    """``(n_intervals, width, rows, block)`` of a table from :func:`tabulate_radial` (``block`` 0)
    or :func:`block_table` (``block`` the SIMD width)."""
    if table.dim() == 6:  # [steps, S, C / W, P, rows, W]
        steps, n_species, n_blocks, paths, rows, block = table.shape
        if block != simd_lanes(table.dtype) or rows not in (2, 4):
            raise ValueError(f"blocked table of shape {tuple(table.shape)}: expected [steps, S, C / W, P, 2 or 4, W] "
                             f"with W = {simd_lanes(table.dtype)}")
        width = n_species * n_blocks * paths * block
    elif table.dim() == 3 and table.shape[1] in (2, 4):
        steps, rows, width = table.shape
        block = 0
    else:
        raise ValueError(f"table has shape {tuple(table.shape)}: expected [n, 4, width] (coefficients) or "
                         "[n + 1, 2, width] (knots) from tabulate_radial, or block_table's order")
    if steps < (2 if rows == 2 else 1):
        raise ValueError(f"table has {steps} steps")
    return (steps if rows == 4 else steps - 1), width, rows, block


def simd_lanes(dtype: torch.dtype) -> int:
    """Numbers of ``dtype`` in one 64-byte vector of the kernels (``gaunt_simd::kLanes``)."""
    return 64 // dtype.itemsize


def block_table(table: torch.Tensor, channels: int, n_species: int = 1, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A table from :func:`tabulate_radial`, ``[steps, rows, S P C]``, in the register-blocked
    kernels' memory order ``[steps, S, C / W, P, rows, W]`` (``W`` = :func:`simd_lanes`): for one
    vector of channels, every path's rows of a step lie together, so the kernels, which take one
    vector of channels at a time, read runs of consecutive cache lines (the forward pass took
    0.8x as long). ``channels`` must be a multiple of ``W``. ``out``: write there."""
    steps, rows, width = table.shape
    lanes = simd_lanes(table.dtype)
    if channels % lanes or width % (n_species * channels):
        raise ValueError(f"cannot block {channels} channels of a {width}-column table by {lanes} ({n_species} species)")
    paths = width // (n_species * channels)
    shape = (steps, n_species, channels // lanes, paths, rows, lanes)
    blocked = table.view(steps, rows, n_species, paths, channels // lanes, lanes).permute(0, 2, 4, 3, 1, 5)
    if out is None:
        return blocked.contiguous()
    return out.view(shape).copy_(blocked)


def tabulate_radial(
    radial_function,
    cutoff: float,
    n_intervals: int,
    dtype: torch.dtype,
    out: Optional[torch.Tensor] = None,
    layout: str = "coefficients",
) -> torch.Tensor:
    """Cubic Hermite table of ``radial_function: [M] Å -> [M, width]`` on ``[0, cutoff]``.

    The interpolant matches ``R`` and ``R'`` at the knots ``r_k = k dx``, ``dx = cutoff /
    n_intervals`` (values and derivatives by forward-mode autodiff in float64): it is C1
    (energies and forces continuous) and its error falls as ``dx^4`` (values) and ``dx^3``
    (forces). Two layouts of the same cubic, with ``t = r / dx - k`` in interval ``k``:

    * ``"coefficients"``, ``[n, 4, width]``: interval ``k`` holds ``c0..c3`` of
      ``R = c0 + c1 t + c2 t^2 + c3 t^3`` (computed in float64, then cast);
    * ``"knots"``, ``[n + 1, 2, width]``: knot ``k`` holds ``R(r_k)`` and ``dx R'(r_k)``, and the
      kernel weights the two knots of an interval with the Hermite basis. Half the rows; the
      derivative then subtracts nearly equal values (fine in float64, four digits lost in float32).

    ``r = 0`` is evaluated at 1e-6 Å: the Bessel basis ``sin(k r) / r`` is 0/0 there. ``out``:
    write the table there (any strides) and return it; the float64 intermediates are then two
    ``[n+1, width]`` arrays, not the whole table.
    """
    if layout not in ("coefficients", "knots"):
        raise ValueError(f"layout must be 'coefficients' or 'knots', not {layout!r}")
    knots = torch.linspace(0.0, cutoff, n_intervals + 1, dtype=torch.float64)
    knots[0] = 1e-6
    with torch.enable_grad():
        values, slopes = torch.func.jvp(radial_function, (knots,), (torch.ones_like(knots),))
    values, slopes = values.detach(), slopes.detach() * (cutoff / n_intervals)  # slopes per unit t
    if layout == "knots":
        if out is None:
            out = torch.empty(n_intervals + 1, 2, values.shape[1], dtype=dtype)
        out[:, 0] = values
        out[:, 1] = slopes
        return out
    y0, y1, m0, m1 = values[:-1], values[1:], slopes[:-1], slopes[1:]
    if out is None:
        out = torch.empty(n_intervals, 4, values.shape[1], dtype=dtype)
    out[:, 0] = y0
    out[:, 1] = m0
    out[:, 2] = 3 * (y1 - y0) - 2 * m0 - m1
    out[:, 3] = 2 * (y0 - y1) + m0 + m1
    return out
