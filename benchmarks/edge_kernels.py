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
  reused once right away, as pairing every edge with its reverse (same length) would do.

The numbers are wrong for those variants (other lengths); only their times mean something.
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

    h = args[0].detach().clone().requires_grad_(args[0].requires_grad)
    s = args[1].detach().clone().requires_grad_(True)
    kw = dict(kwargs)
    kw["lengths"] = kwargs["lengths"].detach().clone().requires_grad_(True)
    out = conv(h, s, *args[2:], **kw)
    grad = torch.ones_like(out)
    forward = best_of(lambda: conv(h, s, *args[2:], **kw), repeats)

    def fwd_bwd():
        conv(h, s, *args[2:], **kw).backward(grad)

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
    for t, a in enumerate(products[-2:]):
        f, b = time_product(product, a, args.repeats)
        print(f"| product basis, layer {t + 1} | {f:.1f} | {b:.1f} |")


if __name__ == "__main__":
    main()
