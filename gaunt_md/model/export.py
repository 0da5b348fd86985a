"""Export a checkpoint as a TorchScript module for libtorch hosts (a LAMMPS pair style, C++).

The exported module is :class:`~gaunt_md.model.derivatives.ForceField` around the potential:
``forward(numbers, edge_index, edge_vectors, batch, num_graphs, compute_forces, compute_virial,
create_graph)`` with the edge convention of ``ARCHITECTURE.md`` (row 0 sender j, row 1 receiver i,
``r_ij = r_j - r_i + S @ cell``); the host builds the neighbour list with the cutoff stored in
the file's extra files (``metadata.json``: elements, cutoff, dtype, package version).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from gaunt_md.model.checkpoint import load_checkpoint
from gaunt_md.model.derivatives import ForceField


def export_torchscript(checkpoint: str | os.PathLike, out: str | os.PathLike, *, dtype: torch.dtype = torch.float64) -> Path:
    """Script ``ForceField(potential)`` of ``checkpoint`` in ``dtype`` and save it to ``out``."""
    model, header = load_checkpoint(checkpoint, dtype=dtype)
    scripted = torch.jit.script(ForceField(model))
    meta = {
        "elements": header.get("elements"),
        "atomic_numbers": list(model.config.elements),
        "cutoff": model.config.cutoff,
        "dtype": str(dtype).replace("torch.", ""),
        "package_version": header.get("package_version"),
        "edge_convention": "edge_index[0] = sender j, edge_index[1] = receiver i, r_ij = r_j - r_i + S @ cell",
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(out), _extra_files={"metadata.json": json.dumps(meta)})
    return out
