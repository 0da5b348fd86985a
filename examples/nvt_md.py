"""NVT molecular dynamics of a small silicon cell at 600 K (Bussi / CSVR thermostat).

Command-line equivalent::

    gaunt-md md data/Si_diamond.cif --ensemble nvt-csvr --temp 600 --timestep 2 --steps 250 \\
        --seed 1 --traj-every 10 --stats-every 5 --file-prefix gaunt_results/examples/si-nvt

Outputs: ``-traj.extxyz`` (every 10 steps), ``-stats.dat`` (janus-core columns with units),
``-res-<step>.traj`` restart files, ``-final.extxyz`` and ``-md-summary.yml``. Run it again with
``restart=True`` (``--restart``) and a larger ``steps`` to continue where it stopped.
"""

from __future__ import annotations

import os

# A 2-core machine shared with other jobs: one thread per library avoids oversubscription
# (20x faster here); drop these two lines on a dedicated many-core machine or a GPU.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from ase.build import bulk

from gaunt_md.drivers import run_md
from gaunt_md.drivers.md_files import read_stats


def main() -> None:
    atoms = bulk("Si", "diamond", a=5.45, cubic=True)  # 8 atoms: a small cell that runs in seconds
    res = run_md(atoms, ensemble="nvt-csvr", temperature_K=600.0, timestep_fs=2.0, steps=250, taut_fs=50.0,
                 seed=1, traj_every=10, stats_every=5, restart_every=100,
                 file_prefix="gaunt_results/examples/si-nvt", progress=True)
    stats = read_stats(res.files["stats"])
    late = stats["T"][len(stats["T"]) // 3:]
    print(f"{res.steps} steps of {res.timestep_fs} fs, seed {res.seed}, {res.steps_per_second:.1f} steps/s")
    print(f"<T> after equilibration: {late.mean():.0f} K (target 600 K; 8 atoms fluctuate a lot)")
    print(f"<P>: {res.mean_pressure_GPa:.2f} GPa")
    print(f"files: {res.files}")


if __name__ == "__main__":
    main()
