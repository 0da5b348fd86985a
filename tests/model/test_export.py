"""The TorchScript export (for libtorch/LAMMPS hosts) reloads and matches the eager calculator."""

from __future__ import annotations

import json

import numpy as np
import torch
from ase.build import bulk

from gaunt_md.data.batch import collate
from gaunt_md.data.graph import atoms_to_graph
from gaunt_md.model.derivatives import edge_vectors
from gaunt_md.model.export import export_torchscript


def test_exported_module_matches_the_calculator(tiny_model_path, tmp_path):
    """Against the calculator's torch-ops path: the export is the same function, to rounding."""
    from gaunt_md.calculator import GauntCalculator

    calc64 = GauntCalculator(tiny_model_path, device="cpu", dtype="float64", fused=False)
    out = export_torchscript(tiny_model_path, tmp_path / "model.pt")
    extra = {"metadata.json": ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["metadata.json"])
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=2)
    batch = collate([atoms_to_graph(atoms, meta["cutoff"])])
    vec = edge_vectors(batch.positions, batch.cell, batch.edge_index, batch.unit_shifts, batch.batch)
    res = module(batch.numbers, batch.edge_index, vec, batch.batch, 1, True, True, False)
    atoms.calc = calc64
    assert abs(float(res["energy"][0]) - atoms.get_potential_energy()) < 1e-10
    np.testing.assert_allclose(res["forces"].detach().numpy(), atoms.get_forces(), atol=1e-10)
    stress = -res["virial"][0].detach().numpy() / atoms.get_volume()
    np.testing.assert_allclose(stress, atoms.get_stress(voigt=False), atol=1e-10)
