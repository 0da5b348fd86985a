"""gaunt_md: Gaunt-accelerated E(3)-equivariant interatomic potentials for ASE.

>>> from gaunt_md import GauntCalculator          # doctest: +SKIP
>>> atoms.calc = GauntCalculator()                 # doctest: +SKIP

Public names are imported lazily, so ``import gaunt_md.data`` (or the CLI) does not pull in torch
and the model layer before it needs them.
"""

__version__ = "0.1.0"

_LAZY = {
    "GauntCalculator": ("gaunt_md.calculator", "GauntCalculator"),
    "available_models": ("gaunt_md.potentials", "available_models"),
    "model_info": ("gaunt_md.potentials", "model_info"),
    "load_potential": ("gaunt_md.model.checkpoint", "load_checkpoint"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'gaunt_md' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["GauntCalculator", "available_models", "load_potential", "model_info", "__version__"]
