"""Geometry optimisation: positions only, cell lengths, or the full cell under a target pressure.

The cell degrees of freedom use ASE's :class:`~ase.filters.FrechetCellFilter` (the default of
janus-core, matcalc, CHGNet and pymatgen since ASE 3.23):

=========== ================================================================================
``cell``    what moves
=========== ================================================================================
``fixed``   atomic positions only
``lengths`` positions and a uniform scaling of the cell (``hydrostatic_strain=True``, what
            janus-core's ``--opt-cell-lengths`` does): angles and length ratios are kept
``full``    positions and all six cell components
=========== ================================================================================

Convergence is ASE's: the largest force (and, with a cell filter, the largest generalised cell
force, stress times volume) below ``fmax`` in eV/Å. The target pressure is given in GPa and
passed to the filter as ``scalar_pressure`` in eV/Å³.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.calculators.singlepoint import SinglePointCalculator

from gaunt_md.drivers.common import (
    DriverResult,
    check_choice,
    check_positive,
    now,
    output_path,
    prepare_atoms,
    progress as _progress,
    write_summary,
)
from gaunt_md.errors import GauntError
from gaunt_md.units import GPa

log = logging.getLogger(__name__)

OPTIMIZERS = ("fire", "lbfgs", "bfgs", "bfgslinesearch", "mdmin")
CELL_MODES = ("fixed", "lengths", "full")


@dataclass(eq=False)
class RelaxResult(DriverResult):
    """Outcome of :func:`run_relax`. Energies eV, forces eV/Å, stress/pressure GPa, volume Å³."""

    atoms: Atoms
    converged: bool
    steps: int
    energy: float
    energy_per_atom: float
    initial_energy: float
    max_force: float
    volume: float
    stress_GPa: list[float] | None = None
    pressure_GPa: float | None = None
    files: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0


def _optimizer_class(name: str):
    from ase import optimize

    key = check_choice("optimizer", name, OPTIMIZERS)
    return {
        "fire": optimize.FIRE,
        "lbfgs": optimize.LBFGS,
        "bfgs": optimize.BFGS,
        "bfgslinesearch": optimize.BFGSLineSearch,
        "mdmin": optimize.MDMin,
    }[key]


def _snapshot(atoms: Atoms) -> Atoms:
    """Copy of ``atoms`` without constraints, carrying the calculator's current results."""
    out = atoms.copy()
    out.set_constraint()
    keep = {k: v for k, v in atoms.calc.results.items() if k in ("energy", "free_energy", "forces", "stress")}
    out.calc = SinglePointCalculator(out, **keep)
    return out


def _pressure_gpa(atoms: Atoms) -> tuple[list[float] | None, float | None]:
    stress = atoms.calc.results.get("stress") if atoms.calc is not None else None
    if stress is None or not atoms.pbc.all():
        return None, None
    s = np.asarray(stress).reshape(-1)
    if s.size == 9:
        s = s.reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return (s / GPa).tolist(), float(-s[:3].mean() / GPa)


class _RelaxLog:
    """Per-step table: step, energy, max atomic force, pressure, volume (units in the header)."""

    header = "# Step | Epot [eV] | Fmax [eV/A] | P [GPa] | Volume [A^3]\n"

    def __init__(self, path):
        self.path = path
        if path is not None:
            with open(path, "w") as fh:
                fh.write(self.header)

    def write(self, step: int, atoms: Atoms) -> tuple[float, float]:
        energy = float(atoms.get_potential_energy())
        fmax = float(np.sqrt((atoms.get_forces() ** 2).sum(axis=1)).max())
        if self.path is not None:
            _, pressure = _pressure_gpa(atoms)
            volume = atoms.get_volume() if atoms.pbc.all() else float("nan")
            with open(self.path, "a") as fh:
                fh.write(f"{step:6d} {energy:18.8f} {fmax:14.6e} {pressure if pressure is not None else float('nan'):14.6f} {volume:14.6f}\n")
        return energy, fmax


def run_relax(
    structure: Any,
    calculator: BaseCalculator | None = None,
    *,
    optimizer: str = "FIRE",
    fmax: float = 0.05,
    steps: int = 1000,
    cell: str = "fixed",
    pressure_GPa: float = 0.0,
    fix_symmetry: bool = False,
    symprec: float = 1e-5,
    optimizer_kwargs: dict[str, Any] | None = None,
    file_prefix: str | os.PathLike | None = None,
    write_traj: bool = True,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    dtype: str = "float64",
) -> RelaxResult:
    """Relax ``structure`` with ``calculator`` (default: ``GauntCalculator`` in ``dtype``).

    Parameters
    ----------
    structure
        ``ase.Atoms``, pymatgen ``Structure``/``Molecule`` or a path ASE or pymatgen can read.
        It is copied, never modified.
    optimizer
        ``FIRE``, ``LBFGS``, ``BFGS``, ``BFGSLineSearch`` or ``MDMin`` (case-insensitive).
    fmax
        Force convergence threshold, eV/Å.
    steps
        Maximum number of optimiser steps.
    cell
        ``"fixed"``, ``"lengths"`` or ``"full"`` (see the module docstring).
    pressure_GPa
        Target (scalar) pressure, GPa; needs ``cell != "fixed"``.
    fix_symmetry
        Keep the space group with :class:`ase.constraints.FixSymmetry` (tolerance ``symprec``, Å).
    file_prefix
        When given, write ``{prefix}-opt.extxyz`` (final structure), ``{prefix}-relax-traj.extxyz``
        (every step, when ``write_traj``), ``{prefix}-relax-log.dat`` and
        ``{prefix}-relax-summary.yml``.
    out
        Extra copy of the final structure in any format ASE writes (``.cif``, ``POSCAR``, ...).
    progress
        Show a tqdm bar (upper bound ``steps``) with the current fmax.

    Returns
    -------
    RelaxResult
        ``converged`` is True when the force criterion was met within ``steps``.
    """
    start, t0 = now(), time.perf_counter()
    check_positive("fmax", fmax)
    if steps < 0:
        raise GauntError(f"steps must be >= 0, got {steps}")
    opt_cls = _optimizer_class(optimizer)
    cell = check_choice("cell", cell, CELL_MODES)
    atoms = prepare_atoms(structure, calculator, dtype=dtype)
    if cell != "fixed" and not atoms.pbc.all():
        raise GauntError(f"cell={cell!r} needs a structure periodic in all three directions")
    if pressure_GPa != 0.0 and cell == "fixed":
        raise GauntError("a target pressure needs cell='lengths' or cell='full'")
    if fix_symmetry:
        from ase.constraints import FixSymmetry

        atoms.set_constraint([*atoms.constraints, FixSymmetry(atoms, symprec=symprec)])

    target = atoms
    if cell != "fixed":
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(
            atoms, hydrostatic_strain=(cell == "lengths"), scalar_pressure=pressure_GPa * GPa
        )
    files: dict[str, str] = {}
    traj_path = output_path(file_prefix, "-relax-traj.extxyz") if write_traj else None
    log_path = output_path(file_prefix, "-relax-log.dat")
    if traj_path is not None and traj_path.exists():
        traj_path.unlink()
    relax_log = _RelaxLog(log_path)

    initial_energy = float(atoms.get_potential_energy())
    opt = opt_cls(target, logfile=None, **(optimizer_kwargs or {}))
    bar = _progress(steps, enabled=progress, desc=f"relax {opt_cls.__name__}")

    def observe() -> None:
        energy, _ = relax_log.write(opt.nsteps, atoms)
        f = float(np.sqrt((target.get_forces() ** 2).sum(axis=1)).max())  # what the optimiser sees
        if traj_path is not None:
            import ase.io

            ase.io.write(traj_path, _snapshot(atoms), format="extxyz", append=True)
        if opt.nsteps > bar.n:
            bar.update(opt.nsteps - bar.n)
        bar.set_postfix_str(f"E={energy:.5f} eV fmax={f:.3g}")

    opt.attach(observe, interval=1)
    try:
        converged = bool(opt.run(fmax=fmax, steps=steps))
    finally:
        bar.close()

    if atoms.pbc.all() and "stress" not in atoms.calc.results:
        try:
            atoms.get_stress()
        except Exception:  # noqa: BLE001 - a calculator without stress still relaxes positions
            log.debug("calculator gives no stress; pressure not reported")
    final = _snapshot(atoms)
    energy = float(final.get_potential_energy())
    max_force = float(np.sqrt((final.get_forces() ** 2).sum(axis=1)).max())
    stress, pressure = _pressure_gpa(atoms)
    volume = float(final.get_volume()) if final.pbc.all() else float("nan")
    log.info("relax: converged=%s after %d steps, E=%.6f eV, fmax=%.3g eV/A", converged, opt.nsteps, energy, max_force)
    if not converged:
        log.warning("relaxation did not converge within %d steps (fmax %.3g > %.3g eV/A)", steps, max_force, fmax)

    opt_path = output_path(file_prefix, "-opt.extxyz")
    if opt_path is not None:
        import ase.io

        ase.io.write(opt_path, final, format="extxyz")
        files["structure"] = str(opt_path)
        files["log"] = str(log_path)
        if traj_path is not None:
            files["trajectory"] = str(traj_path)
    if out is not None:
        import ase.io

        ase.io.write(out, final)
        files["out"] = os.fspath(out)

    result = RelaxResult(
        atoms=final,
        converged=converged,
        steps=int(opt.nsteps),
        energy=energy,
        energy_per_atom=energy / len(final),
        initial_energy=initial_energy,
        max_force=max_force,
        volume=volume,
        stress_GPa=stress,
        pressure_GPa=pressure,
        files=files,
        wall_time_s=time.perf_counter() - t0,
    )
    summary = output_path(file_prefix, "-relax-summary.yml")
    if summary is not None:
        files["summary"] = str(summary)
        inputs = dict(
            structure=structure if isinstance(structure, (str, os.PathLike)) else final.get_chemical_formula(),
            optimizer=opt_cls.__name__, fmax=fmax, steps=steps, cell=cell, pressure_GPa=pressure_GPa,
            fix_symmetry=fix_symmetry, symprec=symprec, dtype=dtype,
        )
        headline = {k: result[k] for k in ("converged", "steps", "energy", "max_force", "volume", "pressure_GPa")}
        write_summary(summary, task="relax", inputs=inputs, calculator=atoms.calc, start=start,
                      wall_time_s=result.wall_time_s, outputs=files, results=headline)
    return result
