"""Harmonic phonons with phonopy's finite displacements, forces from any ASE calculator.

Steps: (optional) tight float64 relaxation keeping the symmetry -> supercell (explicit matrix, or
the smallest diagonal one whose cell heights all reach ``min_length_A``) -> displacements of
``displacement_A`` (0.01 Å, the atomate2/janus default) -> forces of every displaced supercell in
one :meth:`calculate_batch` call when the calculator has it (residual forces of the undisplaced
supercell subtracted) -> force constants -> band structure along seekpath's path, DOS on a mesh,
thermal properties -> imaginary-mode report.

Units: frequencies THz; thermal properties as phonopy gives them per mole of unit cells:
free energy kJ/mol, entropy and heat capacity J/K/mol.

Files (in ``{file_prefix}-phonons/``, phonopy's standard names so that phonopy, Euphonic and sumo
read them): ``phonopy.yaml`` (structure, supercell, force constants), ``band.yaml``,
``total_dos.dat``, ``thermal_properties.yaml``, ``force_constants.hdf5``, ``phonons.png``
(bands + DOS); and ``{file_prefix}-phonons-summary.yml``.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from gaunt_md.drivers.common import (
    DriverResult,
    check_positive,
    now,
    output_path,
    prepare_atoms,
    progress as _progress,
    write_summary,
)
from gaunt_md.errors import GauntError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PhononResult(DriverResult):
    """Outcome of :func:`run_phonons`. Frequencies THz; F kJ/mol; S, Cv J/K/mol."""

    atoms: Atoms
    supercell_matrix: list[list[int]]
    displacement_A: float
    n_displacements: int
    gamma_frequencies_THz: list[float]
    min_frequency_THz: float
    has_imaginary_modes: bool
    imaginary_modes: list[dict[str, Any]]
    band_labels: list[str]
    thermal: dict[str, list[float]]
    files: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0
    phonopy: Any = field(default=None, repr=False, metadata={"json": False})


def supercell_for_length(cell: np.ndarray, min_length_A: float) -> list[list[int]]:
    """Smallest diagonal supercell whose three cell heights (plane spacings) are >= ``min_length_A``."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    heights = [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    reps = [max(1, int(np.ceil(min_length_A / h - 1e-8))) for h in heights]
    return np.diag(reps).tolist()


def _supercell_matrix(supercell: Any) -> list[list[int]]:
    m = np.asarray(supercell)
    if m.size == 1:
        m = np.eye(3, dtype=int) * int(m.reshape(-1)[0])
    elif m.size == 3:
        m = np.diag(m.reshape(-1))
    elif m.size != 9:
        raise GauntError(f"supercell must be an integer, 3 integers or a 3x3 matrix, got {supercell!r}")
    m = m.reshape(3, 3)
    if not np.allclose(m, np.round(m)) or abs(np.linalg.det(m)) < 0.5:
        raise GauntError(f"supercell must be a non-singular integer matrix, got {m.tolist()}")
    return np.round(m).astype(int).tolist()


def _to_phonopy_atoms(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions(wrap=False), masses=atoms.get_masses())


def _to_ase(cell) -> Atoms:
    return Atoms(symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)


def evaluate_forces(calculator: BaseCalculator, structures: list[Atoms], *, progress: bool = False) -> list[np.ndarray]:
    """Forces (eV/Å) of each structure: one ``calculate_batch`` call if available, else a loop."""
    batch = getattr(calculator, "calculate_batch", None)
    if callable(batch):
        results = batch(structures, properties=("energy", "forces"), progress=progress)
        return [np.asarray(r["forces"], dtype=float) for r in results]
    out = []
    with _progress(len(structures), enabled=progress, desc="displacements", unit="cell") as bar:
        for atoms in structures:
            atoms = atoms.copy()
            atoms.calc = calculator
            out.append(np.asarray(atoms.get_forces(), dtype=float))
            bar.update(1)
    return out


def _result(phonon, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """``{key: value}`` from phonopy's result object (phonopy >= 3) or its older ``get_*_dict()``."""
    obj = getattr(phonon, name)
    if all(hasattr(obj, k) for k in keys):
        return {k: getattr(obj, k) for k in keys}
    return getattr(phonon, f"get_{name}_dict")()


def frequencies_at(phonon, qpoints) -> np.ndarray:
    """Frequencies (THz) ``[n_q, n_bands]`` at reduced ``qpoints`` of the primitive cell."""
    return np.asarray(phonon.run_qpoints(np.atleast_2d(qpoints)).frequencies)


def run_phonons(
    structure: Any,
    calculator: BaseCalculator | None = None,
    *,
    supercell: Any = None,
    min_length_A: float | None = None,
    displacement_A: float = 0.01,
    relax: bool = False,
    relax_fmax: float = 1e-4,
    relax_steps: int = 2000,
    symprec: float = 1e-5,
    symmetrize_fc: bool = False,
    subtract_residual_forces: bool = True,
    band_npoints: int = 51,
    mesh: Any = 30.0,
    t_min_K: float = 0.0,
    t_max_K: float = 1000.0,
    t_step_K: float = 50.0,
    imaginary_tol_THz: float = 0.05,
    file_prefix: str | os.PathLike | None = None,
    plot: bool = True,
    progress: bool = False,
    dtype: str = "float64",
) -> PhononResult:
    """Phonon bands, DOS and thermal properties of ``structure``.

    Parameters
    ----------
    supercell
        Integer, 3 integers (diagonal) or a 3x3 matrix applied to the input cell. Default:
        ``min_length_A`` if given, else 2x2x2 (janus-core, matcalc).
    min_length_A
        Build the smallest diagonal supercell with all cell heights >= this (Å; ~20 Å is the
        atomate2 choice).
    displacement_A
        Finite displacement, Å.
    relax
        Relax positions and cell first (FIRE, ``relax_fmax`` eV/Å, symmetry kept).
    mesh
        q-mesh for DOS/thermal properties: 3 integers, or a length (Å) as in phonopy.
    t_min_K, t_max_K, t_step_K
        Temperatures of the thermal properties.
    imaginary_tol_THz
        Frequencies below ``-imaginary_tol_THz`` count as imaginary.
    """
    import phonopy

    start, t0 = now(), time.perf_counter()
    check_positive("displacement_A", displacement_A)
    check_positive("band_npoints", band_npoints)
    if t_max_K < t_min_K or t_step_K <= 0:
        raise GauntError(f"need t_min_K <= t_max_K and t_step_K > 0, got {t_min_K}, {t_max_K}, {t_step_K}")
    atoms = prepare_atoms(structure, calculator, dtype=dtype)
    calc = atoms.calc
    if not atoms.pbc.all():
        raise GauntError("phonons need a structure periodic in all three directions")
    files: dict[str, str] = {}
    if relax:
        from gaunt_md.drivers.relax import run_relax

        if "32" in str(getattr(calc, "dtype", "")):
            log.warning("tight pre-relaxation with a float32 calculator; float64 is recommended for phonons")

        rel = run_relax(atoms, calc, fmax=relax_fmax, steps=relax_steps, cell="full", fix_symmetry=True,
                        symprec=symprec, progress=progress)
        if not rel.converged:
            log.warning("pre-relaxation not converged (fmax %.2e eV/A); phonons may be inaccurate", rel.max_force)
        atoms = rel.atoms.copy()
    if supercell is not None:
        matrix = _supercell_matrix(supercell)
    elif min_length_A is not None:
        check_positive("min_length_A", min_length_A)
        matrix = supercell_for_length(atoms.cell.array, min_length_A)
    else:
        matrix = _supercell_matrix(2)

    with warnings.catch_warnings():  # phonopy warns that 'auto' differs from its v3 default: intended
        warnings.simplefilter("ignore")
        phonon = phonopy.Phonopy(_to_phonopy_atoms(atoms), supercell_matrix=matrix, primitive_matrix="auto",
                                 symprec=symprec, log_level=0)
    phonon.generate_displacements(distance=displacement_A)
    displaced = [_to_ase(sc) for sc in phonon.supercells_with_displacements]
    perfect = _to_ase(phonon.supercell)
    log.info("phonons: %d displaced supercells of %d atoms", len(displaced), len(perfect))
    forces = evaluate_forces(calc, displaced + ([perfect] if subtract_residual_forces else []), progress=progress)
    if subtract_residual_forces:
        residual = forces.pop()
        log.info("max residual force of the undisplaced supercell: %.2e eV/A", np.abs(residual).max())
        forces = [f - residual for f in forces]
    phonon.forces = np.array(forces)
    phonon.produce_force_constants(show_drift=False)
    if symmetrize_fc:
        phonon.symmetrize_force_constants(show_drift=False)

    gamma = frequencies_at(phonon, [[0.0, 0.0, 0.0]])[0]
    out_dir = output_path(file_prefix, "-phonons")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    band_file = out_dir / "band.yaml" if out_dir is not None else None
    phonon.auto_band_structure(npoints=band_npoints, write_yaml=band_file is not None,
                               filename=band_file or "band.yaml")
    bands = _result(phonon, "band_structure", ("qpoints", "frequencies"))
    phonon.run_mesh(mesh, is_gamma_center=True)
    phonon.run_total_dos()
    # the three Gamma acoustic modes are rigid translations: leave them out of F, S, Cv
    phonon.run_thermal_properties(t_min=t_min_K, t_max=t_max_K, t_step=t_step_K, exclude_gamma_acoustic=True)
    tp = _result(phonon, "thermal_properties", ("temperatures", "free_energy", "entropy", "heat_capacity"))
    thermal = {name: np.asarray(tp[key], dtype=float).tolist() for name, key in (
        ("temperature_K", "temperatures"), ("free_energy_kJ_per_mol", "free_energy"),
        ("entropy_J_per_K_mol", "entropy"), ("heat_capacity_J_per_K_mol", "heat_capacity"))}

    imaginary = []
    for qpts, freqs in zip(bands["qpoints"], bands["frequencies"]):
        for q, f in zip(qpts, freqs):
            if f.min() < -imaginary_tol_THz:
                imaginary.append({"q": np.round(q, 6).tolist(), "frequency_THz": float(f.min())})
    mesh_freqs = np.asarray(_result(phonon, "mesh", ("frequencies",))["frequencies"])
    min_freq = float(min(min(f.min() for f in bands["frequencies"]), mesh_freqs.min()))
    if imaginary:
        log.warning("%d band q-points have imaginary modes (lowest %.3f THz)", len(imaginary), min_freq)

    if out_dir is not None:
        from phonopy.file_IO import write_force_constants_to_hdf5

        phonon.save(out_dir / "phonopy.yaml", settings={"force_constants": True})
        phonon.write_total_dos(filename=out_dir / "total_dos.dat")
        phonon.write_yaml_thermal_properties(filename=out_dir / "thermal_properties.yaml")
        write_force_constants_to_hdf5(phonon.force_constants, filename=out_dir / "force_constants.hdf5",
                                      p2s_map=phonon.primitive.p2s_map)
        files.update({name: str(out_dir / fname) for name, fname in (
            ("phonopy_yaml", "phonopy.yaml"), ("band_yaml", "band.yaml"), ("total_dos", "total_dos.dat"),
            ("thermal", "thermal_properties.yaml"), ("force_constants", "force_constants.hdf5"))})
        if plot:
            files["plot"] = str(_plot(phonon, out_dir / "phonons.png"))
    labels = [re.sub(r"\$|\\mathrm\{|\}|\\", "", str(lab)) for lab in (phonon.band_structure.labels or [])]
    result = PhononResult(
        atoms=atoms, supercell_matrix=matrix, displacement_A=displacement_A, n_displacements=len(displaced),
        gamma_frequencies_THz=np.sort(gamma).tolist(), min_frequency_THz=min_freq,
        has_imaginary_modes=bool(imaginary), imaginary_modes=imaginary,
        band_labels=labels, thermal=thermal, files=files,
        wall_time_s=time.perf_counter() - t0, phonopy=phonon,
    )
    summary = output_path(file_prefix, "-phonons-summary.yml")
    if summary is not None:
        files["summary"] = str(summary)
        inputs = dict(structure=structure if isinstance(structure, (str, os.PathLike)) else atoms.get_chemical_formula(),
                      supercell=matrix, displacement_A=displacement_A, relax=relax, relax_fmax=relax_fmax,
                      symmetrize_fc=symmetrize_fc, mesh=mesh, band_npoints=band_npoints, dtype=dtype,
                      temperatures_K=[t_min_K, t_max_K, t_step_K])
        headline = {k: result[k] for k in ("n_displacements", "gamma_frequencies_THz", "min_frequency_THz",
                                            "has_imaginary_modes")}
        write_summary(summary, task="phonons", inputs=inputs, calculator=calc, start=start,
                      wall_time_s=result.wall_time_s, outputs=files, results=headline)
    return result


def _plot(phonon, path: Path) -> Path:
    """Bands + DOS as a PNG (phonopy's own plot); only this figure is closed afterwards."""
    plt = phonon.plot_band_structure_and_dos()
    fig = plt.gcf()
    if fig.axes:
        fig.axes[0].set_ylabel("Frequency (THz)")
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path
