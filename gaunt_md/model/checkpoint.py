"""Checkpoints: one ``.safetensors`` file holding the parameters and a JSON metadata header.

Loading never unpickles anything: safetensors stores raw tensors, and the model is rebuilt from
the ``ModelConfig`` in the header. Derived buffers (grid tables, normalisation constants) are
recomputed from the config, so a checkpoint holds learnable parameters only.

Header (``metadata["gaunt_md"]``, JSON):

=================  ==============================================================
key                meaning
=================  ==============================================================
format_version     :data:`FORMAT_VERSION`; other versions are refused
package_version    gaunt_md version that wrote the file
model_config       :meth:`ModelConfig.to_dict`
elements           chemical symbols covered, in species order
cutoff             Å
units              {"energy": "eV", "length": "Å", "stress": "eV/Å^3 (ASE sign)"}
training           free-form: data description, command, hardware, wall time
metrics            free-form: validation errors
=================  ==============================================================
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from gaunt_md.errors import CheckpointError
from gaunt_md.model.config import ModelConfig
from gaunt_md.model.potential import GauntPotential

FORMAT_VERSION = 1
_HEADER_KEY = "gaunt_md"
_UNITS = {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom", "stress": "eV/Angstrom^3, ASE sign"}


def _symbols(elements: tuple[int, ...]) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[z] for z in elements]


def save_checkpoint(path: str | os.PathLike, model: GauntPotential, **metadata: Any) -> Path:
    """Write ``model`` and ``metadata`` (JSON-serialisable) atomically to ``path``; return the path.

    Keyword arguments go into the header (``training=...``, ``metrics=...``, ...).
    """
    from safetensors.torch import save_file

    from gaunt_md import __version__

    path = Path(path)
    header = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model_config": model.config.to_dict(),
        "elements": _symbols(model.config.elements),
        "cutoff": model.config.cutoff,
        "units": _UNITS,
        **metadata,
    }
    tensors = {name: p.detach().to("cpu", torch.float64).contiguous() for name, p in model.named_parameters()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_HEADER_KEY: json.dumps(header, sort_keys=True)})
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a checkpoint, checked for format version (no tensors are read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_HEADER_KEY)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for bad files
        raise CheckpointError(
            f"{str(path)!r} is not a readable gaunt_md checkpoint (expected a safetensors file; "
            f"pickled files are never loaded): {exc}"
        ) from exc
    if raw is None:
        raise CheckpointError(f"{str(path)!r} is a safetensors file without a gaunt_md header")
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"corrupt gaunt_md header in {str(path)!r}: {exc}") from exc
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format version {version!r}; this gaunt_md reads version {FORMAT_VERSION}"
        )
    return header


def load_checkpoint(
    path: str | os.PathLike, *, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> tuple[GauntPotential, dict[str, Any]]:
    """Rebuild the model of a checkpoint; return ``(model in eval mode, header)``."""
    from safetensors.torch import load_file

    header = read_metadata(path)
    try:
        config = ModelConfig.from_dict(header["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid model_config in {str(path)!r}: {exc}") from exc
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten: keep the caller's RNG stream
        model = GauntPotential(config)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot read tensors of {str(path)!r}: {exc}") from exc
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    bad_shape = [n for n in params if n in tensors and tensors[n].shape != params[n].shape]
    if missing or unexpected or bad_shape:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match its model_config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {bad_shape[:5]}"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name])
    return model.to(device=device, dtype=dtype).eval(), header
