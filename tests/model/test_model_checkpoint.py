"""Checkpoints: exact round trips, safe loading (no unpickling) and clear errors for bad files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gaunt_md.errors import CheckpointError
from gaunt_md.model.checkpoint import FORMAT_VERSION, load_checkpoint, read_metadata, save_checkpoint
from gaunt_md.testing import TINY_ELEMENTS, evaluate, example_molecule, example_triclinic_cell, tiny_checkpoint


class _Payload:
    """Unpickling this object writes ``marker``: a stand-in for a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _malicious(path: Path, marker: Path, *, how: str) -> Path:
    payload = {"model_config": {"elements": [1]}, "state_dict": {}, "evil": _Payload(marker)}
    if how == "torch":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    return path


def _rewrite_header(src: Path, dst: Path, **changes) -> Path:
    header = read_metadata(src)
    for key, value in changes.items():
        if key == "model_config":
            header["model_config"] = {**header["model_config"], **value}
        else:
            header[key] = value
    save_file(load_file(str(src)), str(dst), metadata={"gaunt_md": json.dumps(header)})
    return dst


# ---------------------------------------------------------------------------------------------
# round trip


def test_round_trip_gives_identical_predictions(tiny_model_path, tmp_path, rng):
    from gaunt_md.calculator import GauntCalculator

    model, header = load_checkpoint(tiny_model_path)
    assert header["format_version"] == FORMAT_VERSION
    assert header["training"]["seed"] == 0 and header["elements"] == ["H", "C", "N", "O", "Si", "Cu"]
    copy = save_checkpoint(tmp_path / "copy.safetensors", model, note={"k": [1, 2]})
    assert read_metadata(copy)["note"] == {"k": [1, 2]}
    reloaded, _ = load_checkpoint(copy)
    assert reloaded.config == model.config
    for (name, a), (name_b, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert name == name_b and torch.equal(a, b), name

    atoms_list = [example_molecule(), example_triclinic_cell(rng)]
    for atoms in atoms_list:
        props = ["energy", "energies", "forces"] + (["stress"] if atoms.pbc.all() else [])
        a = evaluate(GauntCalculator(tiny_model_path, device="cpu"), atoms, props)
        b = evaluate(GauntCalculator(copy, device="cpu"), atoms, props)
        for key in props:
            assert np.array_equal(a[key], b[key]), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_load_respects_dtype_and_eval_mode(tiny_model_path, dtype):
    default = torch.get_default_dtype()
    model, _ = load_checkpoint(tiny_model_path, dtype=dtype)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert all(b.dtype in (dtype, torch.int64) for b in model.buffers())
    assert torch.get_default_dtype() == default  # loading never changes the global default


def test_tiny_checkpoint_is_deterministic_and_leaves_global_rng_alone(tmp_path):
    state = torch.random.get_rng_state()
    a = tiny_checkpoint(tmp_path / "a.safetensors", TINY_ELEMENTS, seed=3)
    b = tiny_checkpoint(tmp_path / "b.safetensors", TINY_ELEMENTS, seed=3)
    c = tiny_checkpoint(tmp_path / "c.safetensors", TINY_ELEMENTS, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    ta, tb, tc = load_file(str(a)), load_file(str(b)), load_file(str(c))
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not all(torch.equal(ta[k], tc[k]) for k in ta)


def test_atomic_energies_shift_energies_exactly(tmp_path, rng):
    """Same weights, different E0: energies differ by sum_i dE0(z_i); forces are unchanged."""
    from gaunt_md.calculator import GauntCalculator

    e0 = tuple(float(k) for k in range(len(TINY_ELEMENTS)))
    base = tiny_checkpoint(tmp_path / "base.safetensors", TINY_ELEMENTS, seed=5)
    shifted = tiny_checkpoint(tmp_path / "shifted.safetensors", TINY_ELEMENTS, seed=5, atomic_energies=e0)
    atoms = example_molecule()
    a = evaluate(GauntCalculator(base, device="cpu"), atoms, ["energy", "energies", "forces"])
    b = evaluate(GauntCalculator(shifted, device="cpu"), atoms, ["energy", "energies", "forces"])
    index = {z: k for k, z in enumerate(TINY_ELEMENTS)}
    d_e0 = np.array([e0[index[z]] + 0.1 * z for z in atoms.numbers])  # tiny_config's E0 is -0.1 Z
    np.testing.assert_allclose(b["energies"] - a["energies"], d_e0, atol=1e-10)
    assert b["energy"] - a["energy"] == pytest.approx(d_e0.sum(), abs=1e-9)
    np.testing.assert_array_equal(a["forces"], b["forces"])


# ---------------------------------------------------------------------------------------------
# safety: pickles are never loaded


@pytest.mark.parametrize("how, suffix", [("torch", ".pt"), ("torch", ".safetensors"), ("pickle", ".pkl")])
def test_pickle_is_refused_without_running_code(tmp_path, how, suffix):
    from gaunt_md.calculator import GauntCalculator

    # control: the payload is live (unpickling a twin file does run code)
    control_marker = tmp_path / "control_marker"
    control = _malicious(tmp_path / "control.bin", control_marker, how=how)
    if how == "torch":
        torch.load(control, weights_only=False)
    else:
        with open(control, "rb") as f:
            pickle.load(f)
    assert control_marker.exists()

    marker = tmp_path / "marker"
    path = _malicious(tmp_path / f"evil{suffix}", marker, how=how)
    with pytest.raises(CheckpointError, match="pickle|safetensors"):
        read_metadata(path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        GauntCalculator(path, device="cpu")
    assert not marker.exists(), "loading a pickled checkpoint ran code"


# ---------------------------------------------------------------------------------------------
# corrupt or inconsistent files


@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.001])
def test_truncated_file(tiny_model_path, tmp_path, fraction):
    data = tiny_model_path.read_bytes()
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        load_checkpoint(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.safetensors"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_unknown_format_version(tiny_model_path, tmp_path):
    path = _rewrite_header(tiny_model_path, tmp_path / "future.safetensors", format_version=99)
    with pytest.raises(CheckpointError, match=r"version 99.*version 1|99") as info:
        load_checkpoint(path)
    assert str(FORMAT_VERSION) in str(info.value)


def test_missing_header(tiny_model_path, tmp_path):
    path = tmp_path / "bare.safetensors"
    save_file(load_file(str(tiny_model_path)), str(path))
    with pytest.raises(CheckpointError, match="without a gaunt_md header"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"num_channels": 16}, "does not match"),
        ({"num_layers": 3}, "does not match"),
        ({"elements": [1, 6, 8]}, "does not match"),
        ({"l_max_hidden": 2}, "does not match"),
        ({"not_a_field": 1}, "invalid model_config"),
        ({"cutoff": -1.0}, "invalid model_config"),
    ],
)
def test_config_that_does_not_match_the_tensors(tiny_model_path, tmp_path, change, pattern):
    if "elements" in change:  # keep the config itself valid: E0 per element
        change = {**change, "atomic_energies": [0.0, 0.0, 0.0]}
    path = _rewrite_header(tiny_model_path, tmp_path / "mismatch.safetensors", model_config=change)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path)
    assert "mismatch.safetensors" in str(info.value)


def test_wrong_tensor_shape(tiny_model_path, tmp_path):
    tensors = load_file(str(tiny_model_path))
    name = next(iter(tensors))
    tensors[name] = torch.zeros(3, 3, dtype=torch.float64)
    path = tmp_path / "shape.safetensors"
    save_file(tensors, str(path), metadata={"gaunt_md": json.dumps(read_metadata(tiny_model_path))})
    with pytest.raises(CheckpointError, match=f"wrong shape.*{name}"):
        load_checkpoint(path)
