"""Compile the C++ kernels of ``csrc/`` on first use and load them with :mod:`ctypes`.

``csrc/`` holds the model's fused inference kernels (``edge_conv.cpp``, ``product_basis.cpp``,
``harmonics.cpp``; Python side in :mod:`gaunt_md.model.kernels`) and the many-small-structures neighbour search
(``neighbors.cpp``; :mod:`gaunt_md.data.image_search`). They share one library and this loader.

The sources use a plain C ABI (no Python or torch headers), so one compiler call builds them in
seconds. The library goes to a per-user cache (``$GAUNT_MD_CACHE/kernels`` or
``~/.cache/gaunt_md/kernels``), named by a hash of the sources, the flags, the compiler and the
host CPU (``-march=native`` code is specific to it); concurrent builders write to a temporary
file and rename it. OpenMP is the same ``libgomp`` torch uses (already loaded by ``import torch``).
Without a compiler :func:`load_library` returns ``None``; the model keeps its torch ops and the
neighbour lists come from matscipy.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

SOURCES = tuple(sorted((Path(__file__).with_name("csrc")).glob("*.cpp")))
HEADERS = tuple(sorted((Path(__file__).with_name("csrc")).glob("*.h")))  # hashed with the sources
ABI_VERSION = 16
CXX_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]

_lock = threading.Lock()
_library: Optional[ctypes.CDLL] = None
_load_error: Optional[str] = None


def cache_dir() -> Path:
    """Where compiled kernels live: ``$GAUNT_MD_CACHE/kernels`` or ``$XDG_CACHE_HOME/gaunt_md/kernels``."""
    root = os.environ.get("GAUNT_MD_CACHE")
    if root:
        return Path(root) / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "gaunt_md" / "kernels"


def _cpu_signature() -> str:
    """The host CPU (-march=native binaries are specific to it)."""
    signature = f"{platform.machine()} {platform.processor()}"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    signature += line
    except OSError:
        pass
    return signature


def _compile(compiler: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        target = Path(tmp) / out.name
        cmd = [compiler, *CXX_FLAGS, *map(str, SOURCES), "-o", str(target)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        os.replace(target, out)  # atomic: a concurrent builder never sees half a file


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        # edge_conv.cpp: shape (7), R, table, inv_dx, n_intervals, table_width, table_rows, table_block,
        # species, lengths, h, S, Y, G, k_edge, src, rowptr, deg_in, deg_out, scale
        head = [i64] * 7 + [ptr, ptr, real, i64, i64, i64, i64] + [ptr] * 6 + [i64] + [ptr] * 4 + [ctypes.c_double]
        fwd = getattr(lib, f"gaunt_edge_conv_forward_{suffix}")
        fwd.argtypes = head + [ptr, c_int]  # A, n_threads
        bwd = getattr(lib, f"gaunt_edge_conv_backward_{suffix}")
        bwd.argtypes = head + [ptr] * 5 + [c_int]  # gA, gR, g_lengths, gS, gh_work, n_threads
        # product_basis.cpp: rows, k_in, k_out, grid, nu_max, l_out1, paired, a, coef, Y, Yw
        head = [i64] * 7 + [ptr] * 4
        pf = getattr(lib, f"gaunt_product_forward_{suffix}")
        pf.argtypes = head + [ptr, c_int]  # out, n_threads
        pb = getattr(lib, f"gaunt_product_backward_{suffix}")
        pb.argtypes = head + [ptr, ptr, c_int]  # grad_out, grad_a, n_threads
        # harmonics.cpp: n, l_max, vectors, ...
        hf = getattr(lib, f"gaunt_edge_harmonics_forward_{suffix}")
        hf.argtypes = [i64, i64, ptr, ptr, ptr, c_int]  # out, lengths, n_threads
        ef = getattr(lib, f"gaunt_edge_forces_{suffix}")  # edges.cpp
        ef.argtypes = [i64, i64, i64] + [ptr] * 7  # E, N, graphs, src, dst, node_graph, vectors, g, forces, de_deps
        ef.restype = None
        hb = getattr(lib, f"gaunt_edge_harmonics_backward_{suffix}")
        hb.argtypes = [i64, i64, ptr, ptr, ptr, ptr, c_int]  # grad_out, grad_lengths, grad_vectors, n_threads
        for fn in (fwd, bwd, hf, hb):
            fn.restype = None
        for fn in (pf, pb):
            fn.restype = c_int  # 0, or -1: shape beyond the kernel's limits
    # neighbors.cpp: n_structures, ptr, x, cells, periodic, cutoff, ...
    head = [i64, ptr, ptr, ptr, ptr, ctypes.c_double]
    lib.gaunt_neighbors_count.argtypes = head + [ptr, c_int]  # counts, n_threads
    lib.gaunt_neighbors_fill.argtypes = head + [ptr] * 5 + [c_int]  # offsets, sender, receiver, shifts, distances
    lib.gaunt_neighbors_count.restype = lib.gaunt_neighbors_fill.restype = None
    # n_atoms, x, cell, cutoff, receiver_counts, offsets, sender, receiver, shifts, distances, n_threads
    lib.gaunt_neighbors_cells.argtypes = [i64, ptr, ptr, ctypes.c_double] + [ptr] * 6 + [c_int]
    lib.gaunt_neighbors_cells.restype = i64
    # edges.cpp: n_edges, src, dst, node_graph, x, cells, shifts, out
    lib.gaunt_edge_vectors_f64.argtypes = [i64] + [ptr] * 7
    lib.gaunt_edge_vectors_f64.restype = None
    lib.gaunt_kernels_abi_version.restype = c_int


def load_library() -> Optional[ctypes.CDLL]:
    """The compiled kernels (built on first call), or ``None`` with the reason in :func:`load_error`."""
    global _library, _load_error
    if _library is not None or _load_error is not None:
        return _library
    with _lock:
        if _library is not None or _load_error is not None:
            return _library
        try:
            compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
            if compiler is None:
                raise RuntimeError("no C++ compiler found (set CXX)")
            digest = hashlib.sha256()
            for source in SOURCES + HEADERS:
                digest.update(source.read_bytes())
            digest.update(" ".join([compiler, *CXX_FLAGS, _cpu_signature()]).encode())
            path = cache_dir() / f"gaunt_kernels_{digest.hexdigest()[:16]}.so"
            if not path.is_file():
                logger.info("compiling the fused CPU kernels into %s", path)
                _compile(compiler, path)
            lib = ctypes.CDLL(str(path))
            _declare(lib)
            if lib.gaunt_kernels_abi_version() != ABI_VERSION:
                raise RuntimeError(f"{path} has ABI {lib.gaunt_kernels_abi_version()}, expected {ABI_VERSION}")
            _library = lib
        except Exception as exc:  # no compiler, read-only cache, ...: the torch ops still work
            _load_error = f"{type(exc).__name__}: {exc}"
            logger.warning("fused CPU kernels unavailable, using torch ops (%s)", _load_error)
    return _library


def require_library() -> ctypes.CDLL:
    """:func:`load_library`, or a ``RuntimeError`` that says why it could not be built."""
    lib = load_library()
    if lib is None:
        raise RuntimeError(f"the fused CPU kernels could not be built: {_load_error}")
    return lib


def load_error() -> Optional[str]:
    """Why :func:`load_library` returned ``None`` (``None`` if it has not failed)."""
    return _load_error


def available() -> bool:
    """Whether the fused kernels can run here (compiles them on first call)."""
    return load_library() is not None


def threads_for(work: int, minimum: int) -> int:
    """OpenMP threads for a kernel call: torch's thread count, or 1 below ``minimum`` items of work
    when the OpenMP threads sleep between parallel regions (``OMP_WAIT_POLICY=PASSIVE``).

    Waking the sleeping threads for every parallel region costs more than a second thread saves
    on the few hundred edges of a small structure: single calls on 2-8-atom cells
    took 4.6 / 5.4 ms (float32 / float64) with two passive threads and 3.6 / 4.1 ms with the
    kernels on one (benchmarks/model_speed.py --batch; results/model_batch_2026-12-04.md and
    ..._2026-12-04b.md). Spinning threads (libgomp's default) cost nothing to wake: there the
    same calls took 2.2 / 2.5 ms on two threads against 2.4 / 2.8 on one
    (results/model_batch*_2026-12-04b.md), so they keep both."""
    import torch

    threads = torch.get_num_threads()
    if threads > 1 and work < minimum and os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
        return 1
    return threads


def pointer(t) -> Optional[int]:
    """Address of a contiguous CPU tensor's data, ``None`` (NULL) for ``None``."""
    return None if t is None else t.data_ptr()


def suffix(dtype) -> str:
    """``f32`` / ``f64``: the kernel variant for a torch dtype."""
    import torch

    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"the fused kernels run in float32 or float64, not {dtype}")
