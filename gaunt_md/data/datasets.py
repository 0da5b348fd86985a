"""Labelled structures from extended XYZ files: :func:`read_labelled` and E0 helpers.

Labels are looked up under configurable keys in ``atoms.info`` (energy, stress, weight,
config_type) and ``atoms.arrays`` (forces). ASE's extxyz reader moves the plain keys
``energy``/``forces``/``stress`` into a ``SinglePointCalculator``; when a key is absent the
calculator's value is used instead, so files such as 3BPA/AcAc (plain ``energy``/``forces``)
and mlearn/rMD17 (``REF_energy``/``REF_forces``/``REF_stress``) read with the same defaults.

Units: energy eV, forces eV/Å, stress eV/Å³ with ASE's sign (positive under tension), as a
full 3x3 tensor.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress

from gaunt_md.errors import StructureError

__all__ = [
    "LabelledStructure",
    "read_labelled",
    "isolated_atom_energies",
    "split_isolated",
    "is_isolated_atom",
    "ISOLATED_CONFIG_TYPES",
]

logger = logging.getLogger(__name__)

#: ``config_type`` values that mark a frame as an isolated-atom reference (E0).
ISOLATED_CONFIG_TYPES = frozenset({"IsolatedAtom", "isolated_atom"})

_LABELS = ("energy", "forces", "stress")


@dataclass(eq=False)
class LabelledStructure:
    """A structure with its reference labels (compared by identity: fields hold arrays).

    Attributes:
        atoms: the structure, without calculator and without the label keys in ``info`` /
            ``arrays`` (other metadata such as ``description`` is kept).
        energy: total energy, eV, or None if the frame has none.
        forces: float64 [n_atoms, 3], eV/Å, or None.
        stress: float64 [3, 3], eV/Å³, ASE sign (σ = (1/V) ∂E/∂ε, positive under tension),
            or None.
        weight: per-structure loss weight (``info[weight_key]``, default 1.0).
        config_type: ``info["config_type"]`` if present (e.g. ``"Elastic"``, ``"isolated_atom"``).
    """

    atoms: Atoms
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    weight: float = 1.0
    config_type: str | None = None


def read_labelled(
    path: str | os.PathLike,
    *,
    energy_key: str | None = "REF_energy",
    forces_key: str | None = "REF_forces",
    stress_key: str | None = "REF_stress",
    weight_key: str | None = "config_weight",
    index: int | slice | str = ":",
    required: Iterable[str] = ("energy",),
) -> list[LabelledStructure]:
    """Read labelled frames from an extended XYZ file.

    Args:
        path: the extxyz file.
        energy_key: ``atoms.info`` key of the total energy (eV). Falls back to the attached
            calculator's ``energy`` when absent. None: do not read energies.
        forces_key: ``atoms.arrays`` key of the forces (eV/Å), with calculator fallback.
        stress_key: ``atoms.info`` key of the stress (eV/Å³, ASE sign): 9 numbers (row-major
            3x3), 6 Voigt numbers (xx, yy, zz, yz, xz, xy) or a 3x3 array; calculator fallback.
        weight_key: ``atoms.info`` key of a per-structure weight (default 1.0 when absent).
        index: which frames, as for ``ase.io.read`` (``":"`` all, ``"0:3"``, ``-1``, ...).
        required: labels among ``{"energy", "forces", "stress"}`` that every frame must have;
            a missing one raises. Labels not required are None where absent (e.g. the forces of
            isolated-atom frames, the stress of molecules).

    Returns:
        One :class:`LabelledStructure` per frame, in file order.

    Raises:
        StructureError: the file does not exist or cannot be parsed, a required label is
            missing (the message names the frame index and the key), or a label has the
            wrong shape.
    """
    required = tuple(required)
    unknown = sorted(set(required) - set(_LABELS))
    if unknown:
        raise StructureError(f"required labels {unknown} are unknown; allowed are {list(_LABELS)}")
    keys = {"energy": energy_key, "forces": forces_key, "stress": stress_key}
    for label in required:
        if keys[label] is None:
            raise StructureError(f"label {label!r} is required but {label}_key is None")

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise StructureError(f"dataset file not found: {path!r}")
    import ase.io

    try:
        frames = ase.io.read(path, index=index, format="extxyz")
    except Exception as error:  # noqa: BLE001 - report any parser failure with the path
        raise StructureError(f"could not read {path!r} as extended XYZ: {error}") from error
    if isinstance(frames, Atoms):
        frames = [frames]

    result = [
        _label_frame(atoms, frame, path, keys, weight_key, required) for frame, atoms in enumerate(frames)
    ]
    logger.debug("read %d labelled frames from %s", len(result), path)
    return result


def is_isolated_atom(structure: LabelledStructure) -> bool:
    """True for a single non-periodic atom, or a frame whose config_type marks an isolated atom."""
    if structure.config_type in ISOLATED_CONFIG_TYPES:
        return True
    return len(structure.atoms) == 1 and not structure.atoms.pbc.any()


def split_isolated(
    frames: Iterable[LabelledStructure],
) -> tuple[list[LabelledStructure], list[LabelledStructure]]:
    """Return ``(isolated, rest)``: isolated-atom frames (see :func:`is_isolated_atom`) and the
    others, each in input order."""
    isolated: list[LabelledStructure] = []
    rest: list[LabelledStructure] = []
    for frame in frames:
        (isolated if is_isolated_atom(frame) else rest).append(frame)
    return isolated, rest


def isolated_atom_energies(frames: Iterable[LabelledStructure]) -> dict[int, float]:
    """Return ``{Z: E0}`` (eV) from the isolated-atom frames among ``frames``; others are ignored.

    Raises:
        StructureError: an isolated-atom frame has more than one atom or no energy, or two
            frames give different energies for the same element.
    """
    energies: dict[int, float] = {}
    for k, frame in enumerate(frames):
        if not is_isolated_atom(frame):
            continue
        if len(frame.atoms) != 1:
            raise StructureError(
                f"frame {k} has config_type {frame.config_type!r} (isolated atom) but "
                f"{len(frame.atoms)} atoms"
            )
        if frame.energy is None:
            raise StructureError(f"isolated-atom frame {k} ({frame.atoms.get_chemical_formula()}) has no energy")
        z = int(frame.atoms.numbers[0])
        if z in energies and not np.isclose(energies[z], frame.energy, rtol=0.0, atol=1e-8):
            raise StructureError(
                f"two isolated-atom energies for Z={z}: {energies[z]} eV and {frame.energy} eV (frame {k})"
            )
        energies[z] = float(frame.energy)
    return energies


# ----------------------------------------------------------------------------------------------
# helpers


def _label_frame(
    atoms: Atoms,
    frame: int,
    path: str,
    keys: dict[str, str | None],
    weight_key: str | None,
    required: Sequence[str],
) -> LabelledStructure:
    calc_results = dict(atoms.calc.results) if atoms.calc is not None else {}
    where = f"frame {frame} of {path!r}"

    raw: dict[str, object] = {}
    for label, key in keys.items():
        if key is None:
            continue
        store = atoms.arrays if label == "forces" else atoms.info
        if key in store:
            raw[label] = store[key]
        elif label in calc_results:
            raw[label] = calc_results[label]
        elif label in required:
            place = "atoms.arrays" if label == "forces" else "atoms.info"
            raise StructureError(
                f"{where} has no {label} label: key {key!r} is not in {place} "
                f"(keys: {sorted(store)}) and no calculator {label} is attached"
            )

    n_atoms = len(atoms)
    energy = forces = stress = None
    if "energy" in raw:
        energy_array = np.asarray(raw["energy"], dtype=np.float64)
        if energy_array.size != 1:
            raise StructureError(f"{where}: energy {keys['energy']!r} must be one number, got shape {energy_array.shape}")
        energy = float(energy_array.reshape(()))
    if "forces" in raw:
        forces = np.array(raw["forces"], dtype=np.float64)
        if forces.shape != (n_atoms, 3):
            raise StructureError(
                f"{where}: forces {keys['forces']!r} must have shape ({n_atoms}, 3), got {forces.shape}"
            )
    if "stress" in raw:
        stress = _stress_3x3(raw["stress"], where, keys["stress"])

    for label, value in (("energy", energy), ("forces", forces), ("stress", stress)):
        if value is not None and not np.isfinite(value).all():
            raise StructureError(f"{where}: {label} {keys[label]!r} contains NaN/inf")

    weight = 1.0
    if weight_key is not None and weight_key in atoms.info:
        weight = float(atoms.info[weight_key])
        if not (np.isfinite(weight) and weight >= 0.0):
            raise StructureError(f"{where}: weight {weight_key!r} must be finite and >= 0, got {weight}")
    config_type = atoms.info.get("config_type")
    config_type = None if config_type is None else str(config_type)

    stripped = atoms.copy()  # Atoms.copy() drops the calculator
    stripped.calc = None
    for key in (keys["energy"], keys["stress"], weight_key):
        if key is not None:
            stripped.info.pop(key, None)
    if keys["forces"] is not None and keys["forces"] in stripped.arrays:
        del stripped.arrays[keys["forces"]]
    return LabelledStructure(
        atoms=stripped,
        energy=energy,
        forces=forces,
        stress=stress,
        weight=weight,
        config_type=config_type,
    )


def _stress_3x3(value: object, where: str, key: str | None) -> np.ndarray:
    """9 numbers (row-major), 6 Voigt numbers (xx, yy, zz, yz, xz, xy) or 3x3 -> float64 [3, 3]."""
    array = np.asarray(value, dtype=np.float64)
    if array.shape in ((9,), (3, 3)):
        return array.reshape(3, 3).copy()
    if array.shape == (6,):
        return np.asarray(voigt_6_to_full_3x3_stress(array), dtype=np.float64)
    raise StructureError(
        f"{where}: stress {key!r} must be 9 numbers (row-major 3x3), 6 Voigt numbers or 3x3, "
        f"got shape {array.shape}"
    )
