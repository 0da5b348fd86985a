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

__all__ = ["MAX_CHECKS", "joined_neighbor_lists", "neighbor_lists", "periodic_edges"]

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
    n = len(positions)
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter((len(p) for p in positions), np.int64, n), out=ptr[1:])
    x = np.concatenate([np.asarray(p, np.float64).reshape(-1, 3) for p in positions]) if n else np.zeros((0, 3))
    joined = joined_neighbor_lists(x, ptr, cells, pbc, cutoff)
    result: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * n
    if joined is None:
        return result
    taken, edge_index, shifts, distances, offsets = joined
    for k in np.flatnonzero(taken).tolist():
        a, b = int(offsets[k]), int(offsets[k + 1])
        result[k] = (edge_index[:, a:b], shifts[a:b], distances[a:b])
    return result


def joined_neighbor_lists(
    x: np.ndarray, ptr: np.ndarray, cells: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`neighbor_lists` on the structures' positions one after another: ``x`` float64
    ``[N, 3]``, structure ``k`` owning rows ``ptr[k]:ptr[k+1]``.

    Returns ``(taken [n] bool, edge_index [2, E], unit_shifts [E, 3], distances [E], offsets
    [n + 1])``: structure ``k``'s edges are ``offsets[k]:offsets[k+1]`` (none where it was not
    taken), with atom indices local to the structure; read-only arrays. ``None`` without the
    compiled library.
    """
    from gaunt_md.native.build import load_library

    n = len(ptr) - 1
    lib = load_library()
    if lib is None:
        return None
    cells, pbc = np.asarray(cells, np.float64), np.asarray(pbc, bool)
    n_atoms = np.diff(ptr)
    taken = _eligible(n_atoms, cells, pbc, cutoff)
    if taken.any():
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():  # NaN/inf positions: neighbor_list raises the error
            bad = np.repeat(np.arange(n), n_atoms)[~finite]
            taken[bad] = False
    take = np.flatnonzero(taken)
    offsets = np.zeros(n + 1, np.int64)
    if len(take) == 0:
        empty = (np.zeros((2, 0), np.int64), np.zeros((0, 3)), np.zeros(0))
        return (taken, *empty, offsets)
    if len(take) < n:
        rows = np.concatenate([np.arange(ptr[k], ptr[k + 1]) for k in take])
        x_take, ptr_take = x[rows], np.zeros(len(take) + 1, np.int64)
        np.cumsum(n_atoms[take], out=ptr_take[1:])
    else:
        x_take, ptr_take = x, np.asarray(ptr, np.int64)
    x_take = np.ascontiguousarray(x_take, dtype=np.float64)
    ptr_take = np.ascontiguousarray(ptr_take)
    cell_block = np.ascontiguousarray(cells[take])
    periodic = np.ascontiguousarray(pbc[take].all(axis=1), dtype=np.uint8)

    import torch  # only for its thread count: the search runs on the same OpenMP threads

    threads = torch.get_num_threads()
    counts = np.zeros(len(take), np.int64)
    head = (len(take), ptr_take.ctypes.data, x_take.ctypes.data, cell_block.ctypes.data, periodic.ctypes.data,
            float(cutoff))
    lib.gaunt_neighbors_count(*head, counts.ctypes.data, threads)
    if (counts < 0).any():  # the kernel's atom limit; MAX_CHECKS keeps every structure below it
        raise RuntimeError(f"image_search: a structure beyond the kernel's limits was sent ({counts.min()})")
    starts = np.zeros(len(take) + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    n_edges = int(starts[-1])
    edge_index = np.empty((2, n_edges), np.int64)
    shifts = np.empty((n_edges, 3), np.float64)
    distances = np.empty(n_edges, np.float64)
    lib.gaunt_neighbors_fill(
        *head, starts.ctypes.data, edge_index[0].ctypes.data, edge_index[1].ctypes.data,
        shifts.ctypes.data, distances.ctypes.data, threads,
    )
    near = np.flatnonzero(distances > cutoff * (1.0 - 1e-9))
    if len(near):  # |r| < cutoff by edge_vectors' own arithmetic for pairs within rounding of it
        owner = np.repeat(np.arange(len(take)), counts)
        atom_offset = ptr_take[owner[near]]
        j, i = edge_index[0, near] + atom_offset, edge_index[1, near] + atom_offset
        vectors = x_take[j] - x_take[i] + np.einsum("ek,ekl->el", shifts[near], cell_block[owner[near]])
        drop = near[np.einsum("ek,ek->e", vectors, vectors) >= cutoff * cutoff]
        if len(drop):
            keep = np.ones(n_edges, bool)
            keep[drop] = False
            edge_index, shifts, distances = edge_index[:, keep], shifts[keep], distances[keep]
            counts = np.bincount(owner[keep], minlength=len(take))
    per_structure = np.zeros(n, np.int64)
    per_structure[take] = counts
    np.cumsum(per_structure, out=offsets[1:])
    for array in (edge_index, shifts, distances):
        array.flags.writeable = False
    return taken, edge_index, shifts, distances, offsets


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


def _eligible(n_atoms: np.ndarray, cells: np.ndarray, pbc: np.ndarray, cutoff: float) -> np.ndarray:
    """Which structures the direct search takes (bool ``[n]``), by their atom counts and cells."""
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
