"""E(3) and permutation symmetry of energies, forces, stress and hidden features (gtp.md T5-T8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaunt_md.data import atoms_to_graph
from gaunt_md.model.checkpoint import load_checkpoint
from gaunt_md.testing import (
    assert_equivariant,
    evaluate,
    example_molecule,
    example_triclinic_cell,
    random_rotation,
    transform_atoms,
    wigner_d,
)


def _structures(rng: np.random.Generator):
    molecule = example_molecule()
    molecule.positions += rng.normal(scale=0.05, size=molecule.positions.shape)
    return {"molecule": molecule, "triclinic": example_triclinic_cell(rng, rattle=0.1)}


@pytest.mark.parametrize("kind", ["molecule", "triclinic"])
def test_rotation_invariance_and_equivariance(calc64, rng, kind):
    atoms = _structures(rng)[kind]
    for _ in range(2):
        assert_equivariant(calc64, atoms, random_rotation(rng), atol_energy=1e-12, atol_forces=1e-11, atol_stress=1e-12)


@pytest.mark.parametrize("kind", ["molecule", "triclinic"])
def test_rotation_float32(calc32, rng, kind):
    atoms = _structures(rng)[kind]
    assert_equivariant(calc32, atoms, random_rotation(rng), atol_energy=2e-6, atol_forces=2e-5, atol_stress=1e-6)


@pytest.mark.parametrize("kind", ["molecule", "triclinic"])
def test_inversion_and_reflection(calc64, rng, kind):
    """Inversion ``x -> -x`` (cell rows too, giving a left-handed cell) and a mirror plane."""
    atoms = _structures(rng)[kind]
    assert_equivariant(calc64, atoms, -np.eye(3), atol_energy=1e-12, atol_forces=1e-11, atol_stress=1e-12)
    mirror = np.diag([1.0, -1.0, 1.0]) @ random_rotation(rng)
    assert_equivariant(calc64, atoms, mirror, atol_energy=1e-12, atol_forces=1e-11, atol_stress=1e-12)


def test_inversion_keeping_the_cell(calc64, rng):
    """A lattice is centrosymmetric: ``x -> -x`` with the cell unchanged is the same crystal inverted."""
    atoms = _structures(rng)["triclinic"]
    inverted = atoms.copy()
    inverted.positions = -atoms.positions
    ref = evaluate(calc64, atoms, ["energy", "forces", "stress"])
    new = evaluate(calc64, inverted, ["energy", "forces", "stress"])
    assert new["energy"] == pytest.approx(ref["energy"], abs=1e-11)
    np.testing.assert_allclose(new["forces"], -ref["forces"], atol=1e-11)
    np.testing.assert_allclose(new["stress"], ref["stress"], atol=1e-12)


@pytest.mark.parametrize("kind", ["molecule", "triclinic"])
def test_permutation(calc64, rng, kind):
    atoms = _structures(rng)[kind]
    perm = rng.permutation(len(atoms))
    props = ["energy", "energies", "forces"] + (["stress"] if atoms.pbc.all() else [])
    ref = evaluate(calc64, atoms, props)
    new = evaluate(calc64, atoms[perm], props)
    assert new["energy"] == pytest.approx(ref["energy"], abs=1e-11)
    np.testing.assert_allclose(new["energies"], ref["energies"][perm], atol=1e-12)
    np.testing.assert_allclose(new["forces"], ref["forces"][perm], atol=1e-11)
    if "stress" in props:
        np.testing.assert_allclose(new["stress"], ref["stress"], atol=1e-12)


@pytest.mark.parametrize("kind", ["molecule", "triclinic"])
def test_translation(calc64, rng, kind):
    atoms = _structures(rng)[kind]
    assert_equivariant(calc64, atoms, np.eye(3), translation=rng.normal(scale=7.0, size=3), atol_energy=1e-12)


def test_wrapping_and_lattice_translations(calc64, rng):
    """Moving atoms by lattice vectors, or wrapping them into the cell, changes nothing."""
    atoms = _structures(rng)["triclinic"]
    atoms.positions += rng.normal(scale=3.0, size=3)  # some atoms now lie outside the cell
    props = ["energy", "energies", "forces", "stress"]
    ref = evaluate(calc64, atoms, props)
    wrapped = atoms.copy()
    wrapped.wrap()
    assert not np.allclose(wrapped.positions, atoms.positions)
    shifted = atoms.copy()
    shifted.positions += rng.integers(-2, 3, size=(len(atoms), 3)) @ atoms.cell.array
    for other in (wrapped, shifted):
        new = evaluate(calc64, other, props)
        assert new["energy"] == pytest.approx(ref["energy"], abs=1e-11)
        np.testing.assert_allclose(new["energies"], ref["energies"], atol=1e-11)
        np.testing.assert_allclose(new["forces"], ref["forces"], atol=1e-10)
        np.testing.assert_allclose(new["stress"], ref["stress"], atol=1e-12)


def test_hidden_features_are_equivariant(tiny_model_path, rng):
    """Every interaction-layer output ``[K, N, C]`` transforms with ``D(M)``, parity included (T5, T6)."""
    model, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
    atoms = _structures(rng)["molecule"]
    captured: dict[str, torch.Tensor] = {}

    def features(positions: np.ndarray) -> dict[str, torch.Tensor]:
        moved = atoms.copy()
        moved.positions = positions
        graph = atoms_to_graph(moved, model.cutoff)
        vectors = torch.as_tensor(graph.edge_vectors())
        captured.clear()
        with torch.no_grad():
            model(torch.tensor(graph.numbers), torch.tensor(graph.edge_index), vectors)
        return dict(captured)

    hooks = []
    for t, layer in enumerate(model.layers):
        for name in ("conv", "linear_message", "product", "linear_out"):
            module = getattr(layer, name)
            hooks.append(
                module.register_forward_hook(lambda m, i, o, key=f"layer{t}.{name}": captured.__setitem__(key, o))
            )
        hooks.append(layer.register_forward_hook(lambda m, i, o, key=f"layer{t}": captured.__setitem__(key, o)))
    try:
        ref = features(atoms.positions)
        assert len(ref) == 5 * len(model.layers)
        for matrix in (random_rotation(rng), -np.eye(3)):
            new = features(atoms.positions @ matrix.T)
            for key, h in ref.items():
                l_max = int(round(h.shape[0] ** 0.5)) - 1
                expected = torch.einsum("kj,jnc->knc", wigner_d(l_max, matrix), h)
                scale = h.abs().max().item()
                assert scale > 1e-3, f"{key} is (nearly) zero: the test would be vacuous"
                err = (new[key] - expected).abs().max().item()
                assert err <= 1e-11 * max(scale, 1.0), f"{key} (l_max {l_max}) not equivariant: error {err:.2e}"
    finally:
        for hook in hooks:
            hook.remove()
    # the first layer's hidden features carry 1o: under inversion they must flip sign
    assert ref["layer0"].shape[0] == 4


def test_transform_atoms_does_not_mutate(rng):
    atoms = _structures(rng)["triclinic"]
    before = atoms.positions.copy(), atoms.cell.array.copy()
    transform_atoms(atoms, random_rotation(rng), translation=(1.0, 2.0, 3.0))
    assert np.array_equal(atoms.positions, before[0]) and np.array_equal(atoms.cell.array, before[1])
