"""Training: the loss goes down, resume equals an uninterrupted run, checkpoints reload exactly,
E0 fitting recovers known constants."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from gaunt_md.data.datasets import LabelledStructure
from gaunt_md.errors import GauntError
from gaunt_md.model.checkpoint import read_metadata
from gaunt_md.train.config import TrainConfig
from gaunt_md.train.stats import fit_atomic_energies
from gaunt_md.train.trainer import train
from gaunt_md.train.validate import validate_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


def tiny_config(out: Path, **changes) -> TrainConfig:
    options = dict(
        train_files=[str(FIXTURES / "mlearn_Si_3.xyz"), str(FIXTURES / "mlearn_Ni_2.xyz"), str(FIXTURES / "rmd17_ethanol_3.xyz")],
        output_dir=str(out), num_channels=4, radial_hidden=[8], cutoff=3.5, epochs=4, batch_size=2,
        valid_fraction=0.34, lr=0.02, seed=3,
    )
    options.update(changes)
    return TrainConfig(**options)


def read_state(run: Path) -> dict:
    return torch.load(run / "state.pt", weights_only=True)


def test_training_reduces_the_loss(tmp_path):
    train(tiny_config(tmp_path / "run", epochs=6))
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert len(rows) == 6
    first, last = float(rows[0]["train_loss"]), float(rows[-1]["train_loss"])
    assert last < 0.5 * first
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    train(tiny_config(straight, epochs=3))
    interrupted = tmp_path / "interrupted"
    train(tiny_config(interrupted, epochs=1))  # "killed" after the first epoch's state was written
    with pytest.raises(GauntError, match="--resume"):
        train(tiny_config(interrupted, epochs=3))
    train(tiny_config(interrupted, epochs=3), resume=True)
    a, b = read_state(straight), read_state(interrupted)
    assert a["epoch"] == b["epoch"] == 3
    for pa, pb in zip(a["params"], b["params"]):
        assert torch.equal(pa, pb)
    for pa, pb in zip(a["ema"], b["ema"]):
        assert torch.equal(pa, pb)
    def losses(state):
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in json.loads(state["history"])]

    assert losses(a) == losses(b)


def test_same_seed_same_model_and_global_rng_untouched(tmp_path):
    before = torch.random.get_rng_state().clone()
    train(tiny_config(tmp_path / "a", epochs=1))
    train(tiny_config(tmp_path / "b", epochs=1))
    assert torch.equal(torch.random.get_rng_state(), before)
    for pa, pb in zip(read_state(tmp_path / "a")["params"], read_state(tmp_path / "b")["params"]):
        assert torch.equal(pa, pb)


def test_best_checkpoint_reloads_to_identical_predictions(tmp_path):
    config = tiny_config(tmp_path / "run", epochs=2)
    train(config, command="pytest")
    best = tmp_path / "run" / "best.safetensors"
    header = read_metadata(best)
    assert header["training"]["command"] == "pytest"
    assert header["training"]["data"] == config.train_files
    recomputed = validate_checkpoint(str(best), config, dtype=torch.float32)
    for key in ("valid_loss", "all/forces_mae", "all/energy_mae"):
        assert recomputed[key] == pytest.approx(header["metrics"][key], rel=1e-5, abs=1e-9)


def test_message_scales_are_fitted_and_saved_unless_switched_off(tmp_path):
    train(tiny_config(tmp_path / "on", epochs=1))
    train(tiny_config(tmp_path / "off", epochs=1, normalize_messages=False))
    on = read_metadata(tmp_path / "on" / "best.safetensors")["model_config"]
    off = read_metadata(tmp_path / "off" / "best.safetensors")["model_config"]
    assert len(on["message_scales"]) == 2 and all(s > 1.0 for s in on["message_scales"])
    assert "message_scales" not in off  # what runs before the option wrote: they still resume


def test_e0_fit_recovers_per_element_constants():
    e0 = {1: -13.6, 6: -1029.5, 8: -2042.0}
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(12):
        counts = rng.integers(1, 6, size=3)
        numbers = np.repeat([1, 6, 8], counts)
        energy = float(sum(e0[int(z)] for z in numbers))
        frames.append(LabelledStructure(Atoms(numbers=numbers, positions=rng.normal(size=(len(numbers), 3))), energy=energy))
    fitted = fit_atomic_energies(frames, [1, 6, 8])
    for z in e0:
        assert fitted[z] == pytest.approx(e0[z], abs=1e-8)
    # a known (isolated-atom) E0 is kept, the others are fitted around it
    fitted = fit_atomic_energies(frames, [1, 6, 8], known={8: e0[8]})
    assert fitted[8] == e0[8] and fitted[1] == pytest.approx(e0[1], abs=1e-8)


def test_bad_options_are_named():
    with pytest.raises(GauntError, match="scheduler"):
        TrainConfig(train_files=["x.xyz"], scheduler="linear")
    with pytest.raises(GauntError, match="unknown training options"):
        TrainConfig.from_dict({"train_files": ["x.xyz"], "num_chanels": 4})
