r"""Building blocks of the Gaunt potential, named after the stages of gtp.md section 4.4.

Features are degree-major, ``[(L+1)**2, n_nodes, C]`` (flat SH index ``l*l + l + m``, then
nodes, then channels), with natural parity (0e, 1o, 2e, ...). Channels mix only inside
:class:`EquivariantLinear` (one ``C x C`` matrix per degree ``l``): in this layout that is one
batched matmul over ``K`` with no copies, and the scalar channels ``h[0]`` are a contiguous
``[N, C]`` block. The edge convolution and the product basis act channel-wise.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gaunt_md.model.radial import Dense, RadialMLP
from gaunt_md.so3 import GauntPowers, degree_of_index, gaunt_tensor, num_coefficients


class EquivariantLinear(nn.Module):
    """Per-degree channel mixing ``[K, N, C_in] -> [K, N, C_out]``, ``K = (l_max+1)**2``, no bias."""

    def __init__(self, c_in: int, c_out: int, l_max: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(l_max + 1, c_in, c_out))  # [L+1, C_in, C_out]
        self.register_buffer("degree", degree_of_index(l_max), persistent=False)  # [K]
        self.scale = 1.0 / math.sqrt(c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.index_select(0, self.degree) * self.scale  # [K, C_in, C_out]
        return torch.bmm(x, w)


class SpeciesLinear(nn.Module):
    """Species-dependent per-degree linear map (MACE's skip tensor product with the one-hot)."""

    def __init__(self, c_in: int, c_out: int, l_max: int, num_species: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_species, l_max + 1, c_in, c_out))
        self.register_buffer("degree", degree_of_index(l_max), persistent=False)
        self.scale = 1.0 / math.sqrt(c_in)
        self.c_out = c_out

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        k, n, c_in = x.shape
        s = self.weight.shape[0]
        w = self.weight.index_select(1, self.degree) * self.scale  # [S, K, C_in, C_out]
        w = w.permute(1, 2, 0, 3).reshape(k, c_in, s * self.c_out)  # [K, C_in, (S, C_out)]
        y = torch.bmm(x, w).view(k, n, s, self.c_out)  # every species' map, then pick one per node
        if s == 1:
            return y.squeeze(2)
        idx = species.view(1, n, 1, 1).expand(k, n, 1, self.c_out)
        return torch.gather(y, 2, idx).squeeze(2)


class EdgeConvolution(nn.Module):
    r"""Message ``A_i = (s/n_avg) sum_j sum_{l1} R_{l1 l3}(r_ij) [h_j^{(l1)} (x)_Gaunt Y(r_ij)]_{l3}``.

    The channel-wise product of neighbour features (degree <= ``l_in``) with the edge harmonics
    (degree <= ``l_edge``) keeps the Gaunt couplings ``G[l1 m1, l2 m2, l3 m3]`` (even
    ``l1 + l2 + l3``; the odd paths would give 1e/2o/... irreps, which a natural-parity model
    drops anyway). Each ``(l1, l3)`` pair gets its own learnable radial weight per channel,
    ``R: [E, C, l_edge+1, l_in+1]`` from a radial MLP.

    Because ``h_j`` has low degree the Gaunt tensor is first contracted with the edge harmonics
    into a channel-independent, block-structured matrix per edge,
    ``T_e[(l3, a), k] = 4 pi sum_b G[a, b, k] Y_b(r_ij) [deg(k) = l3]``, ``[E, (l_edge+1) K_in, K_A]``.
    The radial weights scale the neighbour features, ``x_e[c, (l3, a)] = R[e, c, l3, deg(a)] h_j[c, a]``,
    and one batched matmul ``x_e @ T_e`` gives the message: a single ``[E, C, K_A]`` tensor is
    written per layer (the edge tensors dominate memory traffic on CPU). ``4 pi`` makes a scalar
    times ``T_e`` the "component"-normalised harmonics (unit variance per entry, as in MACE).
    ``s`` (``message_scale``) is fixed from training data before training
    (:func:`gaunt_md.train.stats.message_scales`) so that the product basis sees unit-scale inputs.

    For inference on CPU, :func:`gaunt_md.model.kernels.enable` switches ``forward`` to a fused
    C++ pass over the edges that keeps only the non-zero part of ``T_e`` and never writes an
    edge-sized feature tensor (``_forward_fused``; TorchScript and training keep this path).
    """

    def __init__(
        self,
        num_channels: int,
        l_in: int,
        l_edge: int,
        radial_widths: list[int],
        avg_num_neighbors: float,
        message_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.l_in, self.l_edge, self.c = l_in, l_edge, num_channels
        k_in, k_edge = num_coefficients(l_in), num_coefficients(l_edge)
        g = 4.0 * math.pi * gaunt_tensor(l_in, l_edge, l_edge)  # [K_in, K_A(b), K_A(k)]
        deg_out = degree_of_index(l_edge)
        block = torch.zeros(k_edge, l_edge + 1, k_in, k_edge, dtype=torch.float64)  # [b, l3, a, k]
        for l3 in range(l_edge + 1):
            mask = (deg_out == l3).to(torch.float64)
            block[:, l3] = g.permute(1, 0, 2) * mask
        self.register_buffer("coupling", block.reshape(k_edge, -1).contiguous())  # [K_A, (L_A+1) K_in K_A]
        self.radial = RadialMLP(list(radial_widths) + [num_channels * (l_edge + 1) * (l_in + 1)])
        # R[e, c, l3, deg(a)] laid out as [E, C, L_A+1, K_in] straight from the MLP's last layer
        # (gathering its weight columns is cheaper than an index_select over [E, ...] and its backward)
        radial_index = torch.arange(num_channels * (l_edge + 1) * (l_in + 1)).view(num_channels, l_edge + 1, l_in + 1)
        self.register_buffer(
            "radial_columns", radial_index.index_select(2, degree_of_index(l_in)).reshape(-1), persistent=False
        )
        self.norm = float(message_scale) / avg_num_neighbors
        self.k_in, self.k_edge = k_in, k_edge
        # fused CPU kernel (gaunt_md.model.kernels, switched on by kernels.enable): the non-zero part
        # of the coupling, S[e, a, k] = T_e[(deg k, a), k], and R laid out channels-last [E, (l3, l1), C]
        self.fused = False
        self.folded = False  # radial_table holds the first layer's folded weights (kernels.enable)
        self.register_buffer("radial_table", torch.zeros(0), persistent=False)  # kernels.enable's table, or empty
        self.radial_dx = 1.0
        self.register_buffer(
            "coupling_sparse", g.permute(1, 0, 2).reshape(k_edge, k_in * k_edge).contiguous(), persistent=False
        )  # [K_A(b), K_in K_A]
        self.register_buffer(
            "fused_columns", radial_index.permute(1, 2, 0).reshape(-1).contiguous(), persistent=False
        )
        # l_in = 0: the coupling is sqrt(4 pi) times the identity (to rounding), see _edge_coupling
        self.identity_coupling = 1.0
        if l_in == 0:
            factor = self.coupling_sparse.diagonal().mean()
            if not torch.allclose(self.coupling_sparse, factor * torch.eye(k_edge, dtype=g.dtype), rtol=0, atol=1e-14):
                raise AssertionError("the l_in = 0 Gaunt coupling should be sqrt(4 pi) times the identity")
            self.identity_coupling = float(factor)
        self.register_buffer("deg_in", degree_of_index(l_in), persistent=False)
        self.register_buffer("deg_out", degree_of_index(l_edge), persistent=False)

    def forward(
        self,
        h: torch.Tensor,  # [K_in, N, C]
        edge_index: torch.Tensor,  # [2, E]  (sender j, receiver i)
        edge_sh: torch.Tensor,  # [E, K_A] orthonormal SH of r_ij
        edge_basis: torch.Tensor,  # [E, n_basis]
        edge_lengths: torch.Tensor,  # [E] Å
    ) -> torch.Tensor:
        if self.fused and not torch.jit.is_scripting() and h.device.type == "cpu":
            return self._forward_fused(h, edge_index, edge_sh, edge_basis, edge_lengths)
        n_edges = edge_sh.shape[0]
        rows = (self.l_edge + 1) * self.k_in
        t = torch.matmul(edge_sh, self.coupling).view(n_edges, rows, self.k_edge)  # [E, (l3, a), K_A]
        if self.l_in > 0:
            weights = self.radial(edge_basis, self.radial_columns)
        else:
            weights = self.radial(edge_basis)
        weights = weights.view(n_edges, self.c, rows)  # [E, C, (l3, a)]
        # repeat h over l3 on the nodes, then gather: the edge-sized product is between two
        # contiguous tensors of one shape (faster, fwd+bwd, than broadcasting h over l3)
        h_j = h.permute(1, 2, 0).repeat(1, 1, self.l_edge + 1).index_select(0, edge_index[0])  # [E, C, (l3, a)]
        x = weights * h_j  # [E, C, (l3, a)]
        message = torch.bmm(x, t)  # [E, C, K_A]
        out = torch.zeros(h.shape[1], self.c, self.k_edge, dtype=h.dtype, device=h.device)
        out = out.index_add(0, edge_index[1], message)  # [N, C, K_A]
        return (out * self.norm).permute(2, 0, 1).contiguous()  # [K_A, N, C]

    @torch.jit.unused
    def _forward_fused(
        self,
        h: torch.Tensor,
        edge_index: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_basis: torch.Tensor,
        edge_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """The same message from one C++ pass over the edges (first derivatives only), with the
        radial weights from the MLP or, once :func:`gaunt_md.model.kernels.enable` has
        tabulated them, from a table over distance."""
        from gaunt_md.model.kernels.edge_conv import fused_edge_convolution

        _check_frozen(self)
        coupling, factor = self._edge_coupling(edge_sh)
        if self.radial_table.numel() > 0:
            return fused_edge_convolution(
                h, edge_index=edge_index, deg_in=self.deg_in, deg_out=self.deg_out, table=self.radial_table,
                lengths=edge_lengths, dx=self.radial_dx, scale=self.norm * factor, **coupling,
            )
        r = self.radial(edge_basis, self.fused_columns).view(edge_sh.shape[0], -1, self.c)  # [E, (l3, l1), C]
        return fused_edge_convolution(h, edge_index=edge_index, deg_in=self.deg_in, deg_out=self.deg_out, radial=r,
                                      scale=self.norm * factor, **coupling)

    @torch.jit.unused
    def _edge_coupling(self, edge_sh: torch.Tensor) -> tuple[dict, float]:
        """How the fused kernel gets ``S [E, K_in, K_A]``: its arguments and a factor for its scale.
        With scalar features (``l_in = 0``) the coupling ``4 pi G[00, b, k]`` is ``sqrt(4 pi)``
        times the identity (to rounding): ``S`` is then the harmonics themselves and the factor goes
        into the kernel's final scale, instead of a matmul or a scaling pass over the edges. Else the
        kernel makes each edge's ``S_e = Y_e G`` from the harmonics and the non-zeros of ``G``
        (``coupling_sparse``), and the ``[E, K_in, K_A]`` array is never written."""
        if self.k_in == 1:
            return {"coupling": edge_sh.unsqueeze(1)}, self.identity_coupling
        return {"coupling": None, "edge_sh": edge_sh, "coupling_matrix": self.coupling_sparse}, 1.0

    @torch.jit.unused
    def folded_message(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor, edge_lengths: torch.Tensor
    ) -> torch.Tensor:
        """``linear_message(conv(linear_up(embedding[species])))`` of the first layer, ``[K_A, N, C]``,
        from the table :func:`gaunt_md.model.kernels.enable` folded the three maps into (one set of
        radial weights per sender species; the features are then ones)."""
        from gaunt_md.model.kernels.edge_conv import fused_edge_convolution

        _check_frozen(self)
        coupling, factor = self._edge_coupling(edge_sh)  # S = factor * Y, [E, 1, K_A]
        ones = torch.ones(1, species.shape[0], self.c, dtype=edge_sh.dtype)
        return fused_edge_convolution(
            ones, coupling["coupling"], edge_index, self.deg_in, self.deg_out,
            table=self.radial_table, lengths=edge_lengths, dx=self.radial_dx, scale=self.norm * factor, species=species,
        )


def _check_frozen(module: nn.Module) -> None:
    if not torch.is_grad_enabled():
        return
    # the module's parameters, listed once: module.parameters() walks the submodules on every call
    # (the Parameter objects stay; in-place updates keep them)
    params = getattr(module, "_parameters_checked", None)
    if params is None:
        params = module._parameters_checked = tuple(module.parameters())
    if any(p.requires_grad for p in params):
        raise RuntimeError(
            "the fused kernels are for inference (first derivatives only, tables of frozen weights); "
            "call gaunt_md.model.kernels.disable(model) before training"
        )


def _power_stds(l_in: int, nu_max: int, l_out: int, powers: GauntPowers) -> torch.Tensor:
    """Monte-Carlo std of each (nu, l_out) output for unit-normal inputs, ``[nu, K_out]`` float64."""
    gen = torch.Generator().manual_seed(12345)  # local generator: no global RNG state touched
    a = torch.randn(8192, num_coefficients(l_in), generator=gen, dtype=torch.float64)
    p = powers(a)  # [S, nu, K_out]
    deg = degree_of_index(l_out)
    std = torch.zeros(nu_max, l_out + 1, dtype=torch.float64)
    for l in range(l_out + 1):
        std[:, l] = p[:, :, deg == l].pow(2).mean(dim=(0, 2)).sqrt()
    return std.index_select(1, deg).clamp_min(1e-6)


class GauntProductBasis(nn.Module):
    r"""Many-body product ``B_{c,lm} = sum_nu w[z_i, c, nu, l] Proj_{<=L_out}(a_c^nu)_{lm} / sigma_{nu,l}``.

    ``a = A_i`` read as a function on the sphere per channel; all powers ``nu = 1..nu_max`` come
    from one exact grid (:class:`~gaunt_md.so3.GauntPowers`, gtp.md 3.4). ``sigma_{nu,l}`` is the
    output std for unit-normal inputs, estimated once at construction (gtp.md 1.4, test T10).
    """

    def __init__(self, num_channels: int, l_in: int, nu_max: int, l_out: int, num_species: int) -> None:
        super().__init__()
        self.powers = GauntPowers(l_in, nu_max, l_out).to(torch.float64)
        self.register_buffer("inv_std", 1.0 / _power_stds(l_in, nu_max, l_out, self.powers))  # [nu, K_out]
        self.weight = nn.Parameter(torch.randn(num_species, num_channels, nu_max, l_out + 1) / math.sqrt(nu_max))
        self.register_buffer("degree", degree_of_index(l_out), persistent=False)
        # the C++ kernel of gaunt_md.model.kernels (eager CPU inference), with the synthesis and
        # projection tables of the smallest exact grid (set by kernels.enable)
        self.fused = False
        self.register_buffer("degree_starts", torch.tensor([l * l for l in range(l_out + 1)]), persistent=False)
        self.register_buffer("fused_synthesis", torch.zeros(0), persistent=False)  # [K_in, G]
        self.register_buffer("fused_projection", torch.zeros(0), persistent=False)  # [K_out, G], weights in
        self.fused_paired = False  # the tables hold one point of each antipodal pair of the grid

    def forward(self, a: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """``a [K_in, N, C]`` -> ``B [K_out, N, C]``."""
        if self.fused and not torch.jit.is_scripting() and a.device.type == "cpu":
            return self._forward_fused(a, species)
        p = self.powers(a.permute(1, 2, 0))  # [N, C, nu, K_out]
        w = self.weight.index_select(0, species).index_select(3, self.degree)  # [N, C, nu, K_out]
        return (p * (w * self.inv_std)).sum(dim=2).permute(2, 0, 1).contiguous()  # [K_out, N, C]

    @torch.jit.unused
    def _forward_fused(self, a: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """The same basis as one polynomial per output degree on the grid, then one projection
        (projection is linear), in one C++ pass over blocks of rows (first derivatives only)."""
        from gaunt_md.model.kernels.product_basis import fused_product_basis

        _check_frozen(self)
        k, n, c = a.shape
        inv_std = self.inv_std.index_select(1, self.degree_starts)  # [nu, L_out+1]: constant within a degree
        w = (self.weight * inv_std).permute(2, 3, 0, 1).contiguous()  # [nu, L_out+1, S, C]
        coef = w.index_select(2, species)  # [nu, L_out+1, N, C]: rows (node, channel) last, like a
        synthesis, projection, paired = self.fused_synthesis, self.fused_projection, self.fused_paired
        if synthesis.numel() == 0:
            synthesis, projection, paired = self.powers.t.table, self.powers.t_out.table_w, False
        out = fused_product_basis(
            a.reshape(k, n * c), coef.reshape(coef.shape[0], coef.shape[1], n * c), synthesis, projection, paired
        )
        return out.view(-1, n, c)  # [K_out, N, C]


class InteractionLayer(nn.Module):
    """One message-passing layer: linear, Gaunt edge convolution, linear, Gaunt product basis,
    linear, plus a species-dependent skip connection (MACE's interaction + product block)."""

    def __init__(
        self,
        num_channels: int,
        l_in: int,
        l_edge: int,
        l_out: int,
        nu_max: int,
        num_species: int,
        radial_widths: list[int],
        avg_num_neighbors: float,
        message_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.linear_up = EquivariantLinear(num_channels, num_channels, l_in)
        self.conv = EdgeConvolution(num_channels, l_in, l_edge, radial_widths, avg_num_neighbors, message_scale)
        self.linear_message = EquivariantLinear(num_channels, num_channels, l_edge)
        self.product = GauntProductBasis(num_channels, l_edge, nu_max, l_out, num_species)
        self.linear_out = EquivariantLinear(num_channels, num_channels, l_out)
        self.k_skip = num_coefficients(min(l_in, l_out))
        self.skip = SpeciesLinear(num_channels, num_channels, min(l_in, l_out), num_species)

    def forward(
        self,
        h: torch.Tensor,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_basis: torch.Tensor,
        edge_lengths: torch.Tensor,
    ) -> torch.Tensor:
        if self.conv.folded and not torch.jit.is_scripting() and h.device.type == "cpu":
            a = self.conv.folded_message(species, edge_index, edge_sh, edge_lengths)  # first layer, kernels
        else:
            a = self.linear_message(self.conv(self.linear_up(h), edge_index, edge_sh, edge_basis, edge_lengths))
        b = self.product(a, species)  # [K_out, N, C]
        out = self.linear_out(b)
        skip = self.skip(h[: self.k_skip], species)
        if self.k_skip == out.shape[0]:
            return out + skip
        # in place on the linear map's output (its backward does not need it): no copy of the
        # higher degrees, and no zero-filled gradients of slices as with a concatenation
        out[: self.k_skip] += skip
        return out


class ScalarReadout(nn.Module):
    """``[K, N, C] -> [N]`` from the scalar (l = 0) channels: linear, or a one-hidden-layer SiLU MLP."""

    def __init__(self, num_channels: int, hidden: int = 0) -> None:
        super().__init__()
        self.first = Dense(num_channels, hidden if hidden > 0 else 1)
        self.second = Dense(hidden, 1) if hidden > 0 else None
        self.act_gain = 1.0 / math.sqrt(0.3557)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.first(h[0])
        second = self.second
        if second is not None:
            x = second(torch.nn.functional.silu(x), self.act_gain)
        return x.squeeze(-1)
