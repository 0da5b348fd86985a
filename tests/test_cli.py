"""``gaunt-md`` end to end on tiny systems in a temporary folder, with the real default model.

Each command runs in-process through :func:`gaunt_md.cli.main` (one torch import for the whole
file); one test goes through a subprocess to check the exit status and the absence of
tracebacks. Without a shipped default model (a fresh checkout before training) the tests fall
back to the random tiny checkpoint, so they still check the plumbing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk

from gaunt_md.cli import main

FIXTURES = Path(__file__).parent / "data" / "fixtures"


def _default_model_covers(symbol: str) -> bool:
    from ase.data import chemical_symbols

    try:
        from gaunt_md.potentials import model_info

        elements = model_info("default")["elements"]
    except Exception:  # noqa: BLE001 - no default model yet
        return False
    return symbol in {chemical_symbols[e] if isinstance(e, int) else str(e) for e in elements}


@pytest.fixture(scope="module")
def model_args(tmp_path_factory) -> list[str]:
    """No --model at all (the default model path) when it covers Si, else the tiny checkpoint."""
    if _default_model_covers("Si"):
        return ["--device", "cpu"]
    from gaunt_md.testing import TINY_ELEMENTS, tiny_checkpoint

    path = tiny_checkpoint(tmp_path_factory.mktemp("m") / "tiny.safetensors", TINY_ELEMENTS, seed=0)
    return ["--model", str(path), "--device", "cpu"]


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    bulk("Si", "diamond", a=5.45).write("Si.cif")
    ase.io.write("Si8.xyz", bulk("Si", "diamond", a=5.45, cubic=True), format="extxyz")
    return tmp_path


def _summary(path: str) -> dict:
    doc = yaml.safe_load(open(path))
    assert doc["command"].startswith("gaunt-md ")
    for key in ("gaunt_md", "ase", "torch", "numpy"):
        assert doc["provenance"]["versions"][key]
    assert doc["timing"]["wall_time_s"] >= 0
    return doc


def test_relax(work, model_args, capsys):
    rc = main(["relax", "Si.cif", *model_args, "--opt-cell-fully", "--fmax", "0.05", "--steps", "25",
               "--file-prefix", "out/si", "--out", "out/si-relaxed.cif"])
    assert rc == 0
    assert "relax: converged=" in capsys.readouterr().out
    for suffix in ("-opt.extxyz", "-relax-traj.extxyz", "-relax-log.dat", "-relax-summary.yml", "-relax.log",
                   "-relaxed.cif"):
        assert (work / f"out/si{suffix}").stat().st_size > 0, suffix
    doc = _summary("out/si-relax-summary.yml")
    assert doc["provenance"]["calculator"] == "GauntCalculator"
    assert doc["provenance"]["dtype"] == "float64" and doc["provenance"]["device"] == "cpu"
    assert doc["inputs"]["cell"] == "full"


def test_md_and_restart(work, model_args):
    args = ["md", "Si8.xyz", *model_args, "--ensemble", "nvt-csvr", "--temp", "300", "--timestep", "1",
            "--seed", "5", "--traj-every", "5", "--stats-every", "5", "--restart-every", "5",
            "--file-prefix", "md/si", "--quiet"]
    assert main([*args, "--steps", "10"]) == 0
    for suffix in ("-traj.extxyz", "-stats.dat", "-res-10.traj", "-final.extxyz", "-md-summary.yml", "-md.log"):
        assert (work / f"md/si{suffix}").exists(), suffix
    doc = _summary("md/si-md-summary.yml")
    assert doc["seed"] == 5 and doc["provenance"]["dtype"] == "float32"
    assert main([*args, "--steps", "20", "--restart"]) == 0
    steps = np.loadtxt("md/si-stats.dat", ndmin=2)[:, 0]
    np.testing.assert_array_equal(steps, np.arange(0, 21, 5))
    assert [f.info["step"] for f in ase.io.read("md/si-traj.extxyz", ":")] == [0, 5, 10, 15, 20]


def test_phonons(work, model_args, capsys):
    rc = main(["phonons", "Si.cif", *model_args, "--supercell", "2 2 2", "--mesh", "4 4 4", "--temp-max", "500",
               "--file-prefix", "ph/si"])
    assert rc == 0
    assert "acoustic at Gamma" in capsys.readouterr().out
    for name in ("phonopy.yaml", "band.yaml", "total_dos.dat", "thermal_properties.yaml", "force_constants.hdf5",
                 "phonons.png"):
        assert (work / "ph/si-phonons" / name).stat().st_size > 0, name
    doc = _summary("ph/si-phonons-summary.yml")
    assert doc["inputs"]["supercell"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert doc["provenance"]["dtype"] == "float64"


def test_eos(work, model_args, capsys):
    assert main(["eos", "Si.cif", *model_args, "--n-volumes", "5", "--file-prefix", "eos/si"]) == 0
    assert "B0 =" in capsys.readouterr().out
    for suffix in ("-eos-raw.dat", "-eos-fit.dat", "-eos.png", "-eos-summary.yml"):
        assert (work / f"eos/si{suffix}").stat().st_size > 0
    assert np.loadtxt("eos/si-eos-raw.dat").shape == (5, 3)


def test_eval(work, model_args, capsys):
    rc = main(["eval", str(FIXTURES / "mlearn_Si_3.xyz"), *model_args, "--batch-size", "2", "--file-prefix", "ev/si"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "energy_mae_meV_per_atom" in out and "forces_rmse_meV_per_A" in out and "stress_mae_GPa" in out
    metrics = json.load(open("ev/si-eval-metrics.json"))["metrics"]
    assert metrics["n_structures"] == 3 and metrics["energy_mae_meV_per_atom"] >= 0
    assert len(ase.io.read("ev/si-eval.extxyz", ":")) == 3
    _summary("ev/si-eval-summary.yml")


def test_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    import gaunt_md

    for name in gaunt_md.available_models():
        assert name in out
    assert main(["models", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert isinstance(infos, list) and all("elements" in i for i in infos)


def test_supercell_repeat_and_threads(work, model_args):
    assert main(["md", "Si8.xyz", *model_args, "--supercell-repeat", "2 1 1", "--steps", "2", "--threads", "1",
                 "--quiet", "--file-prefix", "rep/si"]) == 0
    assert len(ase.io.read("rep/si-final.extxyz")) == 16
    assert "torch threads: 1" in Path("rep/si-md.log").read_text()


def test_small_systems_default_to_one_thread(work, model_args, monkeypatch):
    import torch

    import gaunt_md.cli as cli

    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    assert main(["md", "Si8.xyz", *model_args, "--steps", "1", "--quiet", "--file-prefix", "small/si"]) == 0
    monkeypatch.setattr(cli, "SMALL_SYSTEM_ATOMS", 8)  # now 8 atoms is not small: torch's choice
    assert main(["md", "Si8.xyz", *model_args, "--steps", "1", "--quiet", "--file-prefix", "big/si"]) == 0
    assert chosen == [1]


def test_config_file_and_override(work, model_args):
    Path("cfg.yml").write_text("steps: 4\ntraj-every: 2\nstats_every: 2\nseed: 9\nfile-prefix: cfg/si\n"
                               "ensemble: nve\nquiet: true\n")
    assert main(["md", "Si8.xyz", *model_args, "--config", "cfg.yml", "--steps", "6"]) == 0
    doc = yaml.safe_load(open("cfg/si-md-summary.yml"))
    assert doc["inputs"]["steps"] == 6 and doc["inputs"]["ensemble"] == "nve" and doc["seed"] == 9
    assert doc["cli"]["config"] == "cfg.yml"


def test_emt_arch_runs_the_same_drivers(work):
    bulk("Cu", "fcc", a=3.6).write("Cu.cif")
    assert main(["relax", "Cu.cif", "--arch", "emt", "--opt-cell-lengths", "--quiet", "--file-prefix", "e/cu"]) == 0
    assert yaml.safe_load(open("e/cu-relax-summary.yml"))["provenance"]["calculator"] == "EMT"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["relax", "missing.cif"], "structure file not found: 'missing.cif'"),
        (["md", "Si8.xyz", "--ensemble", "nvx"], "unknown ensemble 'nvx'"),
        (["relax", "Si.cif", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["phonons", "Si.cif", "--supercell", "2 2"], "--supercell needs"),
        (["relax", "Si.cif", "--config", "nope.yml"], "cannot read config file"),
        (["phonons", "Si.cif", "--mesh", "4 4"], "--mesh needs"),
        (["relax"], "needs a structure file"),
        (["relax", "Au.cif"], "not covered by this model"),
    ],
)
def test_user_errors_give_one_line_and_exit_1(work, model_args, capsys, argv, message):
    bulk("Au").write("Au.cif")
    extra = model_args if "--model" not in argv else ["--device", "cpu"]
    assert main([*argv, *extra]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_config_key(work, capsys):
    Path("bad.yml").write_text("stepz: 3\n")
    assert main(["md", "Si8.xyz", "--config", "bad.yml"]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'stepz'" in err and "steps" in err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["relax", "--fmax", "abc"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_train_is_registered(capsys):
    pytest.importorskip("gaunt_md.train.cli")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    assert "train" in capsys.readouterr().out


def test_subprocess_exit_status_and_no_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "gaunt_md.cli", "relax", str(tmp_path / "none.cif")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and "structure file not found" in run.stderr


def test_version(capsys):
    import gaunt_md

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and gaunt_md.__version__ in capsys.readouterr().out
