"""A restarted MD run equals the uninterrupted one (same seed), frame by frame, with no duplicate
or missing trajectory frames or stats rows."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.calculators.emt import EMT

from gaunt_md.drivers import run_md
from gaunt_md.drivers.md_files import list_restarts, read_stats
from gaunt_md.errors import GauntError


class CrashingEMT(EMT):
    """EMT that raises after ``fail_after`` evaluations: a run killed mid-way."""

    def __init__(self, fail_after: int):
        super().__init__()
        self.calls, self.fail_after = 0, fail_after

    def calculate(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        super().calculate(*args, **kwargs)


KW = dict(steps=60, timestep_fs=2.0, temperature_K=500.0, seed=7, traj_every=5, stats_every=5, restart_every=20)


@pytest.mark.parametrize(("ensemble", "fmt"), [("nvt", "extxyz"), ("nvt-csvr", "traj"), ("nvt-nh", "extxyz"),
                                               ("npt", "traj"), ("nve", "extxyz")])
def test_restart_equals_uninterrupted(emt_cu, tmp_path, ensemble, fmt):
    atoms = emt_cu.cubic(reps=2)
    ref = run_md(atoms, EMT(), ensemble=ensemble, traj_format=fmt, file_prefix=tmp_path / "ref", **KW)

    with pytest.raises(KeyboardInterrupt):  # killed between the restart at step 40 and step 60
        run_md(atoms, CrashingEMT(fail_after=53), ensemble=ensemble, traj_format=fmt,
               file_prefix=tmp_path / "cut", **KW)
    assert [s for s, _ in list_restarts(str(tmp_path / "cut"))] == [20, 40]
    steps_written = [f.info["step"] for f in ase.io.read(tmp_path / f"cut-traj.{fmt}", ":")]
    assert max(steps_written) > 40  # frames past the restart point exist and must be dropped

    res = run_md(atoms, EMT(), ensemble=ensemble, traj_format=fmt, file_prefix=tmp_path / "cut", restart=True, **KW)
    assert res.start_step == 40

    a = ase.io.read(ref.files["trajectory"], ":")
    b = ase.io.read(res.files["trajectory"], ":")
    assert [f.info["step"] for f in b] == list(range(0, 61, 5))
    for fa, fb in zip(a, b):
        np.testing.assert_allclose(fb.positions, fa.positions, atol=1e-7)
        np.testing.assert_allclose(fb.get_momenta(), fa.get_momenta(), atol=1e-7)
        np.testing.assert_allclose(fb.cell.array, fa.cell.array, atol=1e-7)
    sa, sb = read_stats(ref.files["stats"]), read_stats(res.files["stats"])
    np.testing.assert_array_equal(sb["Step"], np.arange(0, 61, 5))
    for col in ("Epot/N", "EKin/N", "T", "Volume", "P", "Target_T"):
        np.testing.assert_allclose(sb[col], sa[col], rtol=1e-6, atol=1e-9)


def test_restart_of_a_finished_run_is_a_no_op_and_can_extend(emt_cu, tmp_path):
    atoms = emt_cu.cubic()
    kw = dict(KW, steps=40)
    run_md(atoms, EMT(), file_prefix=tmp_path / "a", **kw)
    again = run_md(atoms, EMT(), file_prefix=tmp_path / "a", restart=True, **kw)
    assert again.start_step == 40
    longer = run_md(atoms, EMT(), file_prefix=tmp_path / "a", restart=True, **dict(kw, steps=60))
    ref = run_md(atoms, EMT(), file_prefix=tmp_path / "b", **dict(kw, steps=60))
    np.testing.assert_allclose(longer.atoms.positions, ref.atoms.positions, atol=1e-7)
    assert list(read_stats(longer.files["stats"])["Step"]) == list(range(0, 61, 5))


def test_restart_without_files_starts_fresh(emt_cu, tmp_path):
    res = run_md(emt_cu.cubic(), EMT(), file_prefix=tmp_path / "new", restart=True, **dict(KW, steps=10))
    assert res.start_step == 0


def test_restart_refuses_other_seed(emt_cu, tmp_path):
    run_md(emt_cu.cubic(), EMT(), file_prefix=tmp_path / "s", **dict(KW, steps=20))
    with pytest.raises(GauntError, match="seed"):
        run_md(emt_cu.cubic(), EMT(), file_prefix=tmp_path / "s", restart=True, **dict(KW, steps=40, seed=8))


def test_restart_without_seed_takes_the_recorded_one(emt_cu, tmp_path):
    kw = dict(KW, seed=None)
    first = run_md(emt_cu.cubic(), EMT(), file_prefix=tmp_path / "n", **dict(kw, steps=20))
    res = run_md(emt_cu.cubic(), EMT(), file_prefix=tmp_path / "n", restart=True, **dict(kw, steps=40))
    assert res.start_step == 20 and res.seed == first.seed
