r"""Forces and per-structure strain derivatives from ``dE/dr_e`` in one C++ pass (``csrc/edge_forces.cpp``).

:class:`~gaunt_md.model.derivatives.ForceField` turns the gradient ``g_e`` of the energy with
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
