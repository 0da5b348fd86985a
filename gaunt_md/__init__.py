"""gaunt_md: Gaunt-accelerated E(3)-equivariant interatomic potentials for ASE.

>>> from gaunt_md import GauntCalculator          # doctest: +SKIP
>>> atoms.calc = GauntCalculator()                 # doctest: +SKIP
"""

__version__ = "0.1.0"

from gaunt_md.potentials import available_models, model_info  # noqa: E402


def __getattr__(name: str):
    # the calculator pulls in torch/ase/matscipy; import it only when asked for
    if name == "GauntCalculator":
        from gaunt_md.calculator import GauntCalculator

        return GauntCalculator
    if name == "load_potential":
        from gaunt_md.model.checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'gaunt_md' has no attribute {name!r}")


__all__ = ["GauntCalculator", "available_models", "load_potential", "model_info", "__version__"]
