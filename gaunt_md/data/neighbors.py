"""Neighbour lists: positions + cell + pbc + cutoff -> directed edges with periodic shifts.

The search itself is done in C, with linear scaling: for fully periodic cells by the cell list
of ``native/csrc/neighbors.cpp`` (:func:`~gaunt_md.data.image_search.periodic_edges`, where a C++
compiler exists), otherwise by :func:`matscipy.neighbours.neighbour_list`. This module prepares a
cell that matscipy can always handle and converts the result to the project's edge convention
(see ``ARCHITECTURE.md``):

* ``edge_index[0]`` is the **sender** ``j`` (the neighbour), ``edge_index[1]`` the **receiver**
  ``i`` (the centre atom);
* ``r_ij = positions[j] - positions[i] + unit_shifts @ cell`` with ``|r_ij| < cutoff``;
* both directions of every pair are present; an atom's own periodic images are neighbours,
  only the zero-shift self pair ``(i, i, 0)`` is excluded.

Non-periodic axes never carry shifts. matscipy needs a full-rank cell that encloses the atoms
along non-periodic axes (otherwise it either fails on a singular cell or falls back to an
O(n^2) search), so the rows of non-periodic axes are replaced by a bounding box orthogonal to
the periodic rows before the search. This does not change any ``r_ij``, because shifts along
those axes are zero and the returned ``unit_shifts`` refer to the caller's cell.
"""

from __future__ import annotations

import math

import numpy as np
from matscipy.neighbours import neighbour_list as _matscipy_neighbour_list

from gaunt_md.data import image_search
from gaunt_md.errors import StructureError

__all__ = ["check_cutoff", "edge_vectors", "neighbor_list"]

#: Most periodic image cells the search may need (prod over periodic axes of 2*ceil(rc/h)+1).
#: Beyond this the cell is so thin compared with the cutoff that the edge list would exhaust
#: memory; a physical structure never gets near it (1-atom fcc Cu, rc = 10 Å: 11^3 = 1331).
MAX_IMAGE_CELLS = 1_000_000

#: A set of periodic rows whose Gram volume is below this fraction of the product of their
#: lengths (i.e. |sin| of the angle between them) is treated as linearly dependent.
_DEGENERATE_RTOL = 1e-8

#: Padding (Å) of the bounding box along non-periodic axes.
_BOX_PADDING = 1.0


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    *,
    return_distances: bool = False,
) -> tuple[np.ndarray, ...]:
    """Return all directed edges ``j -> i`` with ``|r_ij| < cutoff``, periodic images included.

    Args:
        positions: float [n_atoms, 3], Cartesian positions in Å. Atoms may lie outside the cell.
        cell: float [3, 3], rows are lattice vectors in Å (ASE layout). Rows of non-periodic
            axes are ignored (they may be zero or not enclose the atoms).
        pbc: bool [3], periodicity of each cell axis (a scalar bool applies to all three).
        cutoff: cutoff radius in Å, finite and > 0.

    Returns:
        ``(edge_index, unit_shifts)``:

        * ``edge_index``: int64 [2, n_edges]; row 0 = sender ``j`` (neighbour), row 1 = receiver
          ``i`` (centre). Sorted by receiver (what the fused kernels walk); the edges of one
          receiver keep matscipy's (deterministic) order.
        * ``unit_shifts``: float64 [n_edges, 3], integer-valued, zero along non-periodic axes,
          such that ``r_ij = positions[j] - positions[i] + unit_shifts @ cell``.
        * with ``return_distances=True`` also ``distances``: float64 [n_edges], ``|r_ij|`` (Å)
          as matscipy computed them (equal to the formula above up to rounding).

    Raises:
        StructureError: NaN/inf in positions or cell, bad shapes, a non-positive or non-finite
            cutoff, a periodic axis whose cell row is zero or linearly dependent on the other
            periodic rows, or a periodic cell so thin that more than :data:`MAX_IMAGE_CELLS`
            image cells would be needed.
    """
    positions, cell, pbc, cutoff = _validate(positions, cell, pbc, cutoff)
    n_atoms = len(positions)
    if n_atoms == 0:
        empty = (np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3), dtype=np.float64))
        return empty + (np.zeros(0),) if return_distances else empty

    search_cell, origin = _search_cell(positions, cell, pbc, cutoff)
    found = image_search.periodic_edges(positions, cell, cutoff) if pbc.all() else None
    if found is not None:  # fully periodic: the C++ cell list (receivers ascending, as matscipy's)
        i, j, shifts, distances = found
    else:
        i, j, shifts, distances = _matscipy_neighbour_list(
            "ijSd",
            positions=positions,
            cell=search_cell,
            pbc=pbc,
            cutoff=cutoff,
            cell_origin=origin,
        )
    # (Few numpy calls per structure from here on: for many small cells this bookkeeping costs
    # as much as the search itself.)
    n_edges = len(i)
    edge_index = np.empty((2, n_edges), dtype=np.int64)
    edge_index[0], edge_index[1] = j, i
    unit_shifts = np.asarray(shifts, dtype=np.float64).reshape(-1, 3)
    distances = np.asarray(distances, dtype=np.float64)
    sender, receiver = edge_index

    # Enforce the strict |r_ij| < cutoff of the contract with the very formula callers use (for
    # the pairs within rounding of the cutoff), and drop the zero-shift self pair (matscipy
    # returns neither today; stay robust anyway).
    keep = None
    if n_edges and distances.max() > cutoff * (1.0 - 1e-9):
        near = np.flatnonzero(distances > cutoff * (1.0 - 1e-9))
        vectors = edge_vectors(positions, cell, edge_index[:, near], unit_shifts[near])
        keep = np.ones(n_edges, dtype=bool)
        keep[near] = np.einsum("ek,ek->e", vectors, vectors) < cutoff * cutoff
    self_pairs = np.flatnonzero(sender == receiver)
    if len(self_pairs):
        zero_shift = self_pairs[~unit_shifts[self_pairs].any(axis=1)]
        if len(zero_shift):
            keep = np.ones(n_edges, dtype=bool) if keep is None else keep
            keep[zero_shift] = False

    # Receiver-major (matscipy's order already is; a stable sort otherwise, which keeps its order
    # of the senders of one receiver).
    order = None
    if n_edges > 1 and not (receiver[1:] >= receiver[:-1]).all():
        order = np.argsort(receiver, kind="stable")
        if keep is not None:
            order = order[keep[order]]
    elif keep is not None and not keep.all():
        order = np.flatnonzero(keep)
    if order is not None:
        edge_index, unit_shifts, distances = edge_index[:, order], unit_shifts[order], distances[order]
    if return_distances:
        return edge_index, unit_shifts, distances
    return edge_index, unit_shifts


def edge_vectors(
    positions: np.ndarray, cell: np.ndarray, edge_index: np.ndarray, unit_shifts: np.ndarray
) -> np.ndarray:
    """Return ``r_ij = positions[j] - positions[i] + unit_shifts @ cell``, float64 [n_edges, 3], Å."""
    positions = np.asarray(positions, dtype=np.float64)
    sender, receiver = edge_index
    # einsum, not @: a BLAS matmul would wake OpenBLAS's threads, which then spin against torch's
    shifts = np.einsum("ek,kl->el", np.asarray(unit_shifts, np.float64), np.asarray(cell, np.float64))
    return positions[sender] - positions[receiver] + shifts


# ----------------------------------------------------------------------------------------------
# helpers


def _validate(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Checked float64 ``positions``, ``cell``, bool ``pbc [3]`` and ``cutoff`` (inputs are not modified
    and not copied when they already have these types)."""
    try:
        positions = np.asarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise StructureError(f"positions and cell must be real numeric arrays: {error}") from error
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise StructureError(f"positions must have shape [n_atoms, 3], got {positions.shape}")
    if cell.shape != (3, 3):
        raise StructureError(f"cell must have shape [3, 3] (rows are lattice vectors), got {cell.shape}")
    pbc_array = np.asarray(pbc)
    if pbc_array.dtype != np.bool_ or pbc_array.shape != (3,):  # the common case (ASE's pbc) skips this
        valid_values = pbc_array.dtype == np.bool_ or (
            pbc_array.dtype.kind in "iu" and np.isin(pbc_array, (0, 1)).all()
        )
        if not valid_values or pbc_array.shape not in ((), (3,)):
            raise StructureError(f"pbc must be a bool or 3 bools, got {pbc!r}")
        pbc_array = np.array(np.broadcast_to(pbc_array, (3,)), dtype=bool)
    cutoff = check_cutoff(cutoff)

    if not np.isfinite(positions).all():
        bad = ~np.isfinite(positions)
        atom = int(np.flatnonzero(bad.any(axis=1))[0])
        raise StructureError(
            f"positions contain NaN/inf ({int(bad.any(axis=1).sum())} atom(s)); first bad atom "
            f"{atom}: {positions[atom].tolist()}"
        )
    if not np.isfinite(cell).all():
        raise StructureError(f"cell contains NaN/inf: {cell.tolist()}")
    return positions, cell, pbc_array, cutoff


def check_cutoff(cutoff: float) -> float:
    """``cutoff`` as a float, or :class:`StructureError` unless it is a finite number > 0 (Å)."""
    try:
        value = float(cutoff)
    except (TypeError, ValueError) as error:
        raise StructureError(f"cutoff must be a finite number > 0 (Å), got {cutoff!r}") from error
    if not (math.isfinite(value) and value > 0.0):
        raise StructureError(f"cutoff must be a finite number > 0 (Å), got {cutoff!r}")
    return value


def _check_periodic_rows(cell: np.ndarray, pbc: np.ndarray) -> None:
    """Raise if the rows of periodic axes are zero or linearly dependent."""
    axes = np.flatnonzero(pbc)
    rows = cell[axes]
    norms = np.linalg.norm(rows, axis=1)
    for axis, norm in zip(axes, norms):
        if not norm > 1e-10:
            raise StructureError(
                f"cell vector {int(axis)} is zero ({cell[axis].tolist()}) but axis {int(axis)} is "
                f"periodic (pbc={pbc.tolist()}); give a non-degenerate cell or make it non-periodic"
            )
    if len(axes) > 1:
        unit = rows / norms[:, None]
        gram_volume = math.sqrt(max(float(np.linalg.det(unit @ unit.T)), 0.0))
        if gram_volume < _DEGENERATE_RTOL:
            raise StructureError(
                f"cell vectors {axes.tolist()} are linearly dependent (degenerate cell "
                f"{cell.tolist()}) but these axes are periodic (pbc={pbc.tolist()})"
            )


def _search_cell(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(search_cell, origin)``: periodic rows as given, non-periodic rows a bounding box.

    The non-periodic rows are an orthonormal basis of the complement of the periodic rows,
    scaled to span the atoms' extent along each direction plus padding; ``origin`` puts the
    lower face of the box just below the atoms.
    """
    if pbc.all() and _periodic_cell_is_fine(cell, cutoff):
        return cell, np.zeros(3)  # the common case, checked with plain floats (~10x cheaper)
    _check_periodic_rows(cell, pbc)
    periodic = np.flatnonzero(pbc)
    open_axes = np.flatnonzero(~pbc)

    search_cell = cell.copy()
    origin = np.zeros(3)
    if len(open_axes):
        if len(periodic):
            # Rows of V^T beyond the rank span the orthogonal complement of the periodic rows.
            _, _, vt = np.linalg.svd(cell[periodic])
            directions = vt[len(periodic) :]
        else:
            directions = np.eye(3)
        for axis, direction in zip(open_axes, directions):
            projection = positions @ direction
            low, high = float(projection.min()), float(projection.max())
            search_cell[axis] = direction * (high - low + 2.0 * _BOX_PADDING)
            origin += direction * (low - _BOX_PADDING)

    if len(periodic):
        _check_image_count(search_cell, pbc, cutoff)
    return search_cell, origin


def _periodic_cell_is_fine(cell: np.ndarray, cutoff: float) -> bool:
    """Fast check of a fully periodic cell: non-zero, independent rows and few enough image cells.

    ``False`` sends the cell through the full checks, which raise the detailed errors.
    """
    (a0, a1, a2), (b0, b1, b2), (c0, c1, c2) = cell.tolist()
    bc = (b1 * c2 - b2 * c1, b2 * c0 - b0 * c2, b0 * c1 - b1 * c0)  # b x c, and cyclically
    ca = (c1 * a2 - c2 * a1, c2 * a0 - c0 * a2, c0 * a1 - c1 * a0)
    ab = (a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0)
    volume = abs(a0 * bc[0] + a1 * bc[1] + a2 * bc[2])
    lengths = [math.sqrt(x * x + y * y + z * z) for x, y, z in cell.tolist()]
    if min(lengths) <= 1e-10 or not volume >= _DEGENERATE_RTOL * lengths[0] * lengths[1] * lengths[2]:
        return False
    n_cells = 1
    for face in (bc, ca, ab):  # height along axis k = volume / area of the face of the other two rows
        height = volume / math.sqrt(face[0] ** 2 + face[1] ** 2 + face[2] ** 2)
        n_cells *= 2 * math.ceil(cutoff / height) + 1
    return n_cells <= MAX_IMAGE_CELLS


def _check_image_count(search_cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> None:
    """Raise if a periodic axis is so thin that the edge list would be absurdly large."""
    # the distance between the two faces normal to axis k is 1 / |column k of inv(cell)|
    try:
        inverse = np.linalg.inv(search_cell)
    except np.linalg.LinAlgError:
        inverse = None
    if inverse is None or not np.isfinite(inverse).all():
        raise StructureError(f"degenerate cell {search_cell.tolist()} (zero volume)")
    heights = 1.0 / np.sqrt(np.einsum("ij,ij->j", inverse, inverse))
    n_cells = 1
    for axis in np.flatnonzero(pbc):
        height = float(heights[axis])
        n_cells *= 2 * math.ceil(cutoff / height) + 1
        if n_cells > MAX_IMAGE_CELLS:
            raise StructureError(
                f"cell is far too small for cutoff {cutoff} Å: periodic axis {int(axis)} is "
                f"{height:.3g} Å thick and the search would need more than {MAX_IMAGE_CELLS} "
                f"periodic image cells (cell {search_cell.tolist()}, pbc {pbc.tolist()})"
            )
