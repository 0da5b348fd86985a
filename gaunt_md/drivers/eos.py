"""Equation of state: energies over a range of volumes and a fit of E(V).

The cell is scaled isotropically (atoms move with it) to ``n_volumes`` volumes between
``min_volume`` and ``max_volume`` times the input (or relaxed) volume, the janus-core convention.
Energies come from one ``calculate_batch`` call when the calculator has it; with
``relax_positions=True`` the positions are relaxed at each fixed volume instead. The fit is
:class:`ase.eos.EquationOfState` (``birchmurnaghan`` by default; ``vinet``, ``murnaghan``,
``birch``, ``pouriertarantola``, ``sj``, ``taylor``, ``antonschmidt``, ``p3``).

Results: ``v0`` Å³, ``e0`` eV, ``b0_GPa``. Files: ``{prefix}-eos-raw.dat`` (V, E, P table),
``{prefix}-eos-fit.dat``, ``{prefix}-eos.png``, ``{prefix}-eos-summary.yml``.
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

EOS_TYPES = ("birchmurnaghan", "vinet", "murnaghan", "birch", "pouriertarantola", "sj", "taylor",
             "antonschmidt", "p3")


@dataclass(eq=False)
class EOSResult(DriverResult):
    """Outcome of :func:`run_eos`: the structure at ``v0`` and the fit (Å³, eV, GPa)."""

    atoms: Atoms
    eos_type: str
    volumes: list[float]
    energies: list[float]
    pressures_GPa: list[float] | None
    v0: float
    e0: float
    b0_GPa: float
    files: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0


def _energies(calc, structures: list[Atoms], *, relax_positions: bool, fmax: float, progress: bool):
    """Energy (eV) and pressure (GPa, or nan) of each structure."""
    batch = getattr(calc, "calculate_batch", None)
    if callable(batch) and not relax_positions:
        res = batch(structures, properties=("energy", "forces", "stress"), progress=progress)
        energies = [float(r["energy"]) for r in res]
        pressures = [float(-np.mean(np.asarray(r["stress"])[:3]) / GPa) if "stress" in r else np.nan for r in res]
        return energies, pressures
    energies, pressures = [], []
    with _progress(len(structures), enabled=progress, desc="eos volumes", unit="vol") as bar:
        for atoms in structures:
            atoms = atoms.copy()
            atoms.calc = calc
            if relax_positions:
                from gaunt_md.drivers.relax import run_relax

                atoms = run_relax(atoms, calc, fmax=fmax, cell="fixed").atoms
            energies.append(float(atoms.get_potential_energy()))
            try:
                pressures.append(float(-np.mean(atoms.get_stress()[:3]) / GPa))
            except Exception:  # noqa: BLE001 - a calculator without stress still gives E(V)
                pressures.append(np.nan)
            bar.update(1)
    return energies, pressures


def run_eos(
    structure: Any,
    calculator: BaseCalculator | None = None,
    *,
    min_volume: float = 0.95,
    max_volume: float = 1.05,
    n_volumes: int = 7,
    eos_type: str = "birchmurnaghan",
    relax: bool = False,
    relax_positions: bool = False,
    fmax: float = 1e-3,
    file_prefix: str | os.PathLike | None = None,
    plot: bool = True,
    progress: bool = False,
    dtype: str = "float64",
) -> EOSResult:
    """Fit an equation of state to energies of isotropically scaled copies of ``structure``.

    Parameters
    ----------
    min_volume, max_volume
        Smallest/largest volume as a fraction of the reference volume (the input's, or the
        relaxed one with ``relax=True``).
    n_volumes
        Number of volumes (>= 5 for a 4-parameter fit).
    eos_type
        One of ``EOS_TYPES``.
    relax
        Relax positions and cell (FIRE, ``fmax`` eV/Å) before scaling.
    relax_positions
        Relax positions at each fixed volume (needed for structures with internal degrees of
        freedom); switches batching off.
    """
    start, t0 = now(), time.perf_counter()
    eos_type = check_choice("eos_type", eos_type, EOS_TYPES)
    check_positive("min_volume", min_volume)
    check_positive("fmax", fmax)
    if not min_volume < max_volume:
        raise GauntError(f"need min_volume < max_volume, got {min_volume} and {max_volume}")
    if int(n_volumes) != n_volumes or n_volumes < 5:
        raise GauntError(f"n_volumes must be an integer >= 5, got {n_volumes!r}")
    atoms = prepare_atoms(structure, calculator, dtype=dtype)
    calc = atoms.calc
    if not atoms.pbc.all():
        raise GauntError("an equation of state needs a structure periodic in all three directions")
    if relax:
        from gaunt_md.drivers.relax import run_relax

        rel = run_relax(atoms, calc, fmax=fmax, cell="full", progress=progress)
        atoms = rel.atoms.copy()
    v_ref = atoms.get_volume()
    fractions = np.linspace(min_volume, max_volume, int(n_volumes))
    structures = []
    for frac in fractions:
        scaled = atoms.copy()
        scaled.set_cell(atoms.cell.array * frac ** (1 / 3), scale_atoms=True)
        structures.append(scaled)
    volumes = (fractions * v_ref).tolist()
    energies, pressures = _energies(calc, structures, relax_positions=relax_positions, fmax=fmax, progress=progress)

    from ase.eos import EquationOfState

    eos = EquationOfState(volumes, energies, eos=eos_type)
    try:
        v0, e0, b0 = eos.fit(warn=False)
    except Exception as err:  # noqa: BLE001 - ASE raises bare RuntimeError/ValueError on a bad fit
        raise GauntError(f"the {eos_type} fit failed ({err}); widen the volume range or add volumes") from err
    if not volumes[0] <= v0 <= volumes[-1]:
        log.warning("fitted V0 = %.3f A^3 lies outside the sampled range %.3f-%.3f", v0, volumes[0], volumes[-1])
    final = atoms.copy()
    final.set_cell(atoms.cell.array * (v0 / v_ref) ** (1 / 3), scale_atoms=True)
    files: dict[str, str] = {}
    raw = output_path(file_prefix, "-eos-raw.dat")
    if raw is not None:
        np.savetxt(raw, np.column_stack([volumes, energies, pressures]), fmt="%.10f",
                   header="Volume [A^3] | Energy [eV] | Pressure [GPa]")
        fit = output_path(file_prefix, "-eos-fit.dat")
        fit.write_text(f"# eos_type: {eos_type}\n# V0 [A^3] | E0 [eV] | B0 [GPa]\n{v0:.8f} {e0:.8f} {b0 / GPa:.6f}\n")
        files.update(raw=str(raw), fit=str(fit))
        if plot:
            from matplotlib.figure import Figure

            png = output_path(file_prefix, "-eos.png")
            fig = Figure(figsize=(5, 4))
            ax = fig.add_subplot()
            eos.plot(ax=ax, show=False)
            ax.set_xlabel("Volume (Å³)")
            ax.set_ylabel("Energy (eV)")
            fig.savefig(png, dpi=150, bbox_inches="tight")
            files["plot"] = str(png)
    has_p = bool(np.isfinite(pressures).any())
    result = EOSResult(
        atoms=final, eos_type=eos_type, volumes=volumes, energies=energies,
        pressures_GPa=[float(p) for p in pressures] if has_p else None,
        v0=float(v0), e0=float(e0), b0_GPa=float(b0 / GPa), files=files, wall_time_s=time.perf_counter() - t0,
    )
    log.info("eos: V0=%.4f A^3, E0=%.6f eV, B0=%.2f GPa", result.v0, result.e0, result.b0_GPa)
    summary = output_path(file_prefix, "-eos-summary.yml")
    if summary is not None:
        files["summary"] = str(summary)
        inputs = dict(structure=structure if isinstance(structure, (str, os.PathLike)) else atoms.get_chemical_formula(),
                      min_volume=min_volume, max_volume=max_volume, n_volumes=int(n_volumes), eos_type=eos_type,
                      relax=relax, relax_positions=relax_positions, dtype=dtype)
        write_summary(summary, task="eos", inputs=inputs, calculator=calc, start=start, wall_time_s=result.wall_time_s,
                      outputs=files, results={"v0": result.v0, "e0": result.e0, "b0_GPa": result.b0_GPa})
    return result
