"""gaunt_md: Gaunt-accelerated E(3)-equivariant interatomic potentials for ASE."""

__version__ = "0.1.0"
