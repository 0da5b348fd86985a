"""Molecular dynamics with ASE's integrators: NVE, NVT (Langevin, Bussi, Nosé-Hoover chain), NPT.

=================== ================================================ ==========================
``ensemble``        integrator                                       time constants
=================== ================================================ ==========================
``nve``             :class:`ase.md.verlet.VelocityVerlet`            --
``nvt``             :class:`ase.md.langevin.Langevin`                ``friction_per_fs``
``nvt-csvr``        :class:`ase.md.bussi.Bussi` (CSVR)               ``taut_fs``
``nvt-nh``          :class:`ase.md.nose_hoover_chain.NoseHooverChainNVT` ``taut_fs``
``npt``             ``IsotropicMTKNPT`` (MTK, isotropic cell); ASE   ``taut_fs``, ``taup_fs``
                    without MTK falls back to ``NPTBerendsen``
``npt-mtk``         ``MTKNPT`` (MTK, fully flexible cell)            ``taut_fs``, ``taup_fs``
``npt-berendsen``   :class:`ase.md.nptberendsen.NPTBerendsen`        ``taut_fs``, ``taup_fs``,
                    (equilibration only; not a true NPT ensemble)    ``bulk_modulus_GPa``
=================== ================================================ ==========================

Langevin, Bussi and the Nosé-Hoover chain sample the canonical ensemble (ASE docs). Velocities
start from a Maxwell-Boltzmann distribution drawn with ``numpy.random.default_rng(seed)``; the same
generator then drives the stochastic thermostats, and its state is saved in every restart file,
so a restarted run reproduces the uninterrupted one frame by frame. File layout: see
:mod:`gaunt_md.drivers.md_files`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from gaunt_md.drivers import md_files as mf
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
from gaunt_md.units import GPa, fs

log = logging.getLogger(__name__)

ENSEMBLES = ("nve", "nvt", "nvt-csvr", "nvt-nh", "npt", "npt-mtk", "npt-berendsen")
_ALIASES = {"nvt-langevin": "nvt", "langevin": "nvt", "nvt-bussi": "nvt-csvr", "bussi": "nvt-csvr",
            "nvt-nhc": "nvt-nh", "nose-hoover": "nvt-nh", "npt-mtk-iso": "npt"}


@dataclass(eq=False)
class MDResult(DriverResult):
    """Outcome of :func:`run_md`: final frame and run averages (eV, K, Å³, GPa)."""

    atoms: Atoms
    ensemble: str
    steps: int
    timestep_fs: float
    seed: int
    start_step: int
    mean_temperature_K: float
    mean_epot_per_atom: float
    final_temperature_K: float
    final_etot_per_atom: float
    mean_volume: float | None = None
    mean_pressure_GPa: float | None = None
    steps_per_second: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0


def _build_dynamics(atoms, ensemble, *, timestep_fs, temperature_K, friction_per_fs, taut_fs,
                    taup_fs, pressure_GPa, bulk_modulus_GPa, rng):
    dt = timestep_fs * fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "nvt":
        from ase.md.langevin import Langevin

        from ase.constraints import FixCom

        if atoms.pbc.all() and not any(isinstance(c, FixCom) for c in atoms.constraints):
            atoms.set_constraint([*atoms.constraints, FixCom()])  # ASE >= 3.28's replacement of fixcm
        return Langevin(atoms, timestep=dt, temperature_K=temperature_K, friction=friction_per_fs / fs,
                        fixcm=False, rng=rng)
    if ensemble == "nvt-csvr":
        from ase.md.bussi import Bussi

        return Bussi(atoms, timestep=dt, temperature_K=temperature_K, taut=taut_fs * fs, rng=rng)
    if ensemble == "nvt-nh":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=temperature_K, tdamp=taut_fs * fs)
    if not atoms.pbc.all():
        raise GauntError(f"ensemble {ensemble!r} needs a structure periodic in all three directions")
    mtk = None
    try:
        from ase.md import nose_hoover_chain as mtk
    except ImportError:  # ASE < 3.24
        pass
    if ensemble == "npt-mtk" or (ensemble == "npt" and mtk is not None and hasattr(mtk, "IsotropicMTKNPT")):
        if mtk is None or not hasattr(mtk, "MTKNPT"):
            raise GauntError("ensemble 'npt-mtk' needs ASE >= 3.25 (MTKNPT); use 'npt-berendsen'")
        cls = mtk.MTKNPT if ensemble == "npt-mtk" else mtk.IsotropicMTKNPT
        return cls(atoms, timestep=dt, temperature_K=temperature_K, pressure_au=pressure_GPa * GPa,
                   tdamp=taut_fs * fs, pdamp=taup_fs * fs)
    from ase.md.nptberendsen import NPTBerendsen

    if ensemble == "npt":
        log.warning("this ASE has no MTK integrators; 'npt' falls back to NPTBerendsen")
    return NPTBerendsen(atoms, timestep=dt, temperature_K=temperature_K, pressure_au=pressure_GPa * GPa,
                        taut=taut_fs * fs, taup=taup_fs * fs, compressibility_au=1.0 / (bulk_modulus_GPa * GPa))


def _set_target_temperature(dyn: Any, temperature_K: float) -> None:
    """Change the thermostat target of any supported integrator (for temperature ramps)."""
    kT = units.kB * temperature_K
    if hasattr(dyn, "set_temperature"):  # Langevin, Berendsen
        dyn.set_temperature(temperature_K=temperature_K)
    if hasattr(dyn, "target_kinetic_energy"):  # Bussi
        dyn.temp = kT
        dyn.target_kinetic_energy = 0.5 * kT * dyn.ndof
    for owner in (dyn, getattr(dyn, "_thermostat", None), getattr(dyn, "_barostat", None)):
        if owner is not None and hasattr(owner, "_kT"):
            owner._kT = kT
    if hasattr(dyn, "_temperature_K"):
        dyn._temperature_K = temperature_K


def _init_velocities(atoms: Atoms, temperature_K: float, rng: np.random.Generator) -> None:
    from ase.md import velocitydistribution as vd

    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, temperature_K, exact_temperature=True, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng, force_temp=True)
    vd.Stationary(atoms)
    if not atoms.pbc.any():
        vd.ZeroRotation(atoms)


def run_md(
    structure: Any,
    calculator: BaseCalculator | None = None,
    *,
    ensemble: str = "nvt",
    steps: int = 1000,
    timestep_fs: float = 1.0,
    temperature_K: float = 300.0,
    temperature_end_K: float | None = None,
    friction_per_fs: float = 0.005,
    taut_fs: float = 100.0,
    taup_fs: float = 1000.0,
    pressure_GPa: float = 0.0,
    bulk_modulus_GPa: float = 100.0,
    seed: int | None = None,
    keep_velocities: bool = False,
    file_prefix: str | os.PathLike | None = None,
    traj_every: int = 100,
    traj_format: str = "extxyz",
    stats_every: int = 10,
    restart_every: int = 1000,
    restart: bool = False,
    keep_restarts: int = 2,
    progress: bool = False,
    dtype: str = "float32",
) -> MDResult:
    """Run ``steps`` MD steps of ``structure`` and return the last frame and run averages.

    Parameters
    ----------
    ensemble
        One of ``ENSEMBLES`` (module docstring); ``nvt-langevin``/``nvt-bussi`` are accepted too.
    steps
        Total number of steps of the run; a restarted run continues up to the same total.
    timestep_fs, temperature_K, pressure_GPa
        Time step (fs), thermostat target (K; also the Maxwell-Boltzmann start), barostat target.
    temperature_end_K
        When given, the target is ramped linearly from ``temperature_K`` (step 0) to this (last step).
    friction_per_fs
        Langevin friction, 1/fs. ``taut_fs``/``taup_fs``: thermostat/barostat time constants, fs.
    bulk_modulus_GPa
        Compressibility estimate for Berendsen NPT only.
    seed
        Seed of the ``numpy`` generator for velocities and stochastic thermostats; ``None`` draws
        one from the OS (or, on restart, takes the recorded one), which is logged, returned and
        written to the summary.
    keep_velocities
        Use the momenta stored in the structure instead of drawing new ones.
    file_prefix
        Where files go (see :mod:`gaunt_md.drivers.md_files`); ``None`` writes nothing and
        ``restart`` is then impossible.
    traj_every, stats_every, restart_every
        Intervals in steps (0 switches the file off).
    traj_format
        ``extxyz`` or ``traj``.
    restart
        Continue from the newest ``{prefix}-res-<step>.traj`` if there is one.
    dtype
        Precision of the default calculator only (MD is fine in float32; NVE energy
        conservation tests use float64).
    """
    start_time, t0 = now(), time.perf_counter()
    ensemble = _ALIASES.get(str(ensemble).lower(), str(ensemble).lower())
    check_choice("ensemble", ensemble, ENSEMBLES)
    traj_format = check_choice("traj_format", traj_format, ("extxyz", "traj"))
    check_positive("timestep_fs", timestep_fs)
    check_positive("temperature_K", temperature_K, allow_zero=ensemble == "nve")
    for name, value in (("friction_per_fs", friction_per_fs), ("taut_fs", taut_fs), ("taup_fs", taup_fs),
                        ("bulk_modulus_GPa", bulk_modulus_GPa)):
        check_positive(name, value)
    if temperature_end_K is not None:
        check_positive("temperature_end_K", temperature_end_K, allow_zero=True)
    for name, value in (("steps", steps), ("traj_every", traj_every), ("stats_every", stats_every),
                        ("restart_every", restart_every)):
        if int(value) != value or value < 0:
            raise GauntError(f"{name} must be a whole number >= 0, got {value!r}")
    if restart and file_prefix is None:
        raise GauntError("restart=True needs a file_prefix to find the restart files")
    atoms = prepare_atoms(structure, calculator, dtype=dtype)
    prefix = os.fspath(file_prefix) if file_prefix is not None else None

    start_step, state = 0, None
    if restart:
        found = mf.list_restarts(prefix)
        if found:
            res_step, res_path = found[-1]
            res_atoms, state = mf.read_restart(res_path)
            if len(res_atoms) != len(atoms) or (res_atoms.numbers != atoms.numbers).any():
                raise GauntError(f"restart file {os.fspath(res_path)!r} holds a different structure")
            if seed is None:  # a restart continues the recorded random stream
                seed = state.get("seed")
            if state.get("ensemble") != ensemble or state.get("seed") != seed:
                raise GauntError(
                    f"restart file {os.fspath(res_path)!r} was written with ensemble "
                    f"{state.get('ensemble')!r} and seed {state.get('seed')!r}; got {ensemble!r}, {seed!r}")
            atoms.set_cell(res_atoms.cell, scale_atoms=False)
            atoms.set_positions(res_atoms.positions)
            atoms.set_momenta(res_atoms.get_momenta())
            start_step = res_step
            log.info("restarting from %s (step %d)", res_path, res_step)
        else:
            log.info("restart requested but no restart file for %s; starting fresh", prefix)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
        log.info("no seed given; using seed %d", seed)
    rng = np.random.default_rng(seed)
    if state is not None:
        rng.bit_generator.state = state["rng"]
    if state is None and not keep_velocities:
        _init_velocities(atoms, temperature_K, rng)

    def target_T(step: int) -> float:
        if temperature_end_K is None or steps == 0:
            return float(temperature_K)
        return float(temperature_K + (temperature_end_K - temperature_K) * step / steps)

    if ensemble != "nve" and atoms.get_kinetic_energy() < 1e-12:
        raise GauntError(f"ensemble {ensemble!r} needs non-zero initial velocities (temperature_K > 0)")
    dyn = _build_dynamics(atoms, ensemble, timestep_fs=timestep_fs, temperature_K=target_T(start_step),
                          friction_per_fs=friction_per_fs, taut_fs=taut_fs, taup_fs=taup_fs,
                          pressure_GPa=pressure_GPa, bulk_modulus_GPa=bulk_modulus_GPa, rng=rng)
    if state is not None:
        mf.restore_dynamics_state(dyn, state["dynamics"])
    dyn.nsteps = start_step

    files: dict[str, str] = {}
    resumed = state is not None
    traj = stats = None
    if prefix is not None:
        if traj_every:
            path = output_path(prefix, f"-traj.{traj_format}")
            if resumed:
                mf.truncate_trajectory(path, start_step)
            traj, files["trajectory"] = mf.TrajectoryFile(path, append=resumed), str(path)
        if stats_every:
            path = output_path(prefix, "-stats.dat")
            if resumed:
                mf.truncate_stats(path, start_step)
            stats, files["stats"] = mf.StatsFile(path, append=resumed), str(path)
        if not resumed:  # a fresh run must not pick up restart files of an older run
            for _, old in mf.list_restarts(prefix):
                old.unlink()

    clock = mf.Timer(offset=float(state.get("real_time_s", 0.0)) if state else 0.0)
    temps, epots, vols, press = [], [], [], []
    avg_every = stats_every or 10  # run averages are taken on the stats steps

    def record(step: int) -> None:
        time_fs = step * timestep_fs
        if traj is not None and step % traj_every == 0:
            traj.write(mf.snapshot(atoms, step, time_fs))
        if step % avg_every == 0:
            row = mf.stats_row(atoms, step=step, time_fs=time_fs, real_time_s=clock(), target_T=target_T(step))
            temps.append(row[5]); epots.append(row[3]); vols.append(row[8]); press.append(row[9])  # noqa: E702
            if stats is not None:
                stats.write(row)
        if prefix is not None and restart_every and step % restart_every == 0 and step > 0:
            st = {"ensemble": ensemble, "seed": seed, "rng": rng.bit_generator.state,
                  "dynamics": mf.dynamics_state(dyn), "real_time_s": clock()}
            files["restart"] = str(mf.write_restart(prefix, mf.snapshot(atoms, step, time_fs), st, keep=keep_restarts))

    atoms.get_forces()
    if not resumed:
        record(0)
    bar = _progress(steps - start_step, enabled=progress, desc=f"md {ensemble}")
    t_loop = time.perf_counter()
    try:
        for step in range(start_step + 1, steps + 1):
            if temperature_end_K is not None:
                _set_target_temperature(dyn, target_T(step))
            dyn.step()
            dyn.nsteps = step
            record(step)
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix_str(f"T={atoms.get_temperature():.0f} K")
    finally:
        bar.close()
        if traj is not None:
            traj.close()
    loop_s = time.perf_counter() - t_loop

    final = mf.snapshot(atoms, steps, steps * timestep_fs)
    final_path = output_path(prefix, "-final.extxyz")
    if final_path is not None:
        import ase.io

        ase.io.write(final_path, final, format="extxyz")
        files["final"] = str(final_path)
    n = len(atoms)
    result = MDResult(
        atoms=final, ensemble=ensemble, steps=steps, timestep_fs=timestep_fs, seed=seed, start_step=start_step,
        mean_temperature_K=float(np.mean(temps)) if temps else float("nan"),
        mean_epot_per_atom=float(np.mean(epots)) if epots else float("nan"),
        final_temperature_K=float(atoms.get_temperature()),
        final_etot_per_atom=float((atoms.get_potential_energy() + atoms.get_kinetic_energy()) / n),
        mean_volume=float(np.mean(vols)) if vols and atoms.pbc.all() else None,
        mean_pressure_GPa=float(np.nanmean(press)) if press and np.isfinite(press).any() else None,
        steps_per_second=(steps - start_step) / loop_s if loop_s > 0 else 0.0,
        files=files, wall_time_s=time.perf_counter() - t0,
    )
    summary = output_path(prefix, "-md-summary.yml")
    if summary is not None:
        files["summary"] = str(summary)
        inputs = dict(
            structure=structure if isinstance(structure, (str, os.PathLike)) else final.get_chemical_formula(),
            ensemble=ensemble, steps=steps, timestep_fs=timestep_fs, temperature_K=temperature_K,
            temperature_end_K=temperature_end_K, friction_per_fs=friction_per_fs, taut_fs=taut_fs,
            taup_fs=taup_fs, pressure_GPa=pressure_GPa, traj_every=traj_every, stats_every=stats_every,
            restart_every=restart_every, restart=restart, dtype=dtype, n_atoms=n,
        )
        headline = {k: result[k] for k in ("start_step", "mean_temperature_K", "mean_epot_per_atom",
                                            "final_temperature_K", "mean_pressure_GPa", "steps_per_second")}
        write_summary(summary, task="md", inputs=inputs, calculator=atoms.calc, start=start_time,
                      wall_time_s=result.wall_time_s, outputs=files, results=headline, seed=seed)
    return result
