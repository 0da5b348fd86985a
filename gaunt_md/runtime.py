"""Process-wide settings for applications: what the ``gaunt-md`` commands apply to themselves.

Library code (the calculator, the model, the drivers) never calls these: they change the whole
process, and a user's script owns its process. An application that does (the CLI, the trainer's
command line, the benchmarks' workers, or your own MD script) may call them once at start-up:

>>> from gaunt_md.runtime import keep_freed_memory, limit_blas_threads   # doctest: +SKIP
>>> keep_freed_memory()                                                   # doctest: +SKIP

Why they matter, measured with ``benchmarks/model_speed.py`` on the 2-core CI machine:

* :func:`keep_freed_memory`: every energy+forces call allocates its edge tensors afresh (hundreds
  of MB for a few hundred atoms). glibc serves allocations above 32 MB with ``mmap`` and gives
  them back with ``munmap`` on free, so the next call page-faults all of it in again: 2e4-4e6
  page faults per call and 35-72% of the CPU time in the kernel. Keeping freed memory in the
  heap made 512-4096-atom calls 1.6-3.3x faster (benchmarks/README.md, "Why the allocator
  matters"); the cost is that the process's resident memory stays at its peak.
* :func:`limit_blas_threads`: the drivers' BLAS work is on 3x3 cells and small phonopy arrays,
  where OpenBLAS threads only add overhead; spinning ones made a 40-step cell relaxation on a
  busy machine 20x slower (36 s against 1.9 s).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_kept = False  # keep_freed_memory() has been applied in this process


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS (Linux/glibc only).

    Sets ``mallopt(M_MMAP_MAX, 0)`` (large blocks come from the heap, not from fresh ``mmap``) and
    ``mallopt(M_TRIM_THRESHOLD, -1)`` (never trim the heap), the runtime equivalent of
    ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge>``. Does nothing if ``GAUNT_MD_MALLOC=default``
    or if either variable is already in the environment (the user's setting wins). Returns whether
    the setting was applied.
    """
    if os.environ.get("GAUNT_MD_MALLOC", "").lower() == "default":
        return False
    if "MALLOC_MMAP_MAX_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # -1 converts to SIZE_MAX inside glibc: the heap is never trimmed
    global _kept
    _kept = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
    return _kept


def freed_memory_kept() -> bool:
    """Whether this process keeps freed memory in its heap: :func:`keep_freed_memory` applied, or
    ``MALLOC_MMAP_MAX_=0`` in the environment. Reads, changes nothing (the calculator sizes its
    CPU batches by it)."""
    return _kept or os.environ.get("MALLOC_MMAP_MAX_", "").strip() == "0"


def limit_blas_threads(n: int = 1) -> int:
    """Cap OpenBLAS threads of this process at ``n`` unless ``OPENBLAS_NUM_THREADS`` is set.

    Returns the number of libraries capped (Linux only; best effort, torch's own threads are not
    touched).
    """
    if "OPENBLAS_NUM_THREADS" in os.environ or not os.path.exists("/proc/self/maps"):
        return 0
    import numpy.linalg  # noqa: F401 - load the BLAS libraries first
    import scipy.linalg  # noqa: F401

    with open("/proc/self/maps") as maps:
        paths = {ln.split()[-1] for ln in maps if "openblas" in ln.lower() and "/" in ln}
    capped = 0
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in ("openblas_set_num_threads", "openblas_set_num_threads64_",
                    "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn(int(n))
                capped += 1
                break
    return capped
