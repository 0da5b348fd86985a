"""``ModelConfig``: every hyperparameter and data statistic of a Gaunt potential, saved as JSON.

A checkpoint is this config plus a state dict; loading rebuilds the model from the config and
checks its format version (no pickled modules).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

CONFIG_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture and normalisation of a :class:`~gaunt_md.model.potential.GauntPotential`.

    ==================  =====================================================  ========
    field               meaning                                                unit
    ==================  =====================================================  ========
    elements            atomic numbers the model covers (species index order)  --
    cutoff              radial cutoff r_c                                      Å
    num_channels        channels C of every equivariant feature                --
    l_max_edge          L_A: degree of edge harmonics and messages A_i         --
    l_max_hidden        L_h: degree of hidden node features h_i                --
    correlation         nu_max: highest power in the Gaunt product basis       --
    num_layers          message-passing layers                                 --
    num_bessel          Bessel radial basis functions                          --
    cutoff_p            exponent p of the polynomial cutoff envelope           --
    radial_hidden       widths of the radial MLP's hidden layers               --
    readout_hidden      width of the last layer's readout MLP                  --
    avg_num_neighbors   messages are divided by this                           --
    message_scales      per layer, multiplies the messages A_i so that the     --
                        product basis sees unit-scale inputs at init; empty
                        = 1 (configs before this field)
    atomic_energies     E0 per element, same order as ``elements``             eV
    scale, shift        E_i = E0[z_i] + scale * sum_t e_i^t + shift            eV
    ==================  =====================================================  ========
    """

    elements: tuple[int, ...]
    cutoff: float = 5.0
    num_channels: int = 64
    l_max_edge: int = 3
    l_max_hidden: int = 1
    correlation: int = 3
    num_layers: int = 2
    num_bessel: int = 8
    cutoff_p: int = 5
    radial_hidden: tuple[int, ...] = (64, 64, 64)
    readout_hidden: int = 16
    avg_num_neighbors: float = 20.0
    message_scales: tuple[float, ...] = ()
    atomic_energies: tuple[float, ...] = field(default=())
    scale: float = 1.0
    shift: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", tuple(int(z) for z in self.elements))
        object.__setattr__(self, "radial_hidden", tuple(int(w) for w in self.radial_hidden))
        object.__setattr__(self, "message_scales", tuple(float(x) for x in self.message_scales))
        e0 = tuple(float(e) for e in self.atomic_energies) or (0.0,) * len(self.elements)
        object.__setattr__(self, "atomic_energies", e0)
        problems = []
        if not self.elements:
            problems.append("elements is empty")
        if len(set(self.elements)) != len(self.elements):
            problems.append(f"elements has duplicates: {self.elements}")
        if any(not 1 <= z <= 118 for z in self.elements):
            problems.append(f"elements must be atomic numbers 1..118, got {self.elements}")
        if len(self.atomic_energies) != len(self.elements):
            problems.append(
                f"atomic_energies has {len(self.atomic_energies)} entries for {len(self.elements)} elements"
            )
        if self.cutoff <= 0:
            problems.append(f"cutoff must be positive, got {self.cutoff}")
        for name in ("num_channels", "num_layers", "num_bessel", "correlation", "readout_hidden"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("l_max_edge", "l_max_hidden"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.avg_num_neighbors <= 0:
            problems.append(f"avg_num_neighbors must be positive, got {self.avg_num_neighbors}")
        if self.message_scales and (
            len(self.message_scales) != self.num_layers
            or not all(0.0 < x < float("inf") for x in self.message_scales)
        ):
            problems.append(
                f"message_scales must be empty or {self.num_layers} positive numbers, got {self.message_scales}"
            )
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["elements"] = list(self.elements)
        d["radial_hidden"] = list(self.radial_hidden)
        d["atomic_energies"] = list(self.atomic_energies)
        if self.message_scales:
            d["message_scales"] = list(self.message_scales)
        else:  # checkpoints and training states from before the field stay byte-identical
            del d["message_scales"]
        return d

    def message_scale(self, layer: int) -> float:
        """The factor on layer ``layer``'s messages (1.0 when ``message_scales`` is empty)."""
        return self.message_scales[layer] if self.message_scales else 1.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)
