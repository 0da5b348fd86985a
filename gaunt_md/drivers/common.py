"""Shared plumbing of the drivers: structures in, calculators, result objects, provenance.

Nothing here does physics. The pieces are

- :func:`prepare_atoms`: any structure (``Atoms``, pymatgen ``Structure``/``Molecule``, path) ->
  a private ``Atoms`` copy with the calculator attached;
- :func:`default_calculator`: builds ``GauntCalculator`` lazily, only when none is given, so the
  drivers run with any ASE calculator (EMT, MACE, ...);
- :class:`DriverResult`: base of the plain result dataclasses (dict-like, ``to_dict()`` is JSON);
- :func:`provenance` / :func:`write_summary`: the ``*-summary.yml`` written by every run;
- :func:`progress`: a tqdm bar that exists only when asked for.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.metadata
import json
import logging
import os
import platform
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from gaunt_md.data.convert import to_atoms, to_structure
from gaunt_md.errors import GauntError, StructureError

log = logging.getLogger(__name__)

DTYPES = ("float32", "float64")


def default_calculator(dtype: str = "float64") -> BaseCalculator:
    """Return ``GauntCalculator(dtype=dtype)`` with the default model (imported lazily)."""
    if dtype not in DTYPES:
        raise GauntError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    try:
        from gaunt_md.calculator import GauntCalculator
    except ImportError as err:
        raise GauntError(
            f"the default GauntCalculator is not available ({err}); pass calculator=... "
            "(any ASE calculator works)"
        ) from err
    log.info("building the default GauntCalculator in %s", dtype)
    return GauntCalculator(dtype=dtype)


def prepare_atoms(structure: Any, calculator: BaseCalculator | None, *, dtype: str = "float64") -> Atoms:
    """Return a copy of ``structure`` as ``Atoms`` with ``calculator`` (or the default) attached.

    The caller's object is never modified. Raises :class:`StructureError` for an empty structure.
    """
    atoms = to_atoms(structure)
    if len(atoms) == 0:
        raise StructureError("the structure has no atoms")
    if not np.all(np.isfinite(atoms.positions)):
        raise StructureError("the structure has NaN or infinite positions")
    atoms.calc = calculator if calculator is not None else default_calculator(dtype)
    return atoms


def describe_calculator(calc: BaseCalculator | None) -> dict[str, Any]:
    """Model/device/dtype of a calculator, as far as it tells (any ASE calculator)."""
    if calc is None:
        return {}
    params = dict(getattr(calc, "parameters", None) or {})
    out: dict[str, Any] = {"calculator": type(calc).__name__}
    for key in ("model", "path", "version", "device", "dtype", "fused", "radial_intervals", "skin"):
        value = params.get(key)
        if value is None:
            value = getattr(calc, key, None)
        if value is not None and not callable(value):
            out[key] = str(value).replace("torch.", "")
    info = getattr(calc, "model_info", None)
    if isinstance(info, Mapping):
        for key in ("name", "version", "sha256"):
            if key in info:
                out[f"model_{key}"] = str(info[key])
    return out


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`GauntError` naming ``name`` when ``value`` is not > 0 (or >= 0)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or not np.isfinite(value):
        raise GauntError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def check_choice(name: str, value: str, allowed: tuple[str, ...] | list[str]) -> str:
    """Return the lower-cased ``value`` if it is in ``allowed``, else raise :class:`GauntError`."""
    low = str(value).lower()
    if low not in allowed:
        raise GauntError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
    return low


# --------------------------------------------------------------------------- results


def atoms_to_dict(atoms: Atoms) -> dict[str, Any]:
    """Plain JSON description of ``atoms`` (symbols, positions Å, cell rows Å, pbc)."""
    return {
        "symbols": atoms.get_chemical_symbols(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": atoms.pbc.tolist(),
    }


def atoms_from_dict(d: Mapping[str, Any]) -> Atoms:
    """Inverse of :func:`atoms_to_dict`."""
    return Atoms(symbols=d["symbols"], positions=d["positions"], cell=d["cell"], pbc=d["pbc"])


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, paths, Atoms and nested containers to JSON types."""
    if isinstance(value, DriverResult):
        return value.to_dict()
    if isinstance(value, Atoms):
        return atoms_to_dict(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else str(value)
    return value


class DriverResult(Mapping):
    """Base of the result dataclasses: read-only mapping over the fields, JSON via ``to_dict``.

    ``result["energy"]`` and ``result.energy`` are the same object; ``to_dict()`` converts
    ``Atoms`` to :func:`atoms_to_dict` form and arrays to lists so that ``json.dumps`` (jobflow,
    FireWorks, a database) can store it. ``result.structure`` gives the final structure as a
    pymatgen ``Structure`` (periodic) or ``Molecule``.
    """

    def _names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @property
    def structure(self):
        """Final structure as a pymatgen ``Structure``/``Molecule`` (built on request)."""
        return to_structure(self["atoms"])

    def to_dict(self, *, structure: bool = False) -> dict[str, Any]:
        """JSON-serialisable dict; ``structure=True`` adds the pymatgen ``as_dict()`` form."""
        skip = {f.name for f in dataclasses.fields(self) if not f.metadata.get("json", True)}  # type: ignore[arg-type]
        out = {name: to_jsonable(getattr(self, name)) for name in self._names() if name not in skip}
        if structure:
            out["structure"] = self.structure.as_dict()
        return out

    def as_dict(self) -> dict[str, Any]:  # the name jobflow/monty look for
        return self.to_dict()

    def to_json(self, path: str | os.PathLike | None = None, **kw) -> str:
        """Return the JSON text of :meth:`to_dict` and write it to ``path`` if given."""
        text = json.dumps(self.to_dict(**kw), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text


# --------------------------------------------------------------------------- files


def output_path(file_prefix: str | os.PathLike | None, suffix: str) -> Path | None:
    """``{file_prefix}{suffix}`` with its parent folder created; None when no prefix."""
    if file_prefix is None:
        return None
    path = Path(f"{os.fspath(file_prefix)}{suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(calculator: BaseCalculator | None = None) -> dict[str, Any]:
    """Versions (gaunt_md, python, numpy, ase, torch + CUDA, phonopy), host and calculator."""
    import gaunt_md

    versions: dict[str, Any] = {"gaunt_md": gaunt_md.__version__, "python": platform.python_version()}
    for dist in ("numpy", "ase", "torch", "phonopy", "pymatgen", "e3nn"):
        versions[dist] = _version(dist)
    torch = sys.modules.get("torch")  # only when loaded: importing torch costs seconds
    if torch is not None:
        versions["cuda"] = torch.version.cuda
    out: dict[str, Any] = {"versions": versions, "host": socket.gethostname(), "platform": platform.platform()}
    out.update(describe_calculator(calculator))
    return out


def now() -> str:
    """Local time, ISO 8601 with the offset."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_summary(
    path: str | os.PathLike,
    *,
    task: str,
    inputs: Mapping[str, Any],
    calculator: BaseCalculator | None,
    start: str,
    wall_time_s: float,
    outputs: Mapping[str, Any],
    results: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> Path:
    """Write ``summary.yml``: task, inputs, provenance (versions, model, device, dtype), seed,
    timings, output files and headline results."""
    import yaml

    doc = {
        "task": task,
        "inputs": to_jsonable(dict(inputs)),
        "seed": seed,
        "provenance": provenance(calculator),
        "timing": {"start": start, "end": now(), "wall_time_s": round(float(wall_time_s), 3)},
        "outputs": to_jsonable(dict(outputs)),
    }
    if results:
        doc["results"] = to_jsonable(dict(results))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    return path


def progress(total: int | None, *, enabled: bool, desc: str, unit: str = "step"):
    """A tqdm bar (with ETA) when ``enabled``, else a no-op object with the same methods."""
    if enabled:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
    return _NoBar()


class _NoBar:
    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, *_a, **_k) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
