r"""Energies, forces and stress of a batch of structures, by one backward pass through the edges.

The potential sees positions only through edge vectors ``r_e = r_j - r_i + S_e \cdot cell``
(``e = (j -> i)``). With ``g_e = \partial E / \partial r_e``:

.. math::

    F_k = -\frac{\partial E}{\partial r_k} = \sum_{e:\, i_e = k} g_e - \sum_{e:\, j_e = k} g_e,
    \qquad
    \sigma = \frac{1}{V} \frac{\partial E}{\partial \varepsilon}
           = \frac{1}{V} \sum_{e \in \text{structure}} r_e \otimes g_e ,

where a homogeneous strain maps every edge ``r_e -> r_e (1 + eps)`` (cell rows and positions
alike), so the stress needs no explicit strain variable. ``sigma`` is symmetrised, in eV/Å^3 with
ASE's sign (positive under tension). Per-atom virials ``W_k = -(1/2) sum_{e touching k} r_e (x) g_e``
sum to ``-V sigma``.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn


class ForceField(nn.Module):
    """Wrap a potential ``(numbers, edge_index, edge_vectors) -> [N]`` into E, F, sigma (TorchScript-able).

    ``forward`` returns a dict with ``node_energy [N]`` and ``energy [n_graphs]`` (float64, E0
    included, detached), ``interaction_energy [n_graphs]`` (model dtype, without E0,
    differentiable: what training losses use) and, when asked,
    ``forces [N, 3]`` (eV/Å) and ``virial [n_graphs, 3, 3]`` (eV; ``stress = -virial / V``).
    ``create_graph=True`` keeps the graph for force/stress losses in training.
    """

    def __init__(self, potential: nn.Module) -> None:
        super().__init__()
        self.potential = potential
        # E0 stays float64 whatever the model dtype (a float32 E0 of -1029 eV is off by 1e-4 eV)
        self.atomic_energies: List[float] = [float(e) for e in potential.config.atomic_energies]
        # forces and virials from one C++ pass over the edges on CPU (gaunt_md.model.kernels
        # .edges; set by GauntCalculator with the other kernels). Eager inference only.
        self.fused = False

    def forward(
        self,
        numbers: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
        compute_forces: bool = True,
        compute_virial: bool = False,
        create_graph: bool = False,
    ) -> Dict[str, torch.Tensor]:
        if compute_forces or compute_virial:
            edge_vectors = edge_vectors.detach().requires_grad_(True)
        interaction = self.potential(numbers, edge_index, edge_vectors, False)  # [N], model dtype
        e_int = torch.zeros(num_graphs, dtype=interaction.dtype, device=interaction.device)
        e_int = e_int.index_add(0, batch, interaction)
        # torch.full, not torch.tensor(list): TorchScript's torch.tensor rounds a List[float] through
        # float32 even with dtype=float64 (E0 = -1029.489 eV came out 1.4e-5 eV off; torch 2.13)
        e0_table = torch.cat(
            [torch.full([1], e, dtype=torch.float64, device=interaction.device) for e in self.atomic_energies]
        )
        e0 = e0_table.index_select(0, self.potential.species_index(numbers))
        node_energy = interaction.detach().to(torch.float64) + e0
        energy = torch.zeros(num_graphs, dtype=torch.float64, device=interaction.device).index_add(0, batch, node_energy)
        out: Dict[str, torch.Tensor] = {
            "interaction_energy": e_int,
            "node_energy": node_energy,
            "energy": energy,
        }
        if not (compute_forces or compute_virial):
            return out
        grads: List[Optional[torch.Tensor]] = torch.autograd.grad(
            [e_int.sum()], [edge_vectors], create_graph=create_graph, allow_unused=True
        )
        g = grads[0]
        if g is None:  # no edges at all: every derivative is zero
            g = torch.zeros_like(edge_vectors)
        if self.fused and not create_graph and not torch.jit.is_scripting() and g.device.type == "cpu":
            forces, de_deps = self._fused_derivatives(edge_index, g, numbers.shape[0], edge_vectors, batch, num_graphs,
                                                      compute_virial)
            if compute_forces:
                out["forces"] = forces
            if de_deps is not None:
                out["virial"] = -0.5 * (de_deps + de_deps.transpose(1, 2))
            return out
        if compute_forces:
            forces = torch.zeros((numbers.shape[0], 3), dtype=g.dtype, device=g.device)
            forces = forces.index_add(0, edge_index[1], g).index_add(0, edge_index[0], -g)
            out["forces"] = forces
        if compute_virial:
            edge_graph = batch.index_select(0, edge_index[1])
            outer = edge_vectors.unsqueeze(2) * g.unsqueeze(1)  # [E, 3, 3]: r_a g_b
            dE_deps = torch.zeros((num_graphs, 3, 3), dtype=g.dtype, device=g.device)
            dE_deps = dE_deps.index_add(0, edge_graph, outer)
            out["virial"] = -0.5 * (dE_deps + dE_deps.transpose(1, 2))
        return out

    @torch.jit.unused
    def _fused_derivatives(
        self,
        edge_index: torch.Tensor,
        g: torch.Tensor,
        num_nodes: int,
        edge_vectors: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
        compute_virial: bool,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        from gaunt_md.model.kernels.edges import edge_forces

        if compute_virial:
            return edge_forces(edge_index, g, num_nodes, edge_vectors, batch, num_graphs)
        return edge_forces(edge_index, g, num_nodes)


def edge_vectors(
    positions: torch.Tensor,  # [N, 3] Å
    cell: torch.Tensor,  # [n_graphs, 3, 3] Å, rows are lattice vectors
    edge_index: torch.Tensor,  # [2, E] (sender j, receiver i)
    unit_shifts: torch.Tensor,  # [E, 3] integer-valued
    batch: torch.Tensor,  # [N] structure of each atom
) -> torch.Tensor:
    """Edge vectors ``r_j - r_i + S @ cell[structure]`` ``[E, 3]`` in the dtype of ``positions``.

    Compute them in float64 and cast afterwards when the model runs in float32: differences of
    large absolute coordinates lose precision in float32.
    """
    src, dst = edge_index[0], edge_index[1]
    edge_cell = cell.index_select(0, batch.index_select(0, dst))  # [E, 3, 3]
    shifts = torch.bmm(unit_shifts.unsqueeze(1), edge_cell).squeeze(1)  # [E, 3]
    return positions.index_select(0, src) - positions.index_select(0, dst) + shifts
