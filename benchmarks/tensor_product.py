"""Benchmark: Gaunt product (grid route, Fourier route) against e3nn's CG tensor products.

Product ``L x L -> L`` per channel on ``[N, C, (L+1)**2]`` float32 features (the model's layout),
CPU, a fixed number of threads. Methods, each timed forward and forward+backward (gradients of
both inputs for a random cotangent), interleaved round by round so that load changes on a shared
machine hit all of them alike:

=============  ==================================================================================
grid           ``GauntProduct`` (route B) as the model uses it: plain tensor ops (the default; the
               same code runs under ``torch.jit.script`` and on GPUs)
grid-lebedev   ``GauntProduct(..., grid="lebedev")``: the smallest exact Lebedev rule (opt-in,
               about 0.7x the points of the Gauss-Legendre grid, dense transforms only)
grid-fused     ``GauntProduct(..., fused=True)``: chunked kernels on a pool of single-threaded
               workers with hand-written backward passes (eager CPU only, opt-in)
fourier        ``GauntProductFourier`` (route A: 2D Fourier coefficients + FFT)
e3nn-even      e3nn ``TensorProduct``, ``uuu``, the even paths ``l3 <= L``, path weight kappa^2:
               the same function (checked below)
e3nn-full      e3nn ``TensorProduct``, ``uuu``, all paths ``l3 <= L`` (both output parities)
=============  ==================================================================================

e3nn times include the layout conversions the model would need (``[N, C, K]`` to e3nn's
irreps-major ``[N, sum_l C (2l+1)]`` and back). Ratios are ``method / grid`` of the medians.

    python benchmarks/tensor_product.py                 # full sweep (30-90 min on 2 loaded cores)
    python benchmarks/tensor_product.py --quick         # L = 1, 3, 6, C = 128, few repeats
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable

if __name__ == "__main__" and "--omp-active" not in sys.argv:
    # Idle OpenMP threads sleep instead of spinning: on a shared, oversubscribed machine spinning
    # threads steal the cores the other methods' threads need (read before torch starts OpenMP).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import e3nn  # noqa: E402
import torch  # noqa: E402
from e3nn import o3  # noqa: E402

from gaunt_md.so3 import GauntProduct, GauntProductFourier, gaunt_coefficients  # noqa: E402


def to_e3nn(x: torch.Tensor, l_max: int) -> torch.Tensor:
    """``[N, C, (L+1)**2] -> [N, sum_l C (2l+1)]`` (e3nn's irreps-major, then multiplicity)."""
    n = x.shape[0]
    return torch.cat([x[:, :, l * l : (l + 1) ** 2].reshape(n, -1) for l in range(l_max + 1)], dim=1)


def from_e3nn(z: torch.Tensor, irreps: o3.Irreps, channels: int) -> torch.Tensor:
    """``[N, sum C (2l+1)] -> [N, C, sum (2l+1)]`` (one block per irrep, in the irreps' order)."""
    n = z.shape[0]
    return torch.cat([z[:, s].view(n, channels, ir.dim) for s, (_, ir) in zip(irreps.slices(), irreps)], dim=2)


def e3nn_product(l_max: int, channels: int, *, even_only: bool) -> tuple[o3.TensorProduct, o3.Irreps]:
    """Channel-wise ``uuu`` CG product over paths with ``l3 <= L``; Gaunt path weights for ``even_only``."""
    irreps = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(l_max + 1)])
    outs: list[tuple[int, int]] = []
    paths: list[tuple[int, int, tuple[int, int], float]] = []
    for l1 in range(l_max + 1):
        for l2 in range(l_max + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, l_max) + 1):
                if even_only and (l1 + l2 + l3) % 2:
                    continue
                p = (-1) ** (l1 + l2)
                if (l3, p) not in outs:
                    outs.append((l3, p))
                weight = float(gaunt_coefficients(l1, l2, l3).norm()) ** 2 if even_only else 1.0
                paths.append((l1, l2, (l3, p), weight))
    outs.sort()
    irreps_out = o3.Irreps([(channels, ir) for ir in outs])
    index = {ir: i for i, ir in enumerate(outs)}
    instructions = [(l1, l2, index[ir], "uuu", False, w) for l1, l2, ir, w in paths]
    tp = o3.TensorProduct(
        irreps, irreps, irreps_out, instructions, irrep_normalization="none", path_normalization="none"
    )
    return tp, irreps_out


def build_methods(l_max: int, channels: int, dtype: torch.dtype, skip: set[str]) -> dict[str, Callable]:
    """name -> ``f(x, y)`` on ``[N, C, K]`` tensors."""
    methods: dict[str, Callable] = {}
    methods["grid"] = GauntProduct(l_max, l_max, l_max).to(dtype)
    if "grid-lebedev" not in skip:
        methods["grid-lebedev"] = GauntProduct(l_max, l_max, l_max, grid="lebedev").to(dtype)
    if "grid-fused" not in skip:
        methods["grid-fused"] = GauntProduct(l_max, l_max, l_max, fused=True).to(dtype)
    if "fourier" not in skip:
        methods["fourier"] = GauntProductFourier(l_max, l_max, l_max).to(dtype)
    for name, even in (("e3nn-even", True), ("e3nn-full", False)):
        if name in skip:
            continue
        tp, irreps_out = e3nn_product(l_max, channels, even_only=even)
        tp = tp.to(dtype)
        methods[name] = (
            lambda x, y, tp=tp, irreps_out=irreps_out: from_e3nn(
                tp(to_e3nn(x, l_max), to_e3nn(y, l_max)), irreps_out, channels
            )
        )
    return methods


def check_same_function(methods: dict[str, Callable], l_max: int, channels: int, dtype: torch.dtype) -> dict[str, float]:
    """Relative max deviation of each method (except e3nn-full) from ``grid`` on random inputs."""
    gen = torch.Generator().manual_seed(0)
    k = (l_max + 1) ** 2
    x = torch.randn(7, channels, k, generator=gen, dtype=dtype)
    y = torch.randn(7, channels, k, generator=gen, dtype=dtype)
    with torch.no_grad():
        ref = methods["grid"](x, y)
        return {
            name: float((f(x, y) - ref).abs().max() / ref.abs().max())
            for name, f in methods.items()
            if name not in ("grid", "e3nn-full")
        }


def time_methods(
    methods: dict[str, Callable], x: torch.Tensor, y: torch.Tensor, *, backward: bool, repeats: int, budget_s: float
) -> dict[str, dict[str, float]]:
    """Round-robin timing; at least 3 rounds, then stop at ``repeats`` rounds or ``budget_s`` seconds."""
    xs, ys = (x.detach().requires_grad_(backward), y.detach().requires_grad_(backward))
    cot = None
    times: dict[str, list[float]] = {name: [] for name in methods}
    faults: dict[str, list[int]] = {name: [] for name in methods}

    def call(f: Callable) -> None:
        nonlocal cot
        if backward:
            z = f(xs, ys)
            if cot is None or cot.shape != z.shape:
                cot = torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=z.dtype)
            z.backward(cot)
            xs.grad = ys.grad = None
        else:
            with torch.no_grad():
                f(xs, ys)

    for f in methods.values():  # warm-up (codegen, first-touch)
        call(f)
    start = time.perf_counter()
    rounds = 0
    while rounds < 3 or (rounds < repeats and time.perf_counter() - start < budget_s):
        for name, f in methods.items():
            flt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            call(f)
            times[name].append(time.perf_counter() - t0)
            faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt)
        rounds += 1
    return {
        name: {"median": statistics.median(ts), "min": min(ts), "faults": statistics.median(faults[name]), "n": len(ts)}
        for name, ts in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lmax", type=int, nargs="+", default=list(range(1, 9)))
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=15, help="rounds per case (at least 3)")
    ap.add_argument("--budget", type=float, default=40.0, help="seconds per case and pass before stopping early")
    ap.add_argument("--skip", nargs="*", default=[], help="methods to leave out, e.g. e3nn-full fourier")
    ap.add_argument("--quick", action="store_true", help="L = 1 3 6, C = 128, 5 rounds, 10 s budget")
    ap.add_argument("--malloc", choices=["keep", "default"], default="keep",
                    help="keep: gaunt_md.runtime.keep_freed_memory() for every method alike (what the "
                    "gaunt-md commands do); default: glibc's defaults")
    ap.add_argument("--omp-active", action="store_true", help="do not set OMP_WAIT_POLICY=PASSIVE")
    args = ap.parse_args(argv)
    if args.quick:
        args.lmax, args.channels, args.repeats, args.budget = [1, 3, 6], [128], 5, 10.0
    torch.set_num_threads(args.threads)
    if args.malloc == "keep":
        from gaunt_md.runtime import keep_freed_memory

        keep_freed_memory()
    dtype = getattr(torch, args.dtype)
    print(f"# torch {torch.__version__}, e3nn {e3nn.__version__}, {platform.machine()}, "
          f"threads {torch.get_num_threads()}, {args.dtype}, N = {args.nodes}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, allocator {args.malloc}", flush=True)
    print(f"# command: python {' '.join(sys.argv)}", flush=True)
    print(f"# load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    rows = []
    for channels in args.channels:
        for l_max in args.lmax:
            methods = build_methods(l_max, channels, dtype, set(args.skip))
            dev = check_same_function(methods, l_max, channels, dtype)
            bad = {k: v for k, v in dev.items() if v > 1e-4}
            if bad:
                raise SystemExit(f"methods disagree with the grid route at L={l_max}: {bad}")
            gen = torch.Generator().manual_seed(2)
            k = (l_max + 1) ** 2
            x = torch.randn(args.nodes, channels, k, generator=gen, dtype=dtype)
            y = torch.randn(args.nodes, channels, k, generator=gen, dtype=dtype)
            for backward in (False, True):
                res = time_methods(methods, x, y, backward=backward, repeats=args.repeats, budget_s=args.budget)
                rows.append((channels, l_max, "fwd+bwd" if backward else "fwd", res, dev))
                print_row(rows[-1], header=len(rows) == 1)
            del methods
    print(f"\n# load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("\n## ratios method / grid (medians), forward+backward")
    names = [n for n in rows[0][3] if n != "grid"]
    print("| C | L | " + " | ".join(names) + " |")
    print("|---" * (2 + len(names)) + "|")
    for channels, l_max, kind, res, _ in rows:
        if kind == "fwd+bwd":
            g = res["grid"]["median"]
            print(f"| {channels} | {l_max} | " + " | ".join(f"{res[n]['median'] / g:.2f}" for n in names) + " |")
    return 0


def print_row(row, *, header: bool) -> None:
    channels, l_max, kind, res, dev = row
    names = list(res)
    if header:
        print("\n## times in ms: median (min) [minor page faults per call]; ratio = median / grid median")
        print("| C | L | pass | " + " | ".join(names) + " | " + " | ".join(f"{n}/grid" for n in names[1:]) + " |")
        print("|---" * (3 + 2 * len(names) - 1) + "|")
    g = res["grid"]["median"]
    cells = [f"{1e3 * r['median']:.2f} ({1e3 * r['min']:.2f}) [{int(r['faults'])}]" for r in res.values()]
    ratios = [f"{res[n]['median'] / g:.2f}" for n in names[1:]]
    print(f"| {channels} | {l_max} | {kind} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |", flush=True)
    if kind == "fwd":
        print(f"<!-- L={l_max} C={channels} max rel. deviation from grid: "
              + ", ".join(f"{k} {v:.1e}" for k, v in dev.items()) + " -->", flush=True)


if __name__ == "__main__":
    sys.exit(main())
