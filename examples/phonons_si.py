"""Phonon band structure, DOS and heat capacity of silicon (phonopy, finite displacements).

Command-line equivalent::

    gaunt-md phonons data/Si_diamond.cif --minimize --supercell "3 3 3" --file-prefix gaunt_results/examples/si

The primitive cell is relaxed tightly in float64 with its symmetry kept, the 54-atom supercell
is displaced by 0.01 Å, and every displaced cell goes through one ``calculate_batch`` call.
Files (phonopy's names): ``phonopy.yaml``, ``band.yaml``, ``total_dos.dat``,
``thermal_properties.yaml``, ``force_constants.hdf5`` and ``phonons.png`` in
``gaunt_results/examples/si-phonons/``.
"""

from __future__ import annotations

import os

# A 2-core machine shared with other jobs: one thread per library avoids oversubscription
# (20x faster here); drop these two lines on a dedicated many-core machine or a GPU.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from ase.build import bulk

from gaunt_md.drivers import run_phonons
from gaunt_md.drivers.phonons import frequencies_at


def main() -> None:
    res = run_phonons(bulk("Si", "diamond", a=5.45), supercell=3, relax=True, relax_fmax=1e-4,
                      file_prefix="gaunt_results/examples/si", progress=True)
    gamma = np.asarray(res.gamma_frequencies_THz)
    x_point = frequencies_at(res.phonopy, [[0.5, 0.0, 0.5]])[0]
    print(f"acoustic modes at Gamma: {np.round(gamma[:3], 4)} THz (should be ~0)")
    print(f"optical mode at Gamma: {gamma[3:].mean():.2f} THz (experiment 15.5 THz)")
    print(f"X point: {np.round(x_point, 2)} THz (experiment TA 4.5, LA/LO 12.3, TO 13.9)")
    print(f"imaginary modes: {'yes, lowest %.2f THz' % res.min_frequency_THz if res.has_imaginary_modes else 'none'}")
    t = np.asarray(res.thermal["temperature_K"])
    cv = np.asarray(res.thermal["heat_capacity_J_per_K_mol"])
    print(f"Cv(300 K) = {np.interp(300, t, cv) / 2:.2f} J/K/mol-atom (experiment 19.8)")
    print(f"plot: {res.files['plot']}")


if __name__ == "__main__":
    main()
