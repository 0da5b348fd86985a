"""Speed of the shipped potentials (atom-steps/s) for their model cards. Not a test.

    python benchmarks/shipped_speed.py                     # every shipped model
    python benchmarks/shipped_speed.py gaunt-mlearn        # one

A "step" is what an MD step costs: move the atoms slightly, then energy + forces (+ stress for
periodic cells) through the ASE calculator, neighbour list included. torch runs with
``--threads`` threads (default 1; set here, never in the library). Median of repeated calls after a warm-up; shared machines
move timings by up to 2x, so compare numbers measured in one run.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from ase.io import read

import gaunt_md
from gaunt_md.calculator import GauntCalculator

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "fixtures"
SYSTEMS = {
    "gaunt-mlearn": [("Si diamond 216", lambda: bulk("Si", "diamond", 5.47, cubic=True) * (3, 3, 3)),
                     ("Cu fcc 108", lambda: bulk("Cu", "fcc", 3.62, cubic=True) * (3, 3, 3))],
    "gaunt-3bpa": [("3BPA molecule 27", lambda: read(FIXTURES / "3bpa_train_300K_3.xyz", 0))],
    "gaunt-rmd17-ethanol": [("ethanol 9", lambda: read(FIXTURES / "rmd17_ethanol_3.xyz", 0))],
    "gaunt-rmd17-aspirin": [("aspirin 21", lambda: read(FIXTURES / "rmd17_aspirin_3.xyz", 0))],
}


def atom_steps_per_second(calc: GauntCalculator, atoms, min_time: float = 3.0) -> float:
    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng(0)
    times = []
    start = time.perf_counter()
    for k in range(1000):
        atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
        t0 = time.perf_counter()
        atoms.get_forces()
        if atoms.pbc.all():
            atoms.get_stress()
        if k > 0:  # first call is the warm-up
            times.append(time.perf_counter() - t0)
        if k >= 5 and time.perf_counter() - start > min_time:
            break
    return len(atoms) / statistics.median(times)


def main(names: list[str], threads: int = 1) -> None:
    torch.set_num_threads(threads)
    print("| model | system | float32 atom-steps/s | float64 atom-steps/s |")
    print("|---|---|---|---|")
    for name in names:
        for label, build in SYSTEMS.get(name, []):
            speeds = [atom_steps_per_second(GauntCalculator(name, device="cpu", dtype=d), build()) for d in ("float32", "float64")]
            print(f"| {name} | {label} | {speeds[0]:.0f} | {speeds[1]:.0f} |", flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="shipped model names (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    main(args.models or gaunt_md.available_models(), args.threads)
