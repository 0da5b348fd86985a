r"""Edge vectors from positions, and forces and per-structure strain derivatives from ``dE/dr_e``,
one C++ pass each (``csrc/edges.cpp``).

:func:`edge_vectors` is :func:`gaunt_md.model.derivatives.edge_vectors` (a gather of each edge's
cell, a batched ``[1, 3] x [3, 3]`` matmul and two gathers in torch). :func:`edge_forces` is the
other direction: :class:`~gaunt_md.model.derivatives.ForceField` turns the gradient ``g_e`` of the energy with
respect to each edge vector into

.. math::

    F_k = \sum_{e:\,\mathrm{dst}(e) = k} g_e - \sum_{e:\,\mathrm{src}(e) = k} g_e, \qquad
    \frac{\partial E}{\partial \varepsilon_G} = \sum_{e \in G} r_e \otimes g_e ;

with torch ops that is three ``index_add`` passes (single-threaded on CPU) and an ``[E, 3, 3]``
product. Inference only (no graph is kept).
"""

from __future__ import annotations

from typing import Optional

import torch

from gaunt_md.native.build import pointer, require_library, suffix


def edge_vectors(
    positions: torch.Tensor,  # [N, 3] float64 Å
    cell: torch.Tensor,  # [n_graphs, 3, 3] float64, rows are lattice vectors
    edge_index: torch.Tensor,  # [2, E] (sender j, receiver i)
    unit_shifts: torch.Tensor,  # [E, 3] float64, integer-valued
    batch: torch.Tensor,  # [N] graph of each node
) -> torch.Tensor:
    """``r_j - r_i + S @ cell[graph]`` ``[E, 3]`` float64 (not differentiable: the forces come
    from :func:`edge_forces`)."""
    tensors = [t.detach().to(torch.float64).contiguous() for t in (positions, cell, unit_shifts)]
    src, dst = edge_index[0].contiguous(), edge_index[1].contiguous()
    node_graph = batch.to(torch.int64).contiguous()
    out = torch.empty((src.shape[0], 3), dtype=torch.float64)
    require_library().gaunt_edge_vectors_f64(
        src.shape[0], pointer(src), pointer(dst), pointer(node_graph), *(pointer(t) for t in tensors), pointer(out),
    )
    return out


def edge_forces(
    edge_index: torch.Tensor,  # [2, E] (sender j, receiver i)
    grad_vectors: torch.Tensor,  # [E, 3]: dE/dr_e
    num_nodes: int,
    edge_vectors: Optional[torch.Tensor] = None,  # [E, 3], with node_graph: also dE/deps per graph
    node_graph: Optional[torch.Tensor] = None,  # [N] graph of each node
    num_graphs: int = 0,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(forces [N, 3], dE/deps [num_graphs, 3, 3] or None)`` in the dtype of ``grad_vectors``."""
    if (edge_vectors is None) != (node_graph is None):
        raise ValueError("give both edge_vectors and node_graph (for dE/deps) or neither")
    dtype = grad_vectors.dtype
    src, dst = edge_index[0].contiguous(), edge_index[1].contiguous()
    g = grad_vectors.detach().contiguous()
    forces = torch.empty((num_nodes, 3), dtype=dtype)
    de_deps = None
    if edge_vectors is not None:
        edge_vectors = edge_vectors.detach().to(dtype).contiguous()
        node_graph = node_graph.to(torch.int64).contiguous()
        de_deps = torch.empty((num_graphs, 3, 3), dtype=dtype)
    getattr(require_library(), f"gaunt_edge_forces_{suffix(dtype)}")(
        src.shape[0], num_nodes, num_graphs, pointer(src), pointer(dst), pointer(node_graph), pointer(edge_vectors),
        pointer(g), pointer(forces), pointer(de_deps),
    )
    return forces, de_deps
