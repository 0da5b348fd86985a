"""Conversions at the boundary: anything a user hands us -> ``ase.Atoms`` and back."""

from __future__ import annotations

import os
from typing import Any

from ase import Atoms

from gaunt_md.errors import StructureError


def to_atoms(obj: Any, *, index: int | str = -1) -> Atoms:
    """Return an ``ase.Atoms`` for an ``Atoms``, a pymatgen ``Structure``/``Molecule`` or a path.

    A path is read with ``ase.io.read`` (CIF, POSCAR, extxyz, ... ; ``index`` picks the frame),
    falling back to pymatgen for formats ASE does not know. ``Atoms`` are returned as a copy
    so that callers never mutate the user's object.
    """
    if isinstance(obj, Atoms):
        return obj.copy()
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if not os.path.exists(path):
            raise StructureError(f"structure file not found: {path!r}")
        import ase.io

        try:
            return ase.io.read(path, index=index)
        except Exception as ase_error:  # noqa: BLE001 - retry with pymatgen, then report both
            try:
                from pymatgen.core import Structure

                return to_atoms(Structure.from_file(path))
            except Exception:  # noqa: BLE001
                raise StructureError(f"could not read structure file {path!r}: {ase_error}") from ase_error
    cls = type(obj).__name__
    if cls in ("Structure", "IStructure", "Molecule", "IMolecule"):
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_atoms(obj)
    raise StructureError(
        f"cannot make ase.Atoms from a {cls}; pass ase.Atoms, a pymatgen Structure/Molecule "
        "or a path to a structure file"
    )


def to_structure(atoms: Atoms):
    """Return a pymatgen ``Structure`` (periodic) or ``Molecule`` (non-periodic) for ``atoms``."""
    from pymatgen.io.ase import AseAtomsAdaptor

    if atoms.pbc.any():
        return AseAtomsAdaptor.get_structure(atoms)
    return AseAtomsAdaptor.get_molecule(atoms)
