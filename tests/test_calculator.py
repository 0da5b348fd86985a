"""GauntCalculator: the ASE calculator contract (ecosystem.md 3.1), batching, errors, caching."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.calculator import (
    BaseCalculator,
    Calculator,
    CalculatorSetupError,
    InputError,
    PropertyNotImplementedError,
)

from gaunt_md.calculator import GauntCalculator
from gaunt_md.errors import DeviceError, ModelNotFoundError, StructureError, UnknownElementError
from gaunt_md.testing import (
    assert_batch_equals_single,
    evaluate,
    example_mixed_structures,
    example_molecule,
    example_triclinic_cell,
)


class _CountingForceField:
    """Wraps ``calc.forcefield`` to count model calls."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def _count_calls(calc: GauntCalculator) -> _CountingForceField:
    counter = _CountingForceField(calc.forcefield)
    calc.forcefield = counter
    return counter


# ---------------------------------------------------------------------------------------------
# ASE contract


def test_results_follow_the_ase_contract(calc64, rng):
    atoms = example_triclinic_cell(rng)
    atoms.calc = calc64
    energy = atoms.get_potential_energy()
    assert isinstance(energy, float)
    assert atoms.get_potential_energy(force_consistent=True) == energy  # free_energy == energy
    forces = atoms.get_forces()
    assert forces.shape == (8, 3) and forces.dtype == np.float64
    energies = atoms.get_potential_energies()
    assert energies.shape == (8,) and energies.sum() == pytest.approx(energy, abs=1e-10)
    stress = atoms.get_stress()
    assert stress.shape == (6,) and stress.dtype == np.float64
    full = atoms.get_stress(voigt=False)
    np.testing.assert_array_equal(full, full.T)
    np.testing.assert_array_equal(stress, full[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])  # xx yy zz yz xz xy
    assert {"energy", "free_energy", "energies", "forces", "stress"} <= set(GauntCalculator.implemented_properties)


def test_class_attributes_are_not_mutated(tiny_model_path):
    before = (list(GauntCalculator.implemented_properties), list(Calculator.implemented_properties))
    base_before = list(getattr(BaseCalculator, "implemented_properties", []))
    for dtype in ("float32", "float64"):
        GauntCalculator(tiny_model_path, device="cpu", dtype=dtype)
    assert (GauntCalculator.implemented_properties, Calculator.implemented_properties) == tuple(before)
    assert list(getattr(BaseCalculator, "implemented_properties", [])) == base_before


def test_inputs_are_not_mutated(calc64, rng):
    atoms = example_triclinic_cell(rng)
    atoms.positions += 20.0  # outside the cell: must not be wrapped in place
    snapshot = (atoms.positions.copy(), atoms.cell.array.copy(), atoms.numbers.copy(), atoms.pbc.copy())
    atoms.calc = calc64
    atoms.get_forces()
    atoms.get_stress()
    calc64.calculate_batch([atoms, atoms])
    assert np.array_equal(atoms.positions, snapshot[0]) and np.array_equal(atoms.cell.array, snapshot[1])
    assert np.array_equal(atoms.numbers, snapshot[2]) and np.array_equal(atoms.pbc, snapshot[3])


def test_stress_needs_a_fully_periodic_cell(calc64):
    molecule = example_molecule()
    molecule.calc = calc64
    molecule.get_potential_energy()
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        molecule.get_stress()
    slab = fcc111("Cu", size=(2, 2, 2), vacuum=4.0)
    slab.calc = calc64
    assert np.isfinite(slab.get_forces()).all()
    with pytest.raises(PropertyNotImplementedError, match="pbc"):
        slab.get_stress()


def test_caching_follows_check_state(calc64, rng):
    counter = _count_calls(calc64)
    atoms = example_triclinic_cell(rng)
    atoms.calc = calc64
    e1 = atoms.get_potential_energy()
    assert counter.calls == 1
    assert atoms.get_potential_energy() == e1 and counter.calls == 1
    atoms.get_forces()
    atoms.get_potential_energies()
    atoms.get_stress()  # periodic: computed in the same pass (cell filters ask for F, then sigma)
    assert counter.calls == 1, "energy, forces, per-atom energies and stress come from one call"
    atoms.set_positions(atoms.get_positions())  # same positions: nothing changed
    atoms.get_potential_energy()
    assert counter.calls == 1

    atoms.positions[0, 0] += 1e-3
    e2 = atoms.get_potential_energy()
    assert counter.calls == 2 and e2 != e1
    atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=True)
    atoms.get_potential_energy()
    assert counter.calls == 3
    atoms.numbers[1] = 6
    atoms.get_potential_energy()
    assert counter.calls == 4
    calc64.reset()
    atoms.get_potential_energy()
    assert counter.calls == 5



def test_check_state_agrees_with_ase(calc64, rng):
    """The fast path for identical atoms reports what ASE's compare_atoms reports, change by change."""
    from ase.calculators.calculator import compare_atoms

    atoms = example_triclinic_cell(rng)
    atoms.calc = calc64
    atoms.get_potential_energy()
    edits = {
        "nothing": lambda a: None,
        "momenta (not a system change)": lambda a: a.set_momenta(np.ones((len(a), 3))),
        "position by 1e-12 Å": lambda a: a.positions.__setitem__((0, 1), a.positions[0, 1] + 1e-12),
        "position by 1e-17 Å (within ASE's tolerance)": lambda a: a.positions.__setitem__((0, 1), a.positions[0, 1] + 1e-17),
        "cell": lambda a: a.set_cell(a.cell.array * 1.001),
        "pbc": lambda a: a.set_pbc([True, True, False]),
        "numbers": lambda a: a.numbers.__setitem__(0, 6),
        "initial charges": lambda a: a.set_initial_charges(np.full(len(a), 0.5)),
        "initial magnetic moments": lambda a: a.set_initial_magnetic_moments(np.ones(len(a))),
    }
    for name, edit in edits.items():
        changed = atoms.copy()
        edit(changed)
        assert sorted(calc64.check_state(changed)) == sorted(compare_atoms(calc64.atoms, changed)), name
    assert calc64.check_state(atoms.copy()) == []
    assert "positions" in calc64.check_state(atoms[:-1])
def test_cell_filter_step_costs_one_model_call(calc64, rng):
    from ase.filters import FrechetCellFilter

    counter = _count_calls(calc64)
    atoms = example_triclinic_cell(rng)
    atoms.calc = calc64
    filtered = FrechetCellFilter(atoms)
    filtered.get_forces()
    filtered.get_potential_energy()
    assert counter.calls == 1


def test_parameters_are_json_serialisable(calc64, tmp_path, rng):
    text = json.dumps(calc64.parameters)
    params = json.loads(text)
    assert params["arch"] == "gaunt_md" and params["dtype"] == "float64" and params["device"] == "cpu"
    json.dumps(calc64.todict())
    # and a trajectory with the calculator's results round-trips
    from ase.io import Trajectory, read

    atoms = example_triclinic_cell(rng)
    atoms.calc = calc64
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    with Trajectory(tmp_path / "run.traj", "w") as traj:
        traj.write(atoms)
    back = read(tmp_path / "run.traj")
    assert back.get_potential_energy() == energy
    np.testing.assert_array_equal(back.get_forces(), forces)
    np.testing.assert_array_equal(back.get_stress(), stress)


# ---------------------------------------------------------------------------------------------
# dtypes


def test_float32_and_float64_side_by_side(calc32, calc64, rng):
    default = torch.get_default_dtype()
    structures = [example_molecule(), example_triclinic_cell(rng), bulk("Cu", "fcc", a=3.6)]
    first64 = [evaluate(calc64, a, ["energy", "forces"]) for a in structures]
    for atoms, ref in zip(structures, first64):
        props = ["energy", "energies", "forces"] + (["stress"] if atoms.pbc.all() else [])
        r32 = evaluate(calc32, atoms, props)
        r64 = evaluate(calc64, atoms, props)
        assert r64["energy"] == ref["energy"]  # calc64 unaffected by calc32 in between
        assert r32["energy"] == pytest.approx(r64["energy"], abs=1e-5 * len(atoms))
        np.testing.assert_allclose(r32["energies"], r64["energies"], atol=1e-5)
        assert r32["forces"].dtype == np.float64
        np.testing.assert_allclose(r32["forces"], r64["forces"], atol=1e-5 * max(1.0, np.abs(r64["forces"]).max()))
        if "stress" in props:
            np.testing.assert_allclose(r32["stress"], r64["stress"], atol=1e-6)
    assert torch.get_default_dtype() == default
    assert calc32.parameters["dtype"] == "float32" and calc64.parameters["dtype"] == "float64"
    assert {p.dtype for p in calc32.potential.parameters()} == {torch.float32}
    assert {p.dtype for p in calc64.potential.parameters()} == {torch.float64}


def test_float32_keeps_large_atomic_energies_exact(tmp_path):
    """E0 is added in float64: a float32 model of a heavy molecule keeps sub-meV total energies."""
    from gaunt_md.testing import TINY_ELEMENTS, tiny_checkpoint

    e0 = (-13.587222780835477, -1029.4889999855063, -1484.9814568572233, -2041.9816003861047, -158.4, -1500.1)
    path = tiny_checkpoint(tmp_path / "e0.safetensors", TINY_ELEMENTS, seed=2, atomic_energies=e0)
    atoms = example_molecule()
    e32 = evaluate(GauntCalculator(path, device="cpu", dtype="float32"), atoms, ["energy"])["energy"]
    e64 = evaluate(GauntCalculator(path, device="cpu", dtype="float64"), atoms, ["energy"])["energy"]
    assert abs(e64) > 1e4
    assert e32 == pytest.approx(e64, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# batches


def test_batch_equals_single_one_batch(calc64, rng):
    counter = _count_calls(calc64)
    structures = example_mixed_structures(rng)
    results = assert_batch_equals_single(calc64, structures, atol_energy=1e-10, atol_forces=1e-10, atol_stress=1e-11)
    assert counter.calls == 1 + len(structures)  # one batched call, then the single references
    assert [("stress" in r) for r in results] == [bool(a.pbc.all()) for a in structures]


def test_batch_equals_single_many_batches(tiny_model_path, rng):
    calc = GauntCalculator(tiny_model_path, device="cpu", dtype="float64", max_batch_atoms=30)
    counter = _count_calls(calc)
    structures = example_mixed_structures(rng)
    calc.calculate_batch(structures)
    n_batches = counter.calls
    assert n_batches >= 4, f"max_batch_atoms=30 should split {sum(map(len, structures))} atoms; got {n_batches} calls"
    assert_batch_equals_single(calc, structures, atol_energy=1e-10, atol_forces=1e-10, atol_stress=1e-11)

    edges_limited = GauntCalculator(tiny_model_path, device="cpu", dtype="float64", max_batch_edges=300)
    counter = _count_calls(edges_limited)
    batch = edges_limited.calculate_batch(structures)
    assert counter.calls >= 3
    reference = calc.calculate_batch(structures)
    for a, b in zip(batch, reference):
        assert a["energy"] == pytest.approx(b["energy"], abs=1e-10)


def test_batch_float32(calc32, rng):
    assert_batch_equals_single(calc32, example_mixed_structures(rng), atol_energy=1e-5, atol_forces=1e-5, atol_stress=1e-6)


def test_batch_options(calc64, rng):
    structures = example_mixed_structures(rng)[:3]
    no_stress = calc64.calculate_batch(structures, properties=("energy", "forces"))
    assert all("stress" not in r for r in no_stress)
    with_bar = calc64.calculate_batch(structures, progress=True)
    assert [r["energy"] for r in with_bar] == [r["energy"] for r in no_stress]
    # results are independent arrays, not views of one buffer
    with_bar[1]["forces"][:] = 0.0
    assert np.abs(calc64.calculate_batch(structures)[1]["forces"]).max() > 0
    with pytest.raises(PropertyNotImplementedError, match="dipole"):
        calc64.calculate_batch(structures, properties=("energy", "dipole"))


# ---------------------------------------------------------------------------------------------
# errors


def test_unknown_element_lists_missing_and_covered(calc64):
    atoms = Atoms("FeAuC", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0]])
    atoms.calc = calc64
    with pytest.raises(UnknownElementError) as info:
        atoms.get_potential_energy()
    message = str(info.value)
    assert "['Fe', 'Au']" in message or "['Au', 'Fe']" in message
    assert "['H', 'C', 'N', 'O', 'Si', 'Cu']" in message
    assert isinstance(info.value, InputError)
    with pytest.raises(UnknownElementError, match=r"structure 1"):
        calc64.calculate_batch([example_molecule(), atoms])


def test_overlapping_atoms(calc64):
    pair = Atoms("CO", positions=[[0, 0, 0], [0.2, 0, 0]])
    with pytest.raises(StructureError, match=r"atoms 0 and 1 are 0.2000 Å apart"):
        evaluate(calc64, pair, ["energy"])
    thin = Atoms("Cu", cell=[0.3, 4.0, 4.0], pbc=True)  # the atom overlaps its own image
    with pytest.raises(StructureError, match="its own periodic image"):
        evaluate(calc64, thin, ["energy"])


def test_nan_positions_and_inf_cell(calc64, rng):
    atoms = example_triclinic_cell(rng)
    bad = atoms.copy()
    bad.positions[2, 1] = np.nan
    with pytest.raises(StructureError, match="(?i)nan"):
        evaluate(calc64, bad, ["energy"])
    bad = atoms.copy()
    cell = bad.cell.array.copy()
    cell[1, 1] = np.inf
    bad.set_cell(cell, scale_atoms=False)
    with pytest.raises(StructureError, match="(?i)inf|finite"):
        evaluate(calc64, bad, ["energy"])
    with pytest.raises(StructureError, match="no atoms"):
        calc64.calculate_batch([Atoms()])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda(tiny_model_path):
    with pytest.raises(DeviceError, match="CUDA is not available") as info:
        GauntCalculator(tiny_model_path, device="cuda")
    assert isinstance(info.value, CalculatorSetupError)
    with pytest.raises(DeviceError):
        GauntCalculator(tiny_model_path, device="cuda:1")


@pytest.mark.parametrize("kwargs, pattern", [({"device": "tpu"}, "device"), ({"dtype": "float16"}, "float32")])
def test_bad_device_or_dtype(tiny_model_path, kwargs, pattern):
    with pytest.raises(DeviceError, match=pattern):
        GauntCalculator(tiny_model_path, **kwargs)


def test_unknown_model_lists_available(tiny_model_path, tmp_path, monkeypatch):
    from gaunt_md.potentials import available_models

    shipped = tmp_path / "shipped"
    (shipped / "tiny-test-model").mkdir(parents=True)
    shutil.copy(tiny_model_path, shipped / "tiny-test-model" / "model.safetensors")
    monkeypatch.setenv("GAUNT_MD_POTENTIALS", str(shipped))
    names = available_models()
    assert "tiny-test-model" in names
    with pytest.raises(ModelNotFoundError) as info:
        GauntCalculator("no-such-model", device="cpu")
    message = str(info.value)
    assert "'no-such-model'" in message
    assert all(name in message for name in names), message
    # and a shipped name resolves
    calc = GauntCalculator("tiny-test-model", device="cpu")
    assert calc.parameters["model"] == "tiny-test-model"


@pytest.mark.parametrize("fused", [None, False])
def test_kept_neighbour_list_gives_the_same_md(tiny_model_path, fused):
    """A kept neighbour list (Verlet list) changes nothing but the cost: 40 NVE steps of a Si
    cell, energies, forces and stress as with a fresh search every call. A thin skin (0.1 Å)
    so that the run also goes through several new searches."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=3)
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(4))
    runs = {}
    for skin in (0.1, 0.0):
        calc = GauntCalculator(tiny_model_path, device="cpu", dtype="float64", fused=fused, skin=skin)
        moving = atoms.copy()
        moving.calc = calc
        trajectory = []
        dyn = VelocityVerlet(moving, timestep=2.0 * units.fs)
        for _ in range(40):
            dyn.run(1)
            trajectory.append((moving.get_potential_energy(), moving.get_forces().copy(), moving.get_stress().copy()))
        runs[skin] = (trajectory, calc.neighbors.searches)
    for (e, f, s), (e0, f0, s0) in zip(runs[0.1][0], runs[0.0][0]):
        assert e == pytest.approx(e0, abs=1e-10)
        np.testing.assert_allclose(f, f0, atol=1e-10)
        np.testing.assert_allclose(s, s0, atol=1e-12)
    assert runs[0.0][1] == 41  # every call
    assert 3 <= runs[0.1][1] <= 30, runs[0.1][1]  # new searches, and calls served from the kept list
    assert np.abs(runs[0.1][0][-1][0] - runs[0.1][0][0][0]) > 1e-4  # the atoms did move
