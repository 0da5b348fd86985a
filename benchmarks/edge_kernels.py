"""The fused kernels of one calculate_batch call, one at a time, on the call's own tensors. Not a test.

    python benchmarks/edge_kernels.py                     # float64, 2 threads
    python benchmarks/edge_kernels.py --dtype float32

The inputs are those of ``benchmarks/model_speed.py --batch`` (the benchmark's Si model, 1000
rattled, strained Si cells of 2-8 atoms), captured from one ``calculate_batch`` call. Each edge
convolution and product basis then runs forward and backward on its own (best of ``--repeats``).
Two variants of the second layer's edge convolution measure what reading its radial table costs:

* ``equal lengths``: every edge gets the same length, so every edge reads the same table rows
  (from L1): the kernel's time without the table traffic;
* ``pairs share rows``: every odd edge gets its even neighbour's length, so each row read is
  reused once right away, as pairing every edge with its reverse (same length) would do;
* ``N distinct lengths``: the lengths drawn at random from N values in 2-4.9 Å, so that the edges
  read N rows of the table (16 KB each in float64) in random order: how the time grows with
  the part of the table in use against the caches (2 MB of L2 per core here);
* ``table in 4 KB pages``: the table copied out of its huge pages
  (:mod:`gaunt_md.native.memory`) into ordinary memory.

The numbers are wrong for the length variants (other lengths); only their times mean something.
Runs against any checkout with the same kernel entry points (``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def time_conv(conv, args, kwargs, repeats):
    import torch

    args, kw = list(args), dict(kwargs)
    args[0] = args[0].detach().clone().requires_grad_(args[0].requires_grad)  # h
    # the coupling S, or the harmonics the kernel makes it from (older checkouts: always S)
    if len(args) > 1 and args[1] is not None:
        args[1] = args[1].detach().clone().requires_grad_(True)
    if kw.get("coupling") is not None:
        kw["coupling"] = kw["coupling"].detach().clone().requires_grad_(True)
    if kw.get("edge_sh") is not None:
        kw["edge_sh"] = kw["edge_sh"].detach().clone().requires_grad_(True)
    kw["lengths"] = kwargs["lengths"].detach().clone().requires_grad_(True)
    out = conv(*args, **kw)
    grad = torch.ones_like(out)
    forward = best_of(lambda: conv(*args, **kw), repeats)

    def fwd_bwd():
        conv(*args, **kw).backward(grad)

    both = best_of(fwd_bwd, repeats)
    return forward, both - forward


def time_product(product, args, repeats):
    import torch

    a = args[0].detach().clone().requires_grad_(True)
    out = product(a, *args[1:])
    grad = torch.ones_like(out)
    forward = best_of(lambda: product(a, *args[1:]), repeats)
    both = best_of(lambda: product(a, *args[1:]).backward(grad), repeats)
    return forward, both - forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--distinct", type=int, nargs="*", default=[64, 128, 256, 1024],
                        help="numbers of distinct lengths for the working-set rows")
    args = parser.parse_args()

    import torch

    import gaunt_md.model.kernels.edge_conv as edge_conv
    import gaunt_md.model.kernels.product_basis as product_basis
    from benchmarks.model_speed import make_models, random_small_cells
    from gaunt_md.calculator import GauntCalculator
    from gaunt_md.runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    models = make_models(Path(tempfile.mkdtemp()), with_mace=False)
    cells = random_small_cells(1000)
    calc = GauntCalculator(models["Si"]["gaunt"], device="cpu", dtype=args.dtype)

    convs, products = [], []
    conv, product = edge_conv.fused_edge_convolution, product_basis.fused_product_basis
    edge_conv.fused_edge_convolution = lambda *a, **kw: (convs.append((a, kw)), conv(*a, **kw))[1]
    product_basis.fused_product_basis = lambda *a, **kw: (products.append(a), product(*a, **kw))[1]
    try:
        calc.calculate_batch(cells)
    finally:
        edge_conv.fused_edge_convolution, product_basis.fused_product_basis = conv, product

    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average "
          f"{tuple(round(x, 1) for x in os.getloadavg())}, {args.threads} torch threads, {args.dtype}; "
          f"ms, best of {args.repeats}")
    print(f"# {sum(map(len, cells))} atoms, {convs[0][0][1].shape[0]} edges")
    print("| kernel | forward | backward |")
    print("|---|---|---|")
    for t, (a, kw) in enumerate(convs[-2:]):
        f, b = time_conv(conv, a, kw, args.repeats)
        print(f"| edge convolution, layer {t + 1} | {f:.1f} | {b:.1f} |")
    a, kw = convs[-1]
    lengths = kw["lengths"]
    equal = dict(kw, lengths=torch.full_like(lengths, 3.0))
    f, b = time_conv(conv, a, equal, args.repeats)
    print(f"| edge convolution, layer 2, equal lengths | {f:.1f} | {b:.1f} |")
    shared = lengths.clone()
    shared[1::2] = lengths[0::2][: shared[1::2].shape[0]]
    f, b = time_conv(conv, a, dict(kw, lengths=shared), args.repeats)
    print(f"| edge convolution, layer 2, pairs share rows | {f:.1f} | {b:.1f} |")
    gen = torch.Generator().manual_seed(0)
    for n in args.distinct:
        values = torch.linspace(2.0, 4.9, n, dtype=lengths.dtype)
        drawn = values[torch.randint(0, n, lengths.shape, generator=gen)]
        f, b = time_conv(conv, a, dict(kw, lengths=drawn), args.repeats)
        print(f"| edge convolution, layer 2, {n} distinct lengths | {f:.1f} | {b:.1f} |")
    table = kw["table"]
    plain = torch.empty(table.shape, dtype=table.dtype)  # ordinary 4 KB pages
    plain.copy_(table)
    f, b = time_conv(conv, a, dict(kw, table=plain), args.repeats)
    print(f"| edge convolution, layer 2, table in 4 KB pages | {f:.1f} | {b:.1f} |")
    for t, a in enumerate(products[-2:]):
        f, b = time_product(product, a, args.repeats)
        print(f"| product basis, layer {t + 1} | {f:.1f} | {b:.1f} |")


if __name__ == "__main__":
    main()
