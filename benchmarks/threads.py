"""One or two torch threads per system size, as the ``gaunt-md`` commands run (not a test).

Each (system, threads) runs in its own process with the CLI's process settings
(``OMP_WAIT_POLICY=PASSIVE``, :func:`gaunt_md.runtime.keep_freed_memory`); rounds alternate the
thread counts. A call is an MD step through the ASE calculator: small displacement, energy +
forces (+ stress), neighbour list included. Shipped ``gaunt-mlearn`` (Si diamond supercells) and
``gaunt-3bpa`` (one 27-atom molecule). Sets ``gaunt_md.cli.SMALL_SYSTEM_ATOMS``.

    python benchmarks/threads.py                     # float32 and float64, 2 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SYSTEMS = {"Si8": 1, "3BPA27": None, "Si64": 2, "Si216": 3, "Si512": 4}


def worker(system: str, dtype: str, threads: int, min_time: float) -> float:
    import numpy as np
    import torch
    from ase.build import bulk
    from ase.io import read

    from gaunt_md.calculator import GauntCalculator
    from gaunt_md.runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)
    if system == "3BPA27":
        from pathlib import Path

        atoms = read(Path(__file__).resolve().parents[1] / "tests/data/fixtures/3bpa_train_300K_3.xyz", 0)
        model = "gaunt-3bpa"
    else:
        atoms = bulk("Si", "diamond", a=5.43, cubic=True if SYSTEMS[system] > 1 else False)
        atoms = atoms * ((SYSTEMS[system],) * 3) if SYSTEMS[system] > 1 else atoms * (2, 2, 1)
        model = "gaunt-mlearn"
    atoms.calc = GauntCalculator(model, device="cpu", dtype=dtype)
    step = np.random.default_rng(0).normal(scale=1e-3, size=atoms.positions.shape)
    times = []
    start = time.perf_counter()
    for k in range(10_000):
        atoms.positions += step if k % 2 == 0 else -step
        t = time.perf_counter()
        atoms.get_forces()
        if atoms.pbc.all():
            atoms.get_stress()
        if k >= 2:
            times.append(time.perf_counter() - t)
        if k >= 6 and time.perf_counter() - start > min_time:
            break
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=3.0)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(worker(**spec)))
        return
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average "
          f"{tuple(round(x, 1) for x in os.getloadavg())}; ms per MD step, best round's median")
    print("| system | atoms | dtype | 1 thread | 2 threads | 2 threads / 1 thread |")
    print("|---|---|---|---|---|---|")
    sizes = {"Si8": 8, "3BPA27": 27, "Si64": 64, "Si216": 216, "Si512": 512}
    for system in SYSTEMS:
        for dtype in args.dtypes:
            best: dict[int, float] = {}
            for r in range(args.rounds):
                for threads in (1, 2) if r % 2 == 0 else (2, 1):
                    spec = dict(system=system, dtype=dtype, threads=threads, min_time=args.min_time)
                    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                    best[threads] = min(best.get(threads, float("inf")), float(out))
            print(f"| {system} | {sizes[system]} | {dtype} | {1e3 * best[1]:.1f} | {1e3 * best[2]:.1f} | "
                  f"{best[2] / best[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
