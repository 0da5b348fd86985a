"""Shared fixtures: a tiny random Gaunt potential saved to a temporary checkpoint, and calculators.

The checkpoint is built once per session (:func:`gaunt_md.testing.tiny_checkpoint`, seed 0,
elements H C N O Si Cu, r_c = 4 Å); calculators are built fresh per test (loading is ~10 ms), so
no test sees another test's cached results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gaunt_md.testing import TINY_ELEMENTS, tiny_checkpoint

# The test models are tiny (a call is a few ms): intra-op threads only add synchronisation, and
# on a shared, loaded machine two spinning OpenMP threads made calls 5-40x slower (measured).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a ``.safetensors`` checkpoint of a random tiny GauntPotential (elements TINY_ELEMENTS)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny.safetensors", TINY_ELEMENTS, seed=0)


@pytest.fixture(params=["fused", "torch"])
def calc64(tiny_model_path: Path, request: pytest.FixtureRequest):
    """GauntCalculator of the tiny model on CPU in float64, once per path: the fused C++ kernels
    with tabulated radial weights (the default where a compiler exists) and plain torch ops (what
    training, TorchScript and CUDA run). The physics tests hold for both."""
    from gaunt_md.calculator import GauntCalculator

    return GauntCalculator(tiny_model_path, device="cpu", dtype="float64", fused=None if request.param == "fused" else False)


@pytest.fixture
def calc32(tiny_model_path: Path):
    """GauntCalculator of the tiny model on CPU in float32."""
    from gaunt_md.calculator import GauntCalculator

    return GauntCalculator(tiny_model_path, device="cpu", dtype="float32")


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded numpy Generator per test (no global seeds)."""
    return np.random.default_rng(20261)
