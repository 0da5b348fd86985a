"""GauntCalculator on CUDA: the same physics as on the CPU, on the card.

Every test here needs a CUDA device (marker ``cuda``, skipped elsewhere and kept out of the
default run): ``pytest -m cuda``. The CPU references use plain torch ops (``fused=False``), the
same function as the CUDA path, so float64 agrees to rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.io import read

from gaunt_md.calculator import GauntCalculator
from gaunt_md.errors import DeviceError
from gaunt_md.testing import (
    assert_batch_equals_single,
    assert_equivariant,
    assert_forces_match_fd,
    assert_stress_match_fd,
    evaluate,
    example_mixed_structures,
    example_molecule,
    example_triclinic_cell,
    random_rotation,
)

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _cuda(path, dtype="float64", **kwargs) -> GauntCalculator:
    calc = GauntCalculator(path, device="cuda", dtype=dtype, **kwargs)
    assert next(calc.potential.parameters()).is_cuda
    assert calc.fused is False  # the fused kernels are CPU code
    return calc


@pytest.mark.parametrize("dtype, atol", [("float64", 1e-9), ("float32", 5e-5)])
def test_cuda_matches_cpu(tiny_model_path, rng, dtype, atol):
    cpu = GauntCalculator(tiny_model_path, device="cpu", dtype=dtype, fused=False)
    gpu = _cuda(tiny_model_path, dtype)
    structures = example_mixed_structures(rng)
    for a, b, atoms in zip(cpu.calculate_batch(structures), gpu.calculate_batch(structures), structures):
        assert b["energy"] == pytest.approx(a["energy"], abs=atol * len(atoms))
        assert isinstance(b["forces"], np.ndarray)  # copied back to the host
        np.testing.assert_allclose(b["forces"], a["forces"], atol=atol * 10)
        if "stress" in a:
            np.testing.assert_allclose(b["stress"], a["stress"], atol=atol)
    single = evaluate(gpu, structures[1], ["energy", "forces", "stress"])
    assert single["energy"] == pytest.approx(cpu.calculate_batch([structures[1]])[0]["energy"], abs=atol * 8)


@pytest.mark.parametrize("name", ["gaunt-mlearn", "gaunt-3bpa", "gaunt-rmd17-aspirin"])
def test_cuda_shipped_models_match_cpu(name):
    """The shipped checkpoints on the card: float64 to rounding, float32 to its precision."""
    if name == "gaunt-mlearn":
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.05, seed=1)
    else:
        atoms = example_molecule() if name == "gaunt-3bpa" else read(FIXTURES / "rmd17_aspirin_3.xyz", 0)
    props = ["energy", "energies", "forces"] + (["stress"] if atoms.pbc.all() else [])
    ref = evaluate(GauntCalculator(name, device="cpu", dtype="float64", fused=False), atoms, props)
    for dtype, tol in (("float64", 1e-9), ("float32", 2e-4)):
        got = evaluate(_cuda(name, dtype), atoms, props)
        assert got["energy"] == pytest.approx(ref["energy"], abs=tol * len(atoms)), dtype
        np.testing.assert_allclose(got["energies"], ref["energies"], atol=tol * 10)
        np.testing.assert_allclose(got["forces"], ref["forces"], atol=tol * 10)
        if "stress" in ref:
            np.testing.assert_allclose(got["stress"], ref["stress"], atol=tol)


def test_cuda_forces_and_stress_are_derivatives(tiny_model_path, rng):
    calc = _cuda(tiny_model_path)
    cell = example_triclinic_cell(rng, rattle=0.1)
    assert_forces_match_fd(calc, cell, atol=1e-6, rtol=1e-5)
    assert_stress_match_fd(calc, cell)
    assert_forces_match_fd(calc, example_molecule(), indices=[0, 3, 7])


def test_cuda_equivariance(tiny_model_path, rng):
    calc = _cuda(tiny_model_path)
    matrix = random_rotation(rng)
    assert_equivariant(calc, example_triclinic_cell(rng), matrix, translation=(0.3, -1.2, 2.0))
    assert_equivariant(calc, example_molecule(), -matrix)  # rotation and inversion


def test_cuda_batch_equals_single(tiny_model_path, rng):
    """Also across several model calls: the batch bound splits the list."""
    calc = _cuda(tiny_model_path, max_batch_atoms=40)
    assert_batch_equals_single(calc, example_mixed_structures(rng), atol_energy=1e-10, atol_forces=1e-10, atol_stress=1e-10)


def test_cuda_float32_and_float64_side_by_side(tiny_model_path, rng):
    atoms = example_triclinic_cell(rng)
    e64 = evaluate(_cuda(tiny_model_path, "float64"), atoms)["energy"]
    e32 = evaluate(_cuda(tiny_model_path, "float32"), atoms)["energy"]
    assert e32 == pytest.approx(e64, abs=1e-4 * len(atoms))
    assert torch.get_default_dtype() == torch.float32  # nothing global changed


def test_cuda_nve_conserves_energy():
    """200 steps of VelocityVerlet with the default model on the card (float64)."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(5))
    atoms.calc = _cuda("default")
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=10)
    dyn.run(200)
    drift = (max(energies) - min(energies)) / len(atoms)
    assert drift < 2e-4, f"total energy wandered {drift:.2e} eV/atom in 200 steps"


def test_cuda_torchscript_export_runs_on_the_card(tiny_model_path, tmp_path):
    """The exported module (the LAMMPS route) moved to the card gives the calculator's numbers."""
    from gaunt_md.data.batch import collate
    from gaunt_md.data.graph import atoms_to_graph
    from gaunt_md.model.derivatives import edge_vectors
    from gaunt_md.model.export import export_torchscript

    module = torch.jit.load(str(export_torchscript(tiny_model_path, tmp_path / "model.pt")), map_location="cuda")
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=2)
    calc = _cuda(tiny_model_path)
    batch = collate([atoms_to_graph(atoms, calc.cutoff)])
    dev = torch.device("cuda")
    vec = edge_vectors(batch.positions.to(dev), batch.cell.to(dev), batch.edge_index.to(dev),
                       batch.unit_shifts.to(dev), batch.batch.to(dev))
    res = module(batch.numbers.to(dev), batch.edge_index.to(dev), vec, batch.batch.to(dev), 1, True, True, False)
    ref = evaluate(calc, atoms, ["energy", "forces"])
    assert float(res["energy"][0]) == pytest.approx(ref["energy"], abs=1e-10)
    np.testing.assert_allclose(res["forces"].cpu().numpy(), ref["forces"], atol=1e-10)


def test_cuda_index_out_of_range(tiny_model_path):
    with pytest.raises(DeviceError, match="CUDA devices exist"):
        GauntCalculator(tiny_model_path, device=f"cuda:{torch.cuda.device_count()}")
