"""Molecular dynamics of the drug-like molecule 3BPA (C12H12N2O, 27 atoms) at 300 K.

Uses the shipped ``gaunt-3bpa`` potential (trained on the 3BPA 300 K set), float32, the Bussi
thermostat, a 0.5 fs step and rotation/translation removed from the start velocities.

Command-line equivalent::

    gaunt-md md 3bpa.xyz --model gaunt-3bpa --ensemble nvt-csvr --temp 300 --timestep 0.5 \\
        --steps 400 --seed 3 --file-prefix gaunt_results/examples/3bpa
"""

from __future__ import annotations

import os

# A 2-core machine shared with other jobs: one thread per library avoids oversubscription
# (20x faster here); drop these two lines on a dedicated many-core machine or a GPU.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys

import gaunt_md
from gaunt_md.drivers import run_md
from gaunt_md.drivers.md_files import read_stats
from gaunt_md.testing import example_molecule


def main() -> int:
    if "gaunt-3bpa" not in gaunt_md.available_models():
        print("the gaunt-3bpa potential is not installed here; `gaunt-md models` lists what is", file=sys.stderr)
        return 1
    from gaunt_md.calculator import GauntCalculator

    molecule = example_molecule()  # a 3BPA frame from the training set's temperature
    res = run_md(molecule, GauntCalculator("gaunt-3bpa", dtype="float32"), ensemble="nvt-csvr",
                 temperature_K=300.0, timestep_fs=0.5, steps=400, taut_fs=50.0, seed=3, traj_every=20,
                 stats_every=10, file_prefix="gaunt_results/examples/3bpa", progress=True)
    stats = read_stats(res.files["stats"])
    print(f"{len(molecule)} atoms, {res.steps} steps, {res.steps_per_second:.1f} steps/s")
    print(f"<T> = {stats['T'][len(stats['T']) // 3:].mean():.0f} K, E_pot range "
          f"{1000 * (stats['Epot/N'].max() - stats['Epot/N'].min()):.1f} meV/atom")
    print(f"trajectory: {res.files['trajectory']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
