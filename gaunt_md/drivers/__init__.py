"""Drivers: relax, MD, phonons, EOS and dataset evaluation with any ASE calculator.

Each ``run_*`` function takes an ``ase.Atoms``, a pymatgen ``Structure``/``Molecule`` or a file
path, an optional calculator (default: ``GauntCalculator``, built only when none is given) and
keyword-only options with units in their names; it returns a plain result object (a read-only
mapping; ``to_dict()`` is JSON-serialisable) and, given ``file_prefix``, writes its files and a
``*-summary.yml`` with provenance.

>>> from ase.build import bulk                                   # doctest: +SKIP
>>> from gaunt_md.drivers import run_relax                       # doctest: +SKIP
>>> res = run_relax(bulk("Si"), cell="full", fmax=1e-3)         # doctest: +SKIP
>>> res.converged, res["energy"], res.structure                  # doctest: +SKIP
"""

from gaunt_md.drivers.eos import EOSResult, run_eos
from gaunt_md.drivers.evaluate import EvalResult, run_eval
from gaunt_md.drivers.md import MDResult, run_md
from gaunt_md.drivers.phonons import PhononResult, run_phonons
from gaunt_md.drivers.relax import RelaxResult, run_relax

__all__ = [
    "EOSResult", "EvalResult", "MDResult", "PhononResult", "RelaxResult",
    "run_eos", "run_eval", "run_md", "run_phonons", "run_relax",
]
