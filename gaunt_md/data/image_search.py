"""Neighbour searches in C++ (``native/csrc/neighbors.cpp``): many small structures in one call
(every pair, every image in range, :func:`neighbor_lists`), and one fully periodic structure
through a cell list (:func:`periodic_edges`, what :func:`~gaunt_md.data.neighbors.neighbor_list`
uses where a compiler exists).

For a cell of a few atoms a search per structure costs tens of microseconds of setup and Python
for a few hundred distances, so a batch of a thousand such cells spent as long on its graphs as on
the model. :func:`neighbor_lists` sends them to C++ together, which checks each pair of atoms
against each periodic image that can be within the cutoff (the range per pair from the distances
between the cell's faces). Same edges as :func:`~gaunt_md.data.neighbors.neighbor_list`, in the same
convention (sender ``j`` = ``edge_index[0]``, sorted by receiver, ``|r_ij| < cutoff`` by the
formula of :func:`~gaunt_md.data.neighbors.edge_vectors`); the senders of one receiver come in
another order (by sender, then shift).

Taken: structures that are fully periodic with a sound cell, or not periodic at all, whose
``n_atoms**2 * n_images`` is at most :data:`MAX_CHECKS`, with finite positions. Everything else
(mixed periodicity, big cells, bad input) is left to ``neighbor_list``, which also raises the
detailed errors. Without a C++ compiler nothing is taken.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_CHECKS", "neighbor_lists", "periodic_edges"]

#: Most pair-image distance checks per structure (n_atoms**2 * images in range): ~0.3 ms at most.
MAX_CHECKS = 1 << 18

#: periodic_edges runs on torch's threads from this many atoms on, below on one.
PARALLEL_ATOMS = 256

#: Same thresholds as gaunt_md.data.neighbors for a degenerate cell.
_DEGENERATE_RTOL = 1e-8


def neighbor_lists(
    positions: Sequence[np.ndarray],
    cells: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """``(edge_index, unit_shifts, distances)`` per structure, or ``None`` for those not taken.

    Args:
        positions: one float64 ``[n_atoms, 3]`` array (Å) per structure.
        cells: float64 ``[n_structures, 3, 3]``, rows are lattice vectors (Å).
        pbc: bool ``[n_structures, 3]``.
        cutoff: finite, > 0 (Å).

    The arrays returned are read-only views into shared buffers.
    """
    from gaunt_md.native.build import load_library

    n = len(positions)
    result: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * n
    lib = load_library()
    if lib is None or n == 0:
        return result
    take = np.flatnonzero(_eligible(positions, np.asarray(cells, np.float64), np.asarray(pbc, bool), cutoff))
    if len(take) == 0:
        return result
    x, ptr = _concatenated(positions, take)
    finite = np.logical_and.reduceat(np.isfinite(x).all(axis=1), ptr[:-1])  # every structure has atoms
    if not finite.all():  # NaN/inf positions: neighbor_list raises the error
        take = take[finite]
        if len(take) == 0:
            return result
        x, ptr = _concatenated(positions, take)
    cell_block = np.ascontiguousarray(np.asarray(cells, np.float64)[take])
    periodic = np.ascontiguousarray(np.asarray(pbc, bool)[take].all(axis=1), dtype=np.uint8)

    import torch  # only for its thread count: the search runs on the same OpenMP threads

    threads = torch.get_num_threads()
    counts = np.zeros(len(take), np.int64)
    head = (len(take), ptr.ctypes.data, x.ctypes.data, cell_block.ctypes.data, periodic.ctypes.data, float(cutoff))
    lib.gaunt_neighbors_count(*head, counts.ctypes.data, threads)
    if (counts < 0).any():  # the kernel's atom limit; MAX_CHECKS keeps every structure below it
        raise RuntimeError(f"image_search: a structure beyond the kernel's limits was sent ({counts.min()})")
    offsets = np.zeros(len(take) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    n_edges = int(offsets[-1])
    edge_index = np.empty((2, n_edges), np.int64)
    shifts = np.empty((n_edges, 3), np.float64)
    distances = np.empty(n_edges, np.float64)
    lib.gaunt_neighbors_fill(
        *head, offsets.ctypes.data, edge_index[0].ctypes.data, edge_index[1].ctypes.data,
        shifts.ctypes.data, distances.ctypes.data, threads,
    )
    owner = None
    near = np.flatnonzero(distances > cutoff * (1.0 - 1e-9))
    if len(near):  # |r| < cutoff by edge_vectors' own arithmetic for pairs within rounding of it
        owner = np.repeat(np.arange(len(take)), counts)
        atom_offset = ptr[owner[near]]
        j, i = edge_index[0, near] + atom_offset, edge_index[1, near] + atom_offset
        vectors = x[j] - x[i] + np.einsum("ek,ekl->el", shifts[near], cell_block[owner[near]])
        drop = near[np.einsum("ek,ek->e", vectors, vectors) >= cutoff * cutoff]
        if len(drop):
            keep = np.ones(n_edges, bool)
            keep[drop] = False
            edge_index, shifts, distances = edge_index[:, keep], shifts[keep], distances[keep]
            counts = np.bincount(owner[keep], minlength=len(take))
            np.cumsum(counts, out=offsets[1:])
    for array in (edge_index, shifts, distances):
        array.flags.writeable = False
    for slot, k in enumerate(take.tolist()):
        a, b = int(offsets[slot]), int(offsets[slot + 1])
        result[k] = (edge_index[:, a:b], shifts[a:b], distances[a:b])
    return result


def periodic_edges(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[np.ndarray, ...] | None:
    """``(receiver, sender, unit_shifts, distances)`` of one fully periodic structure through a C++
    cell list (matscipy's result layout: receivers ascending), or ``None`` without the compiled
    library. The caller has checked the inputs and the cell (finite, sound, not absurdly thin)."""
    from gaunt_md.native.build import load_library

    lib = load_library()
    if lib is None:
        return None
    import torch  # only for its thread count

    x = np.ascontiguousarray(positions, dtype=np.float64)
    # below a few hundred atoms waking a second (sleeping) thread costs more than it saves
    threads = torch.get_num_threads() if len(x) >= PARALLEL_ATOMS else 1
    cell = np.ascontiguousarray(cell, dtype=np.float64)
    n = len(x)
    counts = np.zeros(n, np.int64)
    total = lib.gaunt_neighbors_cells(n, x.ctypes.data, cell.ctypes.data, float(cutoff), counts.ctypes.data,
                                      None, None, None, None, None, threads)
    offsets = np.zeros(n, np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    receiver, sender = np.empty(total, np.int64), np.empty(total, np.int64)
    shifts, distances = np.empty((total, 3), np.float64), np.empty(total, np.float64)
    lib.gaunt_neighbors_cells(n, x.ctypes.data, cell.ctypes.data, float(cutoff), counts.ctypes.data,
                              offsets.ctypes.data, sender.ctypes.data, receiver.ctypes.data, shifts.ctypes.data,
                              distances.ctypes.data, threads)
    return receiver, sender, shifts, distances


def _concatenated(positions: Sequence[np.ndarray], take: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the structures ``take``, float64 ``[N, 3]``, and their atom offsets ``[len(take) + 1]``."""
    parts = [positions[k] for k in take]
    ptr = np.zeros(len(parts) + 1, np.int64)
    np.cumsum(np.fromiter((len(p) for p in parts), np.int64, len(parts)), out=ptr[1:])
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float64), ptr


def _eligible(positions: Sequence[np.ndarray], cells: np.ndarray, pbc: np.ndarray, cutoff: float) -> np.ndarray:
    """Which structures the direct search takes (bool ``[n]``)."""
    n_atoms = np.fromiter((len(p) for p in positions), np.int64, len(positions))
    periodic, isolated = pbc.all(axis=1), ~pbc.any(axis=1)
    with np.errstate(all="ignore"):  # degenerate and non-finite cells fall out as NaN / inf
        a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
        faces = np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=1)  # [n, 3, 3]
        volume = np.abs(np.einsum("nk,nk->n", a, faces[:, 0]))
        lengths = np.sqrt(np.einsum("nkl,nkl->nk", cells, cells))
        sound = (volume >= _DEGENERATE_RTOL * lengths.prod(axis=1)) & (lengths.min(axis=1) > 1e-10)
        heights = volume[:, None] / np.sqrt(np.einsum("nkl,nkl->nk", faces, faces))
        images = np.prod(2 * np.ceil(cutoff / heights) + 1, axis=1)
    checks = np.where(periodic, n_atoms.astype(float) ** 2 * np.where(sound, images, np.inf), n_atoms.astype(float) ** 2)
    finite_cell = np.isfinite(cells).all(axis=(1, 2))  # neighbor_list refuses NaN in any cell row
    return ((periodic & sound) | isolated) & finite_cell & (n_atoms > 0) & (checks <= MAX_CHECKS)
