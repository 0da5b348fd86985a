"""Exceptions raised by gaunt_md.

Every error a user can trigger with bad input derives from :class:`GauntError`; the ones that
describe bad input also derive from ASE's :class:`ase.calculators.calculator.InputError`, so code
that already catches ASE's errors keeps working.
"""

from __future__ import annotations

from ase.calculators.calculator import CalculatorSetupError, InputError


class GauntError(Exception):
    """Base class of every gaunt_md error."""


class StructureError(GauntError, InputError, ValueError):
    """A structure cannot be evaluated: NaN/inf positions or cell, overlapping atoms, ..."""


class UnknownElementError(StructureError):
    """A structure holds elements that the potential was not trained on."""


class CheckpointError(GauntError, CalculatorSetupError, ValueError):
    """A checkpoint is missing, corrupt, of an unknown format version or inconsistent."""


class ModelNotFoundError(CheckpointError, KeyError):
    """A model name is neither a shipped potential nor an existing file."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DeviceError(GauntError, CalculatorSetupError, ValueError):
    """The requested device or dtype is not available."""
