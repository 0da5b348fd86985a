"""Files of an MD run: trajectory, stats table, restart points, and restart bookkeeping.

File names (``P`` is the file prefix):

====================== ==========================================================================
``P-traj.extxyz``      frames every ``traj_every`` steps (or ``P-traj.traj``, ASE's binary format);
                       each frame carries ``step`` and ``time_fs`` in ``info``, momenta, energy,
                       forces (and stress when computed)
``P-stats.dat``        one row every ``stats_every`` steps; janus-core's columns, units in the
                       header
``P-res-<step>.traj``  restart points: exact float64 positions, momenta, cell, and in
                       ``info["md_state"]`` the RNG and thermostat/barostat state (JSON)
``P-final.extxyz``     the last frame
====================== ==========================================================================

A restart reads the newest ``P-res-<step>.traj``, drops trajectory frames and stats rows past
that step (written after the restart point by the interrupted run), and continues, so the files
end up with every step exactly once.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from gaunt_md.errors import GauntError
from gaunt_md.units import GPa

#: (name, unit) of each stats column, janus-core's order
STATS_COLUMNS = (
    ("Step", ""), ("Real_Time", "s"), ("Time", "fs"), ("Epot/N", "eV"), ("EKin/N", "eV"),
    ("T", "K"), ("ETot/N", "eV"), ("Density", "g/cm^3"), ("Volume", "A^3"), ("P", "GPa"),
    ("Pxx", "GPa"), ("Pyy", "GPa"), ("Pzz", "GPa"), ("Pyz", "GPa"), ("Pxz", "GPa"), ("Pxy", "GPa"),
    ("Target_T", "K"),
)
_AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def snapshot(atoms: Atoms, step: int, time_fs: float) -> Atoms:
    """Copy of ``atoms`` (with momenta) carrying the calculator's results and step/time info."""
    out = atoms.copy()
    out.set_constraint()
    keep = {k: v for k, v in (atoms.calc.results if atoms.calc else {}).items()
            if k in ("energy", "free_energy", "forces", "stress")}
    out.calc = SinglePointCalculator(out, **keep)
    out.info["step"] = int(step)
    out.info["time_fs"] = float(time_fs)
    return out


# --------------------------------------------------------------------------- stats


def stats_row(atoms: Atoms, *, step: int, time_fs: float, real_time_s: float, target_T: float) -> list[float]:
    """One row of ``STATS_COLUMNS``; pressure includes the ideal-gas (kinetic) term."""
    n = len(atoms)
    epot = float(atoms.get_potential_energy())
    ekin = float(atoms.get_kinetic_energy())
    periodic = bool(atoms.pbc.all())
    volume = float(atoms.get_volume()) if periodic else float("nan")
    density = float(atoms.get_masses().sum() / volume * _AMU_PER_A3_TO_G_PER_CM3) if periodic else float("nan")
    pressure = [float("nan")] * 7
    if periodic:
        try:
            stress = atoms.get_stress(include_ideal_gas=True)  # Voigt, eV/Å^3, tension positive
            p = -np.asarray(stress) / GPa
            pressure = [float(p[:3].mean()), *map(float, p)]
        except Exception:  # noqa: BLE001 - calculators without stress still run MD
            pass
    return [step, real_time_s, time_fs, epot / n, ekin / n, float(atoms.get_temperature()),
            (epot + ekin) / n, density, volume, *pressure, target_T]


class StatsFile:
    """Append-only ``*-stats.dat`` with a header naming each column and its unit."""

    def __init__(self, path: Path, *, append: bool):
        self.path = path
        if not (append and path.exists()):
            head = " | ".join(f"{name} [{unit}]" if unit else name for name, unit in STATS_COLUMNS)
            path.write_text(f"# {head}\n")

    def write(self, row: list[float]) -> None:
        step, rest = int(row[0]), row[1:]
        with open(self.path, "a") as fh:
            fh.write(f"{step:10d} " + " ".join(f"{x:16.8e}" for x in rest) + "\n")


def read_stats(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``*-stats.dat`` into ``{column name: array}``."""
    data = np.loadtxt(path, comments="#", ndmin=2)
    return {name: data[:, i] for i, (name, _) in enumerate(STATS_COLUMNS)}


def truncate_stats(path: Path, last_step: int) -> None:
    """Drop the rows with a step greater than ``last_step``."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if ln.startswith("#") or not ln.strip() or int(ln.split()[0]) <= last_step]
    if len(kept) != len(lines):
        path.write_text("".join(kept))


# --------------------------------------------------------------------------- trajectory


class TrajectoryFile:
    """Trajectory in extxyz (text, appended frame by frame) or ASE ``.traj`` (binary)."""

    def __init__(self, path: Path, *, append: bool):
        self.path = path
        self.format = "traj" if path.suffix == ".traj" else "extxyz"
        if not append and path.exists():
            path.unlink()
        self._traj = None

    def write(self, frame: Atoms) -> None:
        if self.format == "traj":
            if self._traj is None:
                from ase.io import Trajectory

                self._traj = Trajectory(self.path, "a")
            self._traj.write(frame)
        else:
            import ase.io

            ase.io.write(self.path, frame, format="extxyz", append=True)

    def close(self) -> None:
        if self._traj is not None:
            self._traj.close()
            self._traj = None


def truncate_trajectory(path: Path, last_step: int) -> None:
    """Drop frames with ``info["step"] > last_step`` (rewrites the file only when needed)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    import ase.io

    frames = ase.io.read(path, index=":")
    kept = [f for f in frames if int(f.info.get("step", -1)) <= last_step]
    if len(kept) == len(frames):
        return
    tmp = path.with_name(path.name + ".part" + path.suffix)
    if kept:
        ase.io.write(tmp, kept, format="traj" if path.suffix == ".traj" else "extxyz")
        os.replace(tmp, path)
    else:
        path.unlink()


# --------------------------------------------------------------------------- restarts

_STATE_ATTRS = {
    "": ("_eps", "_p_eps", "_volume0", "_cell0", "_p_g", "_p_c", "transferred_energy"),
    "_thermostat": ("_eta", "_p_eta"),
    "_barostat": ("_xi", "_p_xi"),
}


def dynamics_state(dyn: Any) -> dict[str, Any]:
    """Internal thermostat/barostat variables of an ASE integrator, as JSON lists."""
    state = {}
    for owner_name, attrs in _STATE_ATTRS.items():
        owner = getattr(dyn, owner_name, None) if owner_name else dyn
        if owner is None:
            continue
        for attr in attrs:
            if hasattr(owner, attr):
                value = getattr(owner, attr)
                state[f"{owner_name}.{attr}"] = np.asarray(value).tolist()
    return state


def restore_dynamics_state(dyn: Any, state: dict[str, Any]) -> None:
    """Inverse of :func:`dynamics_state` (also re-syncs MTK's cached positions/momenta)."""
    for key, value in state.items():
        owner_name, attr = key.split(".", 1)
        owner = getattr(dyn, owner_name) if owner_name else dyn
        old = getattr(owner, attr)
        setattr(owner, attr, float(value) if np.ndim(old) == 0 else np.array(value, dtype=float))


def restart_path(prefix: str, step: int) -> Path:
    return Path(f"{prefix}-res-{step}.traj")


def list_restarts(prefix: str) -> list[tuple[int, Path]]:
    """``(step, path)`` of every restart file of ``prefix``, oldest first."""
    base = Path(prefix)
    pattern = re.compile(re.escape(base.name) + r"-res-(\d+)\.traj$")
    folder = base.parent if str(base.parent) else Path(".")
    if not folder.exists():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return sorted(found)


def write_restart(prefix: str, frame: Atoms, state: dict[str, Any], *, keep: int) -> Path:
    """Write ``{prefix}-res-{step}.traj`` atomically and keep the newest ``keep`` files."""
    from ase.io import Trajectory

    step = int(frame.info["step"])
    frame = frame.copy()
    frame.info["md_state"] = json.dumps(state)
    path = restart_path(prefix, step)
    tmp = path.with_name(path.name + ".part")
    with Trajectory(tmp, "w") as traj:
        traj.write(frame)
    os.replace(tmp, path)
    if keep > 0:
        for _, old in list_restarts(prefix)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def read_restart(path: Path) -> tuple[Atoms, dict[str, Any]]:
    """Atoms (positions, momenta, cell) and the ``md_state`` dict of a restart file."""
    import ase.io

    try:
        atoms = ase.io.read(path, format="traj")
        state = json.loads(atoms.info.pop("md_state"))
    except Exception as err:  # noqa: BLE001 - any failure means the file is unusable
        raise GauntError(f"cannot read MD restart file {os.fspath(path)!r}: {err}") from err
    atoms.calc = None
    return atoms, state


class Timer:
    """Wall-clock seconds since creation (the stats file's Real_Time)."""

    def __init__(self, offset: float = 0.0):
        self.t0 = time.perf_counter() - offset

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def fs_of(dyn: Any) -> float:
    """The integrator's timestep in fs."""
    return dyn.dt / units.fs
