"""Training a Gaunt potential on labelled extxyz data: resumable, deterministic for a seed.

One run lives in ``output_dir``:

================  =====================================================================
file              content
================  =====================================================================
config.json       the resolved :class:`TrainConfig` (what ``--config`` accepts back)
state.pt          everything needed to resume (weights, EMA, optimiser, scheduler, RNG,
                  split, history); tensors and plain containers only, loaded with
                  ``weights_only=True``; written atomically at the end of every epoch
best.safetensors  the EMA weights with the lowest validation loss so far (a checkpoint in
                  the calculator's format, with data description, command and metrics)
log.csv           one row per epoch: losses, validation MAE/RMSE per group, lr, time
================  =====================================================================

The loss and metrics live in :mod:`gaunt_md.train.steps`, the options in
:mod:`gaunt_md.train.config`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaunt_md.errors import GauntError
from gaunt_md.model.checkpoint import save_checkpoint
from gaunt_md.model.config import ModelConfig
from gaunt_md.model.derivatives import ForceField
from gaunt_md.model.potential import GauntPotential
from gaunt_md.train import stats
from gaunt_md.train.config import TrainConfig
from gaunt_md.train.steps import (
    EMA,
    evaluate_batch,
    load_frames,
    make_samples,
    split_groups,
    validation_metrics,
    weighted_loss,
)

__all__ = ["TrainConfig", "build_model", "prepare", "train"]

log = logging.getLogger(__name__)
STATE_VERSION = 1


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def build_model(config: TrainConfig, model_config: ModelConfig) -> GauntPotential:
    """The initial model, drawn from a private RNG stream for ``config.seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return GauntPotential(model_config)


def prepare(config: TrainConfig):
    """Read data, fix the split and the model's normalisation; return (model_config, train, valid)."""
    groups, known_e0 = load_frames(config)
    splits = split_groups(groups, config.valid_fraction, config.seed)
    train_frames = [groups[g][i] for g in sorted(groups) for i in splits[g][0]]
    elements = sorted({int(z) for frames in groups.values() for f in frames for z in f.atoms.numbers})
    e0 = stats.fit_atomic_energies(train_frames, elements, known_e0)
    train = [s for g in sorted(groups) for s in make_samples([groups[g][i] for i in splits[g][0]], g, config.cutoff, e0)]
    valid = [s for g in sorted(groups) for s in make_samples([groups[g][i] for i in splits[g][1]], g, config.cutoff, e0)]
    model_config = ModelConfig(
        elements=tuple(elements),
        cutoff=config.cutoff,
        num_channels=config.num_channels,
        l_max_edge=config.l_max_edge,
        l_max_hidden=config.l_max_hidden,
        correlation=config.correlation,
        num_layers=config.num_layers,
        num_bessel=config.num_bessel,
        radial_hidden=tuple(config.radial_hidden),
        avg_num_neighbors=stats.average_num_neighbors([s.graph for s in train]),
        atomic_energies=tuple(e0[z] for z in elements),
        scale=stats.force_rms(train_frames),
        shift=stats.energy_shift(train_frames, e0),
    )
    if config.normalize_messages:
        probe = build_model(config, model_config).to(torch.float64)
        sample = [train[i].graph for i in np.random.default_rng(config.seed).permutation(len(train))[:32]]
        model_config = model_config.replace(message_scales=stats.message_scales(probe, sample))
        log.info("message scales (unit-rms product-basis inputs at init): %s", model_config.message_scales)
    log.info("train %d frames, valid %d frames, elements %s", len(train), len(valid), elements)
    return model_config, train, valid


def train(config: TrainConfig, *, resume: bool = False, progress: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train (or resume) a run; return the final history row. Stops at ``epochs``, early
    stopping, or ``max_time_min`` (state saved, continue with ``resume=True``)."""
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "state.pt"
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    command = command or _invocation()

    model_config, train_samples, valid_samples = prepare(config)
    model = build_model(config, model_config).to(dtype)
    forcefield = ForceField(model)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr, amsgrad=True, weight_decay=config.weight_decay)
    if config.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.lr_factor, patience=config.lr_patience)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr * 0.01)
    ema = EMA(params, config.ema_decay)
    rng = np.random.default_rng(config.seed)
    epoch, best, best_epoch, history = 0, math.inf, -1, []

    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=True)
        if state["version"] != STATE_VERSION or state["model_config"] != model_config.to_dict():
            raise GauntError(f"{state_path} was written for another model/data configuration; cannot resume")
        with torch.no_grad():
            for p, v in zip(params, state["params"]):
                p.copy_(v)
            for s, v in zip(ema.shadow, state["ema"]):
                s.copy_(v)
        ema.num_updates = state["ema_updates"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = json.loads(state["rng"])
        epoch, best, best_epoch, history = state["epoch"], state["best"], state["best_epoch"], json.loads(state["history"])
        log.info("resumed %s at epoch %d (best valid loss %.4g at epoch %d)", out_dir, epoch, best, best_epoch)
    elif state_path.exists():
        raise GauntError(f"{state_path} exists: pass --resume to continue it, or choose another --output-dir")
    (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))

    start = time.monotonic()
    while epoch < config.epochs:
        t0 = time.monotonic()
        perm = rng.permutation(len(train_samples))
        model.train()
        total, n = 0.0, 0
        batches = range(0, len(perm), config.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        for b in batches:
            samples = [train_samples[i] for i in perm[b : b + config.batch_size]]
            loss = weighted_loss(evaluate_batch(forcefield, samples, dtype, training=True), config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
            optimizer.step()
            ema.update()
            total += float(loss.detach())
            n += 1
        model.eval()
        ema.swap()
        metrics = validation_metrics(forcefield, valid_samples, dtype, config) if valid_samples else {"valid_loss": total / n}
        epoch += 1
        improved = metrics["valid_loss"] < best
        if improved:
            best, best_epoch = metrics["valid_loss"], epoch
            save_checkpoint(
                out_dir / "best.safetensors", model,
                description=config.description or f"gaunt_md potential {config.name}",
                training={
                    "command": command, "data": config.train_files, "e0_files": config.e0_files,
                    "epoch": epoch, "valid_fraction": config.valid_fraction, "seed": config.seed,
                    "dtype": config.dtype, "num_parameters": sum(p.numel() for p in params),
                },
                metrics={k: round(v, 6) for k, v in metrics.items()},
            )
        ema.swap()
        if config.scheduler == "plateau":
            scheduler.step(metrics["valid_loss"])
        else:
            scheduler.step()
        row = {"epoch": epoch, "train_loss": total / max(n, 1), "lr": optimizer.param_groups[0]["lr"],
               "epoch_time_s": time.monotonic() - t0, **metrics}
        history.append(row)
        _write_log(out_dir / "log.csv", history)
        _atomic_torch_save(
            {
                "version": STATE_VERSION,
                "model_config": model_config.to_dict(),
                "params": [p.detach().clone() for p in params],
                "ema": [s.clone() for s in ema.shadow],
                "ema_updates": ema.num_updates,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": json.dumps(rng.bit_generator.state),
                "epoch": epoch, "best": best, "best_epoch": best_epoch,
                "history": json.dumps(history),
            },
            state_path,
        )
        log.info("epoch %d train %.4g valid %.4g%s", epoch, row["train_loss"], metrics["valid_loss"], " *" if improved else "")
        if epoch - best_epoch >= config.patience:
            log.info("early stopping: no improvement for %d epochs", config.patience)
            break
        if config.max_time_min and time.monotonic() - start > 60.0 * config.max_time_min:
            log.info("time limit of %.1f min reached; resume with --resume", config.max_time_min)
            break
    return history[-1] if history else {}


def _invocation() -> str:
    """The command line of this process, with the interpreter's path to the entry point normalised."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        argv[0] = "python -m gaunt_md.train"
    elif argv and Path(argv[0]).name == "gaunt-md":
        argv[0] = "gaunt-md"
    return " ".join([argv[0]] + [shlex.quote(a) for a in argv[1:]]) if argv else ""


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)
