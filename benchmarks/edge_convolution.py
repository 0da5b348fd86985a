"""Edge convolution: Gaunt couplings in coefficient space (the model) against the grid route (v2).

gtp.md 4.4 proposes, as an option, computing the edge convolution ``h_j (x) Y(r_ij)`` on the
sphere grid too. Both routes below give the same message (checked) for the model's shapes:
neighbour features of degree ``l_in`` (0 or 1), edge harmonics and messages of degree ``L_A = 3``,
a learnable radial weight per channel and ``(l1, l3)`` path.

=============  =====================================================================================
coupling       what :class:`~gaunt_md.model.blocks.EdgeConvolution` does: the Gaunt tensor
               contracted with ``Y(r_ij)`` into a per-edge ``[(L_A+1) K_in, K_A]`` matrix, radial
               weights on the neighbour features, one batched matmul
grid           per input degree ``l1``: ``GauntProduct(l1, L_A, L_A)`` of ``h_j^(l1)`` with
               ``Y(r_ij)`` broadcast over channels, then the radial weight per output degree
               ``l3``, summed over ``l1``
=============  =====================================================================================

Forward+backward (gradients w.r.t. features, harmonics and radial weights), float32, interleaved
rounds, median ms::

    python benchmarks/edge_convolution.py                 # E = 20000 edges, C = 32 and 64
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from gaunt_md.model.blocks import EdgeConvolution
from gaunt_md.so3 import GauntProduct, degree_of_index, num_coefficients


class CouplingRoute(torch.nn.Module):
    """The model's route, with the per-edge coupling table of :class:`EdgeConvolution` itself."""

    def __init__(self, l_in: int, l_edge: int) -> None:
        super().__init__()
        self.l_in, self.l_edge = l_in, l_edge
        conv = EdgeConvolution(1, l_in, l_edge, [1], 1.0)
        self.register_buffer("coupling", conv.coupling.clone())
        self.register_buffer("deg_in", degree_of_index(l_in))
        self.k_in, self.k_a = conv.k_in, conv.k_edge

    def forward(self, h_j: torch.Tensor, sh: torch.Tensor, radial: torch.Tensor) -> torch.Tensor:
        # h_j [E, C, K_in], sh [E, K_A], radial [E, C, L_A+1, l_in+1]
        e, c, _ = h_j.shape
        rows = (self.l_edge + 1) * self.k_in
        t = (sh @ self.coupling).view(e, rows, self.k_a)
        w = radial.index_select(3, self.deg_in)
        x = (w * h_j.unsqueeze(2)).view(e, c, rows)
        return torch.bmm(x, t)


class GridRoute(torch.nn.Module):
    def __init__(self, l_in: int, l_edge: int) -> None:
        super().__init__()
        self.l_in, self.l_edge = l_in, l_edge
        self.products = torch.nn.ModuleList([GauntProduct(l1, l_edge, l_edge) for l1 in range(l_in + 1)])
        self.register_buffer("deg_out", degree_of_index(l_edge))

    def forward(self, h_j: torch.Tensor, sh: torch.Tensor, radial: torch.Tensor) -> torch.Tensor:
        e, c, _ = h_j.shape
        out = torch.zeros(e, c, num_coefficients(self.l_edge), dtype=h_j.dtype)
        y = sh.unsqueeze(1).expand(e, c, sh.shape[1])
        for l1, product in enumerate(self.products):
            x = h_j[:, :, : (l1 + 1) ** 2]
            if l1 > 0:  # degree l1 only: the lower degrees have their own product
                x = torch.cat([torch.zeros_like(x[:, :, : l1 * l1]), x[:, :, l1 * l1 :]], dim=2)
            z = product(x, y)  # [E, C, K_A]
            out = out + 4.0 * math.pi * z * radial[:, :, :, l1].index_select(2, self.deg_out)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edges", type=int, default=20000)
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--l-in", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"# edge convolution, E = {args.edges}, float32, {args.threads} thread(s), fwd+bwd, median ms")
    print("| C | l_in | coupling (model) | grid (v2) | grid / coupling | max rel. deviation |")
    print("|---|---|---|---|---|---|")
    l_edge = 3
    for c in args.channels:
        for l_in in args.l_in:
            routes = {"coupling": CouplingRoute(l_in, l_edge).float(), "grid": GridRoute(l_in, l_edge).float()}
            h = torch.randn(args.edges, c, num_coefficients(l_in), generator=gen)
            sh = torch.randn(args.edges, num_coefficients(l_edge), generator=gen)
            rad = torch.randn(args.edges, c, l_edge + 1, l_in + 1, generator=gen)
            outs = {k: r(h, sh, rad) for k, r in routes.items()}
            dev = ((outs["grid"] - outs["coupling"]).abs().max() / outs["coupling"].abs().max()).item()
            times: dict[str, list[float]] = {k: [] for k in routes}
            for _ in range(args.repeats):
                for name, route in routes.items():
                    hh, ss, rr = (t.clone().requires_grad_(True) for t in (h, sh, rad))
                    t0 = time.perf_counter()
                    route(hh, ss, rr).sum().backward()
                    times[name].append(time.perf_counter() - t0)
            med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            print(f"| {c} | {l_in} | {med['coupling']:.1f} | {med['grid']:.1f} | "
                  f"{med['grid'] / med['coupling']:.2f}x | {dev:.1e} |", flush=True)


if __name__ == "__main__":
    main()
