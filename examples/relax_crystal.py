"""Relax a strained, rattled silicon crystal (cell and positions) with the default potential.

Command-line equivalent::

    gaunt-md relax data/Si_diamond.cif --opt-cell-fully --fmax 0.001 --file-prefix gaunt_results/si

Writes ``gaunt_results/examples/si-opt.extxyz`` (final structure), ``-relax-traj.extxyz``,
``-relax-log.dat`` (step, energy, fmax, pressure, volume) and ``-relax-summary.yml``.
"""

from __future__ import annotations

import os

# A 2-core machine shared with other jobs: one thread per library avoids oversubscription
# (20x faster here); drop these two lines on a dedicated many-core machine or a GPU.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from ase.build import bulk

from gaunt_md.drivers import run_relax


def main() -> None:
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.set_cell(atoms.cell.array * 1.02, scale_atoms=True)  # 2 % tensile strain
    atoms.positions += np.random.default_rng(0).normal(scale=0.03, size=atoms.positions.shape)

    # calculator=None builds GauntCalculator() with the default model in float64
    res = run_relax(atoms, cell="full", fmax=1e-3, optimizer="FIRE",
                    file_prefix="gaunt_results/examples/si", progress=True)

    a = (res.atoms.get_volume() / len(res.atoms) * 8) ** (1 / 3)
    print(f"converged: {res.converged} in {res.steps} steps")
    print(f"energy: {res.energy_per_atom:.4f} eV/atom, max force {res.max_force:.1e} eV/Å")
    print(f"lattice constant: {a:.4f} Å (DFT-PBE 5.47 Å), pressure {res.pressure_GPa:.3f} GPa")
    print(f"files: {res.files}")


if __name__ == "__main__":
    main()
