"""Neighbour searches: the C++ searches of gaunt_md.data against matscipy.

    python benchmarks/neighbors.py [--threads 2] [--repeats 20]

1. One fully periodic structure: ``gaunt_md.data.neighbors.neighbor_list`` (the C++ cell list of
   ``native/csrc/neighbors.cpp`` where a compiler exists) against ``matscipy.neighbours.neighbour_list``
   on the same positions (rattled Cu fcc and Si diamond supercells, cutoff 5 Å).
2. Many small structures: ``atoms_to_graphs`` (one C++ call for all, ``data/image_search.py``)
   against ``atoms_to_graph`` per structure (the cell list, and the graph bookkeeping, per cell)
   and against matscipy's search alone per structure, for the 1000 cells of 2-8 atoms of
   ``model_speed.py --batch``.

Median of ``--repeats`` calls after one warm-up; both searches are checked to give the same edges.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from ase.build import bulk
    from matscipy.neighbours import neighbour_list as matscipy_neighbour_list

    from benchmarks.model_speed import random_small_cells
    from gaunt_md.data.graph import atoms_to_graph, atoms_to_graphs
    from gaunt_md.data.neighbors import neighbor_list
    from gaunt_md.native.build import available

    torch.set_num_threads(args.threads)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average "
          f"{tuple(round(x, 1) for x in os.getloadavg())}, {args.threads} threads, C++ searches "
          f"{'available' if available() else 'NOT available (matscipy on both sides)'}")
    cutoff = 5.0
    print("\n| structure | atoms | edges | neighbor_list ms | matscipy ms | matscipy / ours |")
    print("|---|---|---|---|---|---|")
    for name, atoms in [
        ("Cu fcc", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(5)),
        ("Cu fcc", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(7)),
        ("Si diamond", bulk("Si", "diamond", a=5.43, cubic=True).repeat(5)),
        ("Si diamond", bulk("Si", "diamond", a=5.43, cubic=True).repeat(8)),
    ]:
        atoms.rattle(0.05, seed=1)
        edge_index, _ = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
        i, j, shifts = matscipy_neighbour_list("ijS", atoms, cutoff)
        assert edge_index.shape[1] == len(i), "different edge counts"
        ours = median_ms(lambda: neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff), args.repeats)
        theirs = median_ms(lambda: matscipy_neighbour_list("ijSd", atoms, cutoff), args.repeats)
        print(f"| {name} | {len(atoms)} | {len(i)} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.1f}x |")

    cells = random_small_cells(1000)
    together = atoms_to_graphs(cells, cutoff)
    one_by_one = [atoms_to_graph(a, cutoff) for a in cells]
    assert sum(g.num_edges for g in together) == sum(g.num_edges for g in one_by_one)
    t_together = median_ms(lambda: atoms_to_graphs(cells, cutoff), max(3, args.repeats // 4))
    t_single = median_ms(lambda: [atoms_to_graph(a, cutoff) for a in cells], max(3, args.repeats // 4))
    t_matscipy = median_ms(lambda: [matscipy_neighbour_list("ijSd", a, cutoff) for a in cells], max(3, args.repeats // 4))
    print(f"\n{len(cells)} cells of 2-8 atoms ({sum(map(len, cells))} atoms, "
          f"{sum(g.num_edges for g in together)} edges): atoms_to_graphs {t_together:.1f} ms; "
          f"atoms_to_graph per cell {t_single:.1f} ms ({t_single / t_together:.1f}x); "
          f"matscipy's search alone per cell {t_matscipy:.1f} ms ({t_matscipy / t_together:.1f}x)")


if __name__ == "__main__":
    main()
