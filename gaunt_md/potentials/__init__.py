"""Registry of the potentials shipped with gaunt_md (offline; no downloads).

Each shipped potential is a folder ``potentials/<name>/`` holding ``model.safetensors`` and
``MODEL_CARD.md``. Folders are searched in this order:

1. ``$GAUNT_MD_POTENTIALS`` (a folder of such folders), if set;
2. ``gaunt_md/potentials/shipped`` inside an installed wheel;
3. ``potentials/`` at the root of a source checkout (editable installs, fresh clones).

``"default"`` names :data:`DEFAULT_MODEL`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gaunt_md.errors import ModelNotFoundError
from gaunt_md.model.checkpoint import read_metadata

DEFAULT_MODEL = "gaunt-mlearn"
CHECKPOINT_NAME = "model.safetensors"
CARD_NAME = "MODEL_CARD.md"


def _search_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("GAUNT_MD_POTENTIALS")
    if env:
        dirs.append(Path(env))
    here = Path(__file__).resolve().parent
    dirs.append(here / "shipped")
    dirs.append(here.parent.parent / "potentials")
    return [d for d in dirs if d.is_dir()]


def _folders() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in _search_dirs():
        for sub in sorted(d.iterdir()):
            if (sub / CHECKPOINT_NAME).is_file() and sub.name not in found:
                found[sub.name] = sub
    return found


def available_models() -> list[str]:
    """Names of the shipped potentials found on this installation."""
    return sorted(_folders())


def resolve_model(model: str | os.PathLike) -> Path:
    """Path of the checkpoint for a shipped-model name, ``"default"`` or a checkpoint path."""
    name = os.fspath(model)
    if name == "default":
        name = DEFAULT_MODEL
    folders = _folders()
    if name in folders:
        return folders[name] / CHECKPOINT_NAME
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.is_dir() and (path / CHECKPOINT_NAME).is_file():
        return path / CHECKPOINT_NAME
    raise ModelNotFoundError(
        f"unknown model {name!r}: not a shipped potential and not a checkpoint file. "
        f"Shipped potentials: {available_models() or 'none found'}"
    )


def model_info(model: str | os.PathLike) -> dict[str, Any]:
    """Name, elements, description, metrics and card path of a shipped model or checkpoint."""
    path = resolve_model(model)
    header = read_metadata(path)
    card = path.parent / CARD_NAME
    return {
        "name": path.parent.name if path.name == CHECKPOINT_NAME else path.stem,
        "path": str(path),
        "elements": header.get("elements", []),
        "cutoff": header.get("cutoff"),
        "description": header.get("description", ""),
        "metrics": header.get("metrics", {}),
        "training": header.get("training", {}),
        "card": str(card) if card.is_file() else None,
    }


__all__ = ["DEFAULT_MODEL", "available_models", "model_info", "resolve_model"]
