"""Time of one training step on the torch-ops path (what ``gaunt-md train`` runs). Not a test.

    python benchmarks/train_speed.py                      # float32 and float64, 2 threads
    python benchmarks/train_speed.py --dtypes float64 --structures 8

One step = forward, forces and stress by autograd with ``create_graph=True``, an energy + forces +
stress loss, and its backward to the weights, on a batch of rattled Si supercells (64 atoms each)
with the model of ``benchmarks/model_speed.py`` (64 channels, l_max 3 edges, correlation 3).
Median of repeated steps after a warm-up, with the allocator settings of ``gaunt-md train``
(``gaunt_md.runtime.keep_freed_memory``); compare numbers measured in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for benchmarks.model_speed

from benchmarks.model_speed import gaunt_config  # noqa: E402
from gaunt_md.data.batch import collate  # noqa: E402
from gaunt_md.data.graph import atoms_to_graph  # noqa: E402
from gaunt_md.model.derivatives import ForceField, edge_vectors  # noqa: E402
from gaunt_md.model.potential import GauntPotential  # noqa: E402


def step_time(dtype: torch.dtype, n_structures: int, repeats: int) -> tuple[float, int]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GauntPotential(gaunt_config((14,))).to(dtype)
    forcefield = ForceField(model)
    structures = []
    for k in range(n_structures):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=k)
        structures.append(atoms)
    batch = collate([atoms_to_graph(a, model.cutoff) for a in structures])
    vectors = edge_vectors(batch.positions, batch.cell, batch.edge_index, batch.unit_shifts, batch.batch).to(dtype)

    def step() -> None:
        out = forcefield(batch.numbers, batch.edge_index, vectors, batch.batch, batch.num_graphs,
                         compute_forces=True, compute_virial=True, create_graph=True)
        loss = out["interaction_energy"].pow(2).sum() + out["forces"].pow(2).sum() + out["virial"].pow(2).sum()
        loss.backward()
        model.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), batch.num_atoms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--structures", type=int, default=8, help="64-atom Si cells per batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from gaunt_md.runtime import keep_freed_memory

    keep_freed_memory()  # what `gaunt-md train` does
    torch.set_num_threads(args.threads)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {args.threads} torch threads, batch of {args.structures} Si64 cells")
    print("| dtype | atoms | ms per training step | atoms per second |")
    print("|---|---|---|---|")
    for name in args.dtypes:
        seconds, n_atoms = step_time(getattr(torch, name), args.structures, args.repeats)
        print(f"| {name} | {n_atoms} | {1e3 * seconds:.0f} | {n_atoms / seconds:.0f} |")


if __name__ == "__main__":
    main()
