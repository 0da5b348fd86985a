"""Reusable checks of the physics contract of an ASE calculator, and tiny random potentials.

Everything here works with any ASE calculator (``GauntCalculator``, MACE, EMT, ...), except
:func:`tiny_checkpoint`, which builds a small random :class:`~gaunt_md.model.GauntPotential`.
The helpers never touch global state: randomness comes from an explicit
``numpy.random.Generator`` or a seed used inside :func:`torch.random.fork_rng`, and the
caller's ``Atoms`` are copied, never mutated.

=============================  ===============================================================
helper                         checks / returns
=============================  ===============================================================
random_rotation                Haar-random proper rotation ``[3, 3]`` (det +1)
wigner_d                       ``D(M)`` on features ``[..., (L+1)**2]`` (float64, exact)
transform_atoms                copy of ``atoms`` with positions and cell mapped by ``x -> M x``
evaluate                       ``{"energy", "energies", "forces", "stress"}`` as numpy copies
assert_equivariant             ``E(Mx) = E``, ``F -> F M^T``, ``sigma -> M sigma M^T``
finite_difference_forces       central differences of E (``ase.calculators.fd``), eV/Å
finite_difference_stress       central differences of E in strain, Voigt eV/Å^3 (ASE sign)
assert_forces_match_fd         analytic forces == finite differences
assert_stress_match_fd         analytic stress == finite differences
assert_batch_equals_single     ``calculate_batch`` == one ``calculate`` per structure
example_molecule               a 3BPA frame (C12H12N2O, 27 atoms), non-periodic
example_triclinic_cell         a sheared, rattled 8-atom Si/C cell (all cell angles != 90°)
tiny_config, tiny_checkpoint   a small random GauntPotential, saved with ``save_checkpoint``
=============================  ===============================================================
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

__all__ = [
    "TINY_ELEMENTS",
    "assert_batch_equals_single",
    "assert_equivariant",
    "assert_forces_match_fd",
    "assert_stress_match_fd",
    "evaluate",
    "example_molecule",
    "example_triclinic_cell",
    "finite_difference_forces",
    "finite_difference_stress",
    "random_rotation",
    "tiny_checkpoint",
    "tiny_config",
    "transform_atoms",
    "wigner_d",
]

#: Elements of the tiny test potential: H, C, N, O (3BPA, ethanol), Si, Cu (bulk tests).
TINY_ELEMENTS: tuple[int, ...] = (1, 6, 7, 8, 14, 29)


# ---------------------------------------------------------------------------------------------
# geometry


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A Haar-random proper rotation matrix ``[3, 3]`` (float64, det = +1)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))  # make the QR decomposition unique -> Haar measure
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def wigner_d(l_max: int, matrix: np.ndarray):
    """Block-diagonal representation ``D [(l_max+1)**2, (l_max+1)**2]`` (torch float64) of an O(3) matrix.

    In gaunt_md's SH basis (:func:`gaunt_md.so3.spherical_harmonics`, natural parity), a feature
    ``x [..., K]`` of the transformed structure is ``x @ D.T``. Fitted by least squares on the
    harmonics of random points, so it is exact to ~1e-14 in float64 (e3nn's ``D_from_matrix``
    uses float32 tables and is only good to ~1e-7). Inversion ``-I`` gives ``(-1)**l``.
    """
    import torch

    from gaunt_md.so3 import spherical_harmonics

    m = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(4 * (l_max + 1) ** 2 + 16, 3, generator=gen, dtype=torch.float64)
    y = spherical_harmonics(l_max, points)  # [P, K]
    y_rot = spherical_harmonics(l_max, points @ m.T)  # [P, K] = y @ D.T
    d_t = torch.linalg.lstsq(y, y_rot).solution  # [K, K] = D.T
    return d_t.T.contiguous()


def transform_atoms(atoms: Atoms, matrix: np.ndarray, translation: Sequence[float] = (0.0, 0.0, 0.0)) -> Atoms:
    """Copy of ``atoms`` with every position ``x -> M x + t`` and every cell row ``a -> M a``.

    ``M`` may be any orthogonal matrix (rotation, inversion ``-I``, reflection).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    out = atoms.copy()
    out.calc = None
    out.set_cell(atoms.cell.array @ matrix.T, scale_atoms=False)
    out.set_positions(atoms.positions @ matrix.T + np.asarray(translation, dtype=np.float64))
    return out


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate(calc: Any, atoms: Atoms, properties: Sequence[str] = ("energy", "forces")) -> dict[str, Any]:
    """Evaluate ``properties`` of a copy of ``atoms`` with ``calc``; numpy copies, ASE units.

    ``"stress"`` is returned as the 3x3 tensor ``[3, 3]`` (eV/Å^3); ``"energies"`` per atom.
    """
    work = atoms.copy()
    work.calc = calc
    out: dict[str, Any] = {}
    for name in properties:
        if name == "energy":
            out[name] = float(work.get_potential_energy())
        elif name == "energies":
            out[name] = np.array(work.get_potential_energies(), dtype=np.float64)
        elif name == "forces":
            out[name] = np.array(work.get_forces(), dtype=np.float64)
        elif name == "stress":
            out[name] = np.array(work.get_stress(voigt=False), dtype=np.float64)
        else:
            raise ValueError(f"evaluate: unknown property {name!r}; use energy, energies, forces, stress")
    return out


def assert_equivariant(
    calc: Any,
    atoms: Atoms,
    matrix: np.ndarray,
    *,
    translation: Sequence[float] = (0.0, 0.0, 0.0),
    atol_energy: float = 1e-9,
    atol_forces: float = 1e-9,
    atol_stress: float = 1e-9,
) -> None:
    """Assert ``E(M x + t) = E(x)``, ``F(M x + t) = F(x) M^T`` and ``sigma -> M sigma M^T``.

    Stress is checked only for fully periodic ``atoms``. Tolerances are absolute (eV, eV/Å,
    eV/Å^3); energy's tolerance is per atom.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    props = ["energy", "forces"] + (["stress"] if atoms.pbc.all() else [])
    ref = evaluate(calc, atoms, props)
    new = evaluate(calc, transform_atoms(atoms, matrix, translation), props)
    n = len(atoms)
    de = abs(new["energy"] - ref["energy"]) / n
    assert de <= atol_energy, f"energy per atom changed by {de:.3e} eV (tolerance {atol_energy:.1e})"
    df = np.abs(new["forces"] - ref["forces"] @ matrix.T).max()
    assert df <= atol_forces, f"forces not equivariant: max error {df:.3e} eV/Å (tolerance {atol_forces:.1e})"
    if "stress" in ref:
        ds = np.abs(new["stress"] - matrix @ ref["stress"] @ matrix.T).max()
        assert ds <= atol_stress, f"stress not equivariant: max error {ds:.3e} eV/Å^3 (tolerance {atol_stress:.1e})"


def finite_difference_forces(
    calc: Any, atoms: Atoms, eps: float = 1e-4, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Central-difference forces ``-(E(x+h) - E(x-h)) / 2h``, eV/Å (6 energy calls per atom).

    Returns ``[n_atoms, 3]``, or ``[len(indices), 3]`` for the atoms in ``indices`` only.
    """
    work = atoms.copy()
    work.calc = calc
    return np.asarray(calculate_numerical_forces(work, eps=eps, iatoms=indices), dtype=np.float64)


def finite_difference_stress(calc: Any, atoms: Atoms, eps: float = 1e-5) -> np.ndarray:
    """Central-difference stress ``(1/V) dE/d(strain)``, Voigt ``[6]`` eV/Å^3 (ASE sign; 12 energy calls)."""
    work = atoms.copy()
    work.calc = calc
    return np.asarray(calculate_numerical_stress(work, eps=eps, voigt=True), dtype=np.float64)


def assert_forces_match_fd(
    calc: Any,
    atoms: Atoms,
    *,
    eps: float = 1e-4,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    indices: Sequence[int] | None = None,
) -> None:
    """Assert analytic forces equal central finite differences: ``|F - F_fd| <= atol + rtol |F|max``.

    ``indices`` restricts the check to some atoms (finite differences cost 6 energies per atom).
    """
    analytic = evaluate(calc, atoms, ["forces"])["forces"]
    if indices is not None:
        analytic = analytic[list(indices)]
    numeric = finite_difference_forces(calc, atoms, eps, indices)
    err = np.abs(analytic - numeric).max()
    bound = atol + rtol * np.abs(analytic).max()
    assert err <= bound, f"forces differ from finite differences by {err:.3e} eV/Å (bound {bound:.3e})"


def assert_stress_match_fd(calc: Any, atoms: Atoms, *, eps: float = 1e-5, atol: float = 1e-7, rtol: float = 1e-5) -> None:
    """Assert analytic stress equals central finite differences in strain (Voigt, eV/Å^3)."""
    analytic = full_3x3_to_voigt_6_stress(evaluate(calc, atoms, ["stress"])["stress"])
    numeric = finite_difference_stress(calc, atoms, eps)
    err = np.abs(analytic - numeric).max()
    bound = atol + rtol * np.abs(analytic).max()
    assert err <= bound, (
        f"stress differs from finite differences by {err:.3e} eV/Å^3 (bound {bound:.3e}):\n"
        f"analytic {voigt_6_to_full_3x3_stress(analytic)}\nnumeric  {voigt_6_to_full_3x3_stress(numeric)}"
    )


def assert_batch_equals_single(
    calc: Any,
    atoms_list: Sequence[Atoms],
    *,
    atol_energy: float = 1e-10,
    atol_forces: float = 1e-10,
    atol_stress: float = 1e-10,
) -> list[dict[str, Any]]:
    """Assert ``calc.calculate_batch(atoms_list)`` equals one evaluation per structure; return the batch.

    Compares energy, per-atom energies, forces and (for periodic structures) Voigt stress.
    """
    batch = calc.calculate_batch(list(atoms_list), properties=("energy", "energies", "forces", "stress"))
    assert len(batch) == len(atoms_list), f"{len(batch)} results for {len(atoms_list)} structures"
    for k, (atoms, res) in enumerate(zip(atoms_list, batch)):
        props = ["energy", "energies", "forces"] + (["stress"] if atoms.pbc.all() else [])
        ref = evaluate(calc, atoms, props)
        assert abs(res["energy"] - ref["energy"]) <= atol_energy * len(atoms), (
            f"structure {k}: batch energy {res['energy']!r} != single {ref['energy']!r}"
        )
        assert res["energies"].shape == (len(atoms),) and np.allclose(res["energies"], ref["energies"], rtol=0, atol=atol_energy)
        assert res["forces"].shape == (len(atoms), 3), f"structure {k}: forces shape {res['forces'].shape}"
        df = np.abs(res["forces"] - ref["forces"]).max()
        assert df <= atol_forces, f"structure {k}: batch forces differ by {df:.3e} eV/Å"
        if "stress" in ref:
            ds = np.abs(res["stress"] - full_3x3_to_voigt_6_stress(ref["stress"])).max()
            assert ds <= atol_stress, f"structure {k}: batch stress differs by {ds:.3e} eV/Å^3"
        else:
            assert "stress" not in res, f"structure {k} is not periodic but got a stress"
    return batch


# ---------------------------------------------------------------------------------------------
# example structures

_FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "data" / "fixtures"
_SHARED_3BPA = Path("/work/shared/data/3bpa/train_300K.xyz")


def example_molecule() -> Atoms:
    """A 3BPA frame (C12H12N2O, 27 atoms, non-periodic, no cell), without labels or calculator.

    Read from the test fixtures of a source checkout (or the shared data folder); if neither
    exists, an ethanol molecule from ``ase.build`` is returned instead.
    """
    import ase.io

    for path in (_FIXTURES / "3bpa_train_300K_3.xyz", _SHARED_3BPA):
        if path.is_file():
            frame = ase.io.read(path, 0)
            return Atoms(numbers=frame.numbers, positions=frame.positions, pbc=False)
    from ase.build import molecule

    return molecule("CH3CH2OH")


def example_triclinic_cell(rng: np.random.Generator, *, rattle: float = 0.05) -> Atoms:
    """An 8-atom Si7C diamond cell under a general (shear + normal) strain, rattled: triclinic.

    Nearest-neighbour distances stay within about 2.1-2.6 Å.
    """
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    strain = np.eye(3) + rng.uniform(-0.06, 0.06, size=(3, 3))
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
    atoms.numbers[3] = 6
    return atoms


def example_mixed_structures(rng: np.random.Generator) -> list[Atoms]:
    """Seven structures that exercise batching: a molecule, a triclinic cell and its 2x2x2
    supercell, a 1-atom Cu cell smaller than the cutoff, a Cu slab (pbc T T F, no stress), a lone
    O atom (no neighbours) and the Si primitive cell."""
    from ase.build import bulk, fcc111

    triclinic = example_triclinic_cell(rng, rattle=0.1)
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
    slab.rattle(0.05, rng=rng)
    return [
        example_molecule(),
        triclinic,
        bulk("Cu", "fcc", a=3.6),
        triclinic.repeat((2, 2, 2)),
        slab,
        Atoms("O", positions=[[0.0, 0.0, 0.0]]),
        bulk("Si", "diamond", a=5.43),
    ]


# ---------------------------------------------------------------------------------------------
# tiny random potentials


def tiny_config(elements: Sequence[int] = TINY_ELEMENTS, **overrides: Any):
    """A small :class:`~gaunt_md.model.config.ModelConfig`: 8 channels, 2 layers, r_c = 4 Å, otherwise
    the production shape (edge l_max 3, hidden l_max 1, correlation 3, 8 Bessel functions).

    Distinct ``atomic_energies`` (``-0.1 * Z`` eV) make E0 bookkeeping visible in tests.
    ``overrides`` replace any field.
    """
    from gaunt_md.model.config import ModelConfig

    fields: dict[str, Any] = dict(
        elements=tuple(elements),
        cutoff=4.0,
        num_channels=8,
        l_max_edge=3,
        l_max_hidden=1,
        correlation=3,
        num_layers=2,
        num_bessel=8,
        radial_hidden=(16,),
        readout_hidden=8,
        avg_num_neighbors=10.0,
        atomic_energies=tuple(-0.1 * z for z in elements),
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def tiny_checkpoint(
    path: str | os.PathLike, elements: Sequence[int] = TINY_ELEMENTS, seed: int = 0, **overrides: Any
) -> Path:
    """Build a random tiny GauntPotential (:func:`tiny_config`) and save it to ``path``; return the path.

    The weights depend on ``seed`` only. The model is built inside :func:`torch.random.fork_rng`,
    so the caller's global torch RNG state is the same afterwards.
    """
    import torch

    from gaunt_md.model.checkpoint import save_checkpoint
    from gaunt_md.model.potential import GauntPotential

    config = tiny_config(elements, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = GauntPotential(config)
    return save_checkpoint(
        path,
        model,
        description="random tiny Gaunt potential for tests (untrained)",
        training={"seed": int(seed), "data": "none: random weights"},
    )
