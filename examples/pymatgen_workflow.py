"""A pymatgen workflow: Structure in, relax, equation of state, Structure and JSON out.

The drivers take pymatgen ``Structure`` objects directly and hand back plain results:
``result.structure`` is a pymatgen ``Structure`` again, and ``result.to_dict()`` is JSON, so the
same calls drop into jobflow/atomate2 jobs or a database.
"""

from __future__ import annotations

import os

# A 2-core machine shared with other jobs: one thread per library avoids oversubscription
# (20x faster here); drop these two lines on a dedicated many-core machine or a GPU.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
from pathlib import Path

from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from gaunt_md.drivers import run_eos, run_relax


def main() -> None:
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.50), ["Si"], [[0.0, 0.0, 0.0]])
    si = SpacegroupAnalyzer(si).get_primitive_standard_structure()

    relaxed = run_relax(si, cell="full", fix_symmetry=True, fmax=1e-4)
    structure = relaxed.structure  # pymatgen again
    print(f"relaxed: {structure.composition.reduced_formula}, a = {structure.lattice.abc[0] * 2 ** 0.5:.4f} Å "
          f"(cubic), space group {SpacegroupAnalyzer(structure).get_space_group_symbol()}")

    eos = run_eos(structure, min_volume=0.94, max_volume=1.06, n_volumes=9, file_prefix="gaunt_results/examples/si")
    print(f"EOS: V0 = {eos.v0:.3f} Å³/cell, B0 = {eos.b0_GPa:.1f} GPa (DFT-PBE ~89 GPa)")

    document = {"relax": relaxed.to_dict(structure=True), "eos": eos.to_dict()}
    out = Path("gaunt_results/examples/si-workflow.json")
    out.write_text(json.dumps(document, indent=1))
    back = Structure.from_dict(json.loads(out.read_text())["relax"]["structure"])
    print(f"JSON document: {out} ({out.stat().st_size // 1024} kB); structure round trip ok: {back == structure}")


if __name__ == "__main__":
    main()
