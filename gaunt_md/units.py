"""Units used throughout gaunt_md (ASE's): eV, Å, fs, K, GPa at the user boundary.

Internally energies are eV, lengths Å, stress eV/Å^3 with ASE's sign (positive under tension).
Conversions happen once, at the boundary (driver arguments, CLI flags, output files).
"""

from __future__ import annotations

from ase import units as _u

#: 1 GPa in eV/Å^3
GPa = _u.GPa
#: 1 fs in ASE time units
fs = _u.fs
#: Boltzmann constant, eV/K
kB = _u.kB


def gpa_to_ev_per_a3(p_gpa: float) -> float:
    return p_gpa * GPa


def ev_per_a3_to_gpa(s: float) -> float:
    return s / GPa
