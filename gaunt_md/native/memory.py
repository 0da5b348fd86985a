"""Tensors in transparent huge pages, for the large read-only tables of the fused kernels.

The radial tables of :func:`gaunt_md.model.kernels.enable` are tens of MB in float64 and every
edge reads rows of them at random: with 4 KB pages that is several TLB misses per edge, with
2 MB pages almost none. Linux backs an anonymous private mapping with huge pages when it is
advised to (``madvise(MADV_HUGEPAGE)``, honoured under the default THP setting ``madvise``)
before it is first written, and only in whole 2 MB pages: :func:`huge_page_empty` maps 2 MB more
than it needs and starts the tensor at the first 2 MB boundary. The mapping is this process's
own memory (nothing global changes) and lives as long as the tensor. Elsewhere (no
``MADV_HUGEPAGE``, tensors under 2 MB, or a refused ``madvise``) it is ``torch.empty``.
"""

from __future__ import annotations

import mmap

import torch

HUGE_PAGE = 2 << 20


def huge_page_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor, in huge pages where the OS grants them."""
    count = 1
    for n in shape:
        count *= int(n)
    nbytes = count * dtype.itemsize
    if nbytes < HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(shape, dtype=dtype)
    try:
        buffer = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        buffer.madvise(mmap.MADV_HUGEPAGE)  # before the first write: the pages are then faulted in as 2 MB
    except (OSError, ValueError):
        return torch.empty(shape, dtype=dtype)
    base = torch.frombuffer(buffer, dtype=torch.uint8, count=1).data_ptr()
    offset = (-base) % HUGE_PAGE  # a multiple of the element size: base is page-aligned
    # frombuffer keeps `buffer` (the mapping) alive as long as the tensor
    return torch.frombuffer(buffer, dtype=dtype, count=count, offset=offset).view(shape)
