"""``TrainConfig``: every option of ``gaunt-md train``; ``--config`` files use the same names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gaunt_md.errors import GauntError


@dataclass(kw_only=True)
class TrainConfig:
    """Every option of ``gaunt-md train`` (flags and ``--config`` keys use these names)."""

    train_files: list[str]
    output_dir: str = "runs/gaunt"
    name: str = "gaunt"
    description: str = ""
    valid_fraction: float = 0.05
    e0_files: list[str] = field(default_factory=list)  # extra files holding isolated atoms
    energy_key: str = "REF_energy"
    forces_key: str = "REF_forces"
    stress_key: str = "REF_stress"
    # model
    cutoff: float = 5.0
    num_channels: int = 64
    l_max_edge: int = 3
    l_max_hidden: int = 1
    correlation: int = 3
    num_layers: int = 2
    num_bessel: int = 8
    radial_hidden: list[int] = field(default_factory=lambda: [64, 64, 64])
    # scale each layer's messages to unit rms at init, measured on training frames (ModelConfig.
    # message_scales); false reproduces models trained before this option existed
    normalize_messages: bool = True
    # optimisation
    epochs: int = 100
    batch_size: int = 4
    lr: float = 0.01
    weight_decay: float = 5e-7
    energy_weight: float = 10.0
    forces_weight: float = 1.0
    stress_weight: float = 100.0
    ema_decay: float = 0.99
    clip_grad: float = 10.0
    scheduler: str = "plateau"  # or "cosine"
    lr_factor: float = 0.8
    lr_patience: int = 5
    patience: int = 50  # early stopping, epochs without validation improvement
    seed: int = 0
    dtype: str = "float32"
    max_time_min: float = 0.0  # stop (resumably) after this many minutes; 0 = no limit

    def __post_init__(self) -> None:
        if not self.train_files:
            raise GauntError("train_files is empty: give at least one extxyz file")
        if self.scheduler not in ("plateau", "cosine"):
            raise GauntError(f"scheduler must be 'plateau' or 'cosine', got {self.scheduler!r}")
        if self.dtype not in ("float32", "float64"):
            raise GauntError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise GauntError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k.replace("-", "_"): v for k, v in d.items()}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GauntError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**d)
