r"""``GauntPotential``: a MACE-shaped equivariant potential whose many-body product is a Gaunt
product on an exact sphere grid (gtp.md section 4.4).

.. math::

    E = \sum_i \Big[ E_0(z_i) + s \sum_t e_i^{(t)} + \mu \Big], \qquad
    h_i^{(0)} = W_{z_i}, \quad
    h_i^{(t+1)} = \mathrm{Lin}\big(B_i^{(t)}\big) + \mathrm{Skip}_{z_i}\big(h_i^{(t)}\big),

with messages ``A_i`` from :class:`~gaunt_md.model.blocks.EdgeConvolution`, the product basis
``B_i`` from :class:`~gaunt_md.model.blocks.GauntProductBasis` and per-layer scalar readouts
``e_i^(t)`` (an MLP on the last layer). The model sees positions only through edge vectors
``r_ij``, so energies are translation invariant and periodic images are handled by the graph.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from gaunt_md.model.blocks import InteractionLayer, ScalarReadout
from gaunt_md.model.config import ModelConfig
from gaunt_md.model.radial import BesselBasis


class GauntPotential(nn.Module):
    """Graph -> per-atom energies (eV). Build with ``GauntPotential(config)``; cast with ``.to(dtype)``.

    ``forward(numbers [N] int64, edge_index [2, E] int64 (sender j, receiver i),
    edge_vectors [E, 3] Å)`` returns ``[N]`` per-atom energies including ``E0`` (eV);
    ``include_e0=False`` returns the interaction part only (what :class:`ForceField` adds to a
    float64 ``E0`` so that float32 models keep sub-meV total energies of heavy molecules).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.num_channels
        n_species = len(config.elements)
        z_to_index = torch.full((119,), -1, dtype=torch.long)
        z_to_index[list(config.elements)] = torch.arange(n_species)
        self.register_buffer("z_to_index", z_to_index, persistent=False)
        self.register_buffer(
            "atomic_energies", torch.tensor(config.atomic_energies, dtype=torch.float64), persistent=False
        )
        self.scale = float(config.scale)
        self.shift = float(config.shift)
        self.cutoff = float(config.cutoff)

        self.embedding = nn.Parameter(torch.randn(n_species, c))
        self.radial_basis = BesselBasis(config.cutoff, config.num_bessel, config.cutoff_p)
        self.edge_harmonics = o3.SphericalHarmonics(
            o3.Irreps.spherical_harmonics(config.l_max_edge), normalize=True, normalization="integral"
        )
        widths = [config.num_bessel, *config.radial_hidden]
        layers, readouts = [], []
        l_in = 0
        for t in range(config.num_layers):
            last = t == config.num_layers - 1
            l_out = 0 if last else config.l_max_hidden
            layers.append(
                InteractionLayer(
                    c, l_in, config.l_max_edge, l_out, config.correlation, n_species, widths,
                    config.avg_num_neighbors, config.message_scale(t),
                )
            )
            readouts.append(ScalarReadout(c, config.readout_hidden if last else 0))
            l_in = l_out
        self.layers = nn.ModuleList(layers)
        self.readouts = nn.ModuleList(readouts)
        # every layer reads its radial weights from a table on CPU (gaunt_md.model.kernels.enable):
        # the radial basis is then not needed there
        self.radial_tabulated = False
        # the edge harmonics from the C++ kernel of gaunt_md.model.kernels (set by kernels.enable)
        self.fused_harmonics = False

    @torch.jit.unused
    def _fused_edge_geometry(self, edge_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from gaunt_md.model.kernels.harmonics import edge_geometry

        return edge_geometry(edge_vectors, self.config.l_max_edge)

    def species_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """Map atomic numbers ``[N]`` to species indices (``-1`` where the model has no such element)."""
        return self.z_to_index.index_select(0, numbers)

    def forward(
        self,
        numbers: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
        include_e0: bool = True,
    ) -> torch.Tensor:
        species = self.species_index(numbers)  # [N]
        if self.fused_harmonics and not torch.jit.is_scripting() and edge_vectors.device.type == "cpu":
            edge_sh, lengths = self._fused_edge_geometry(edge_vectors)  # one C++ pass (kernels.enable)
        else:
            lengths = torch.linalg.norm(edge_vectors, dim=-1)  # [E]
            edge_sh = self.edge_harmonics(edge_vectors)  # [E, K_A]
        if self.radial_tabulated and not torch.jit.is_scripting() and lengths.device.type == "cpu":
            edge_basis = lengths.new_zeros(0)  # unused: the kernels read tables of the radial MLPs
        else:
            edge_basis = self.radial_basis(lengths)  # [E, n_basis]
        h = self.embedding.index_select(0, species).unsqueeze(0)  # [1, N, C]: degree-major features
        node_energy = torch.zeros(numbers.shape[0], dtype=edge_vectors.dtype, device=edge_vectors.device)
        for layer, readout in zip(self.layers, self.readouts):
            h = layer(h, species, edge_index, edge_sh, edge_basis, lengths)
            node_energy = node_energy + readout(h)
        energy = self.scale * node_energy + self.shift
        if include_e0:
            energy = energy + self.atomic_energies.index_select(0, species).to(energy.dtype)
        return energy
