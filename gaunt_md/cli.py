"""``gaunt-md``: relax, md, phonons, eos, eval, models (and train) from the command line.

``gaunt-md relax|md|phonons|eos STRUCTURE [options]``, ``gaunt-md eval DATA.xyz``,
``gaunt-md models``. Flag names follow janus-core (``--model --device --dtype --steps --timestep
--temp --ensemble --fmax --supercell --displacement --seed --traj-every --stats-every
--file-prefix --config``); units eV, Å, fs, K, GPa. ``--config cfg.yml`` holds flag names as keys
(kebab or snake case); flags given on the command line win. Every run writes
``{file-prefix}-{command}-summary.yml`` and ``{file-prefix}-{command}.log``; errors print one line
and exit non-zero (1 for bad input or a failed run, 2 for bad usage).
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting made calls 10-100x slower on a busy machine (measured:
# 200 MD steps of 64 Si atoms took 134 s with 2 spinning threads, 17 s with one). This process is
# the application, so it may choose, before torch loads OpenMP; the user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gaunt_md  # noqa: E402
from gaunt_md.errors import GauntError
from gaunt_md.runtime import keep_freed_memory, limit_blas_threads  # noqa: E402

log = logging.getLogger("gaunt_md.cli")

_STRUCTURE_COMMANDS = ("relax", "md", "phonons", "eos", "eval")
_DEFAULT_DTYPE = {"relax": "float64", "md": "float32", "phonons": "float64", "eos": "float64", "eval": "float64"}


class CLIError(GauntError):
    """Bad command-line or config-file input."""


# --------------------------------------------------------------------------- parser


def _ints(text: Any, name: str, sizes: tuple[int, ...]) -> list[int]:
    """``"2 2 2"``, ``"2,2,2"``, ``2`` or ``[2, 2, 2]`` (flags or YAML) -> list of ints."""
    values = text if isinstance(text, (list, tuple)) else str(text).replace(",", " ").split()
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        out = []
    if len(out) not in sizes:
        raise CLIError(f"--{name} needs {' or '.join(map(str, sizes))} integers, got {text!r}")
    return out


def _mesh(text: Any) -> list[int] | float:
    """Phonon q-mesh: 3 integers, or one number = phonopy's length (Å)."""
    values = text if isinstance(text, (list, tuple)) else str(text).replace(",", " ").split()
    if len(values) == 3:
        return _ints(values, "mesh", (3,))
    if len(values) == 1:
        try:
            return float(values[0])
        except ValueError:
            pass
    raise CLIError(f"--mesh needs 3 integers or one length in Å, got {text!r}")


def _common(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("structure", nargs="?", help="structure file (CIF, POSCAR, extxyz, ... anything ASE or pymatgen reads)"
                   if command != "eval" else "extxyz dataset with REF_energy/REF_forces/REF_stress")
    p.add_argument("--struct", help="same as the positional STRUCTURE (janus-core's name)")
    p.add_argument("--index", default="-1" if command != "eval" else ":",
                   help="frame(s) of the file to use (ASE index syntax)")
    p.add_argument("--arch", default="gaunt", choices=("gaunt", "emt"),
                   help="calculator family: gaunt (GauntCalculator) or emt (ASE's EMT, for comparison)")
    p.add_argument("--model", default="default", help="shipped model name or checkpoint path (see `gaunt-md models`)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--dtype", default=None, choices=("float32", "float64"),
                   help=f"model precision (default {_DEFAULT_DTYPE[command]} for {command})")
    p.add_argument("--calc-kwargs", default=None, help="extra calculator keywords as YAML, e.g. \"{min_distance: 0.3}\"")
    p.add_argument("--file-prefix", default=None, help="prefix of every output file (default gaunt_results/<structure name>)")
    p.add_argument("--config", default=None, help="YAML file whose keys are flag names; command-line flags override it")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 for relax/md/eos of fewer than %d atoms, else torch's choice; "
                        "1 is fastest on a busy machine)" % SMALL_SYSTEM_ATOMS)
    p.add_argument("--quiet", action="store_true", help="no progress bar and no result printout")
    p.add_argument("--log", default=None, help="log file (default {file-prefix}-%s.log)" % command)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="gaunt-md", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"gaunt-md {gaunt_md.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subs: dict[str, argparse.ArgumentParser] = {}
    bool_ = argparse.BooleanOptionalAction

    p = subs["relax"] = sub.add_parser("relax", help="geometry optimisation (positions, cell lengths or full cell)")
    _common(p, "relax")
    p.add_argument("--supercell-repeat", default=None, help='repeat the input cell first: "N" or "a b c"')
    p.add_argument("--optimizer", default="FIRE", help="FIRE, LBFGS, BFGS, BFGSLineSearch or MDMin")
    p.add_argument("--fmax", type=float, default=0.05, help="force threshold, eV/Å")
    p.add_argument("--steps", type=int, default=1000, help="maximum optimiser steps")
    p.add_argument("--opt-cell-lengths", action="store_true", help="also scale the cell (hydrostatic strain)")
    p.add_argument("--opt-cell-fully", action="store_true", help="also relax all cell components (FrechetCellFilter)")
    p.add_argument("--pressure", type=float, default=0.0, help="target pressure, GPa (with a cell option)")
    p.add_argument("--symmetrize", "--fix-symmetry", dest="symmetrize", action="store_true",
                   help="keep the space group (ASE FixSymmetry)")
    p.add_argument("--symprec", type=float, default=1e-5, help="symmetry tolerance, Å")
    p.add_argument("--out", default=None, help="extra copy of the final structure (.cif, POSCAR, .xyz, ...)")
    p.add_argument("--write-traj", action=bool_, default=True, help="write the optimisation trajectory")

    p = subs["md"] = sub.add_parser("md", help="molecular dynamics (NVE, NVT, NPT)")
    _common(p, "md")
    p.add_argument("--supercell-repeat", default=None, help='repeat the input cell first: "N" or "a b c"')
    p.add_argument("--ensemble", default="nvt",
                   help="nve, nvt (Langevin), nvt-csvr (Bussi), nvt-nh (Nosé-Hoover chain), npt (MTK), "
                        "npt-mtk (MTK, flexible cell), npt-berendsen")
    p.add_argument("--steps", type=int, default=1000, help="total number of steps")
    p.add_argument("--timestep", type=float, default=1.0, help="time step, fs")
    p.add_argument("--temp", "--temp-start", dest="temp", type=float, default=300.0, help="temperature, K")
    p.add_argument("--temp-end", type=float, default=None, help="ramp the target linearly to this temperature, K")
    p.add_argument("--friction", type=float, default=0.005, help="Langevin friction, 1/fs")
    p.add_argument("--taut", "--thermostat-time", dest="taut", type=float, default=100.0, help="thermostat time, fs")
    p.add_argument("--taup", "--barostat-time", dest="taup", type=float, default=1000.0, help="barostat time, fs")
    p.add_argument("--pressure", type=float, default=0.0, help="target pressure, GPa")
    p.add_argument("--bulk-modulus", type=float, default=100.0, help="bulk modulus for Berendsen NPT, GPa")
    p.add_argument("--seed", type=int, default=None, help="RNG seed (velocities, thermostat); recorded in the summary")
    p.add_argument("--keep-velocities", action="store_true", help="use the momenta stored in the structure file")
    p.add_argument("--traj-every", type=int, default=100, help="trajectory interval, steps (0: none)")
    p.add_argument("--traj-format", default="extxyz", choices=("extxyz", "traj"), help="trajectory format")
    p.add_argument("--stats-every", type=int, default=10, help="stats interval, steps (0: none)")
    p.add_argument("--restart-every", type=int, default=1000, help="restart-file interval, steps (0: none)")
    p.add_argument("--restart", action="store_true", help="continue from the newest restart file of --file-prefix")
    p.add_argument("--keep-restarts", type=int, default=2, help="restart files kept")

    p = subs["phonons"] = sub.add_parser("phonons", help="phonopy bands, DOS and thermal properties")
    _common(p, "phonons")
    p.add_argument("--supercell", default=None, help='"2 2 2" (diagonal), "N" or 9 integers (default 2 2 2)')
    p.add_argument("--min-length", type=float, default=None, help="smallest diagonal supercell with all heights >= this, Å")
    p.add_argument("--displacement", type=float, default=0.01, help="finite displacement, Å")
    p.add_argument("--minimize", action="store_true", help="tight float64 relaxation (cell + positions) first")
    p.add_argument("--fmax", type=float, default=1e-4, help="force threshold of --minimize, eV/Å")
    p.add_argument("--mesh", default="30", help='q-mesh "20 20 20" or a length in Å (phonopy)')
    p.add_argument("--band-npoints", type=int, default=51, help="points per band segment")
    p.add_argument("--temp-min", type=float, default=0.0, help="K")
    p.add_argument("--temp-max", type=float, default=1000.0, help="K")
    p.add_argument("--temp-step", type=float, default=50.0, help="K")
    p.add_argument("--symmetrize", action="store_true", help="symmetrise the force constants")
    p.add_argument("--plot", action=bool_, default=True, help="bands + DOS PNG")

    p = subs["eos"] = sub.add_parser("eos", help="equation of state: E(V), V0, E0, B0")
    _common(p, "eos")
    p.add_argument("--min-volume", type=float, default=0.95, help="smallest volume / reference volume")
    p.add_argument("--max-volume", type=float, default=1.05, help="largest volume / reference volume")
    p.add_argument("--n-volumes", type=int, default=7, help="number of volumes")
    p.add_argument("--eos-type", default="birchmurnaghan", help="birchmurnaghan, vinet, murnaghan, ...")
    p.add_argument("--minimize", action="store_true", help="relax cell and positions first")
    p.add_argument("--minimize-all", action="store_true", help="relax positions at every volume")
    p.add_argument("--fmax", type=float, default=1e-3, help="force threshold of the relaxations, eV/Å")
    p.add_argument("--plot", action=bool_, default=True, help="E(V) PNG")

    p = subs["eval"] = sub.add_parser("eval", help="predict a dataset; MAE/RMSE against its REF labels")
    _common(p, "eval")
    p.add_argument("--batch-size", type=int, default=16, help="structures per model call")
    p.add_argument("--energy-key", default="REF_energy")
    p.add_argument("--forces-key", default="REF_forces")
    p.add_argument("--stress-key", default="REF_stress")

    p = subs["models"] = sub.add_parser("models", help="list shipped potentials with elements and metrics")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    # ---- `gaunt-md train` (and plot-training) are added by gaunt_md.train.cli.register(sub) ----
    try:
        from gaunt_md.train import cli as train_cli
    except ModuleNotFoundError as err:  # only a missing train CLI is tolerated; its own bugs surface
        if err.name not in ("gaunt_md.train.cli", "gaunt_md.train"):
            raise
    else:
        train_cli.register(sub)
    # -------------------------------------------------------------------------------------------
    return parser, subs


def _load_config(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as err:
        raise CLIError(f"cannot read config file {path!r}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise CLIError(f"config file {path!r} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise CLIError(f"config file {path!r} must hold a mapping of flag names to values")
    dests = {a.dest for a in parser._actions} - {"help", "config"}
    out = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        dest = {"temp_start": "temp", "thermostat_time": "taut", "barostat_time": "taup",
                "fix_symmetry": "symmetrize"}.get(dest, dest)
        if dest not in dests:
            raise CLIError(f"unknown key {key!r} in {path}; allowed: {', '.join(sorted(d.replace('_', '-') for d in dests))}")
        out[dest] = value
    return out


#: Below this many atoms relax/md/eos run on one torch thread unless --threads says otherwise: a
#: step is then a few hundred small ops, and waking a second (sleeping, OMP_WAIT_POLICY=PASSIVE) OpenMP
#: thread for each costs more than it saves. Measured with benchmarks/threads.py
#: (results/threads_2026-12-04b.md): 2 threads took 1.4-1.6x longer per step at 8 and 27 atoms,
#: 1.3-1.4x at 64, 1.03-1.23x at 216, and 0.84x (float64) / 0.99x (float32) at 512.
SMALL_SYSTEM_ATOMS = 400


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser, subs = build_parser()
    args = parser.parse_args(argv)
    if args.command in subs and getattr(args, "config", None):
        subs[args.command].set_defaults(**_load_config(args.config, subs[args.command]))
        args = parser.parse_args(argv)
    return args


# --------------------------------------------------------------------------- helpers


def _calculator(args: argparse.Namespace):
    import yaml

    kwargs = {}
    if args.calc_kwargs:
        kwargs = yaml.safe_load(args.calc_kwargs) if isinstance(args.calc_kwargs, str) else dict(args.calc_kwargs)
        if not isinstance(kwargs, dict):
            raise CLIError(f"--calc-kwargs must be a mapping, got {args.calc_kwargs!r}")
    if args.arch == "emt":
        from ase.calculators.emt import EMT

        return EMT(**kwargs)
    from gaunt_md.calculator import GauntCalculator

    return GauntCalculator(model=args.model, device=args.device, dtype=args.dtype, **kwargs)


def _structure(args: argparse.Namespace):
    from gaunt_md.data.convert import to_atoms

    path = args.structure or args.struct
    if not path:
        raise CLIError(f"`gaunt-md {args.command}` needs a structure file (positional STRUCTURE or --struct)")
    index: Any = args.index
    try:
        index = int(index)
    except ValueError:
        pass
    return path, to_atoms(path, index=index)


def _setup_logging(path: Path | None, quiet: bool) -> None:
    root = logging.getLogger("gaunt_md")
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, "_gaunt_cli", False):
            root.removeHandler(h)
            h.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("gaunt-md: %(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(path, mode="a")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(fh)
    for h in handlers:
        h._gaunt_cli = True  # type: ignore[attr-defined]
        root.addHandler(h)


def _add_to_summary(path: str | None, args: argparse.Namespace, argv: list[str], log_path: Path) -> None:
    if not path or not os.path.exists(path):
        return
    import yaml

    with open(path) as fh:
        doc = yaml.safe_load(fh)
    doc["command"] = "gaunt-md " + shlex.join(argv)
    doc["cli"] = {"arch": args.arch, "model": args.model, "device": args.device,
                  "config": args.config, "structure_file": args.structure or args.struct}
    doc.setdefault("outputs", {})["log"] = str(log_path)
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text)


# --------------------------------------------------------------------------- commands


def _run_structure_command(args: argparse.Namespace, argv: list[str]) -> int:
    from gaunt_md import drivers

    cmd = args.command
    args.dtype = args.dtype or _DEFAULT_DTYPE[cmd]
    path, atoms = (args.structure or args.struct, None) if cmd == "eval" else _structure(args)
    if cmd == "eval" and not path:
        raise CLIError("`gaunt-md eval` needs a dataset file (positional or --struct)")
    if getattr(args, "supercell_repeat", None) is not None:
        reps = _ints(args.supercell_repeat, "supercell-repeat", (1, 3))
        atoms = atoms * (reps * 3 if len(reps) == 1 else reps)
    prefix = args.file_prefix or str(Path("gaunt_results") / Path(path).stem)
    log_path = Path(args.log or f"{prefix}-{cmd}.log")
    _setup_logging(log_path, args.quiet)
    log.info("gaunt-md %s", shlex.join(argv))
    threads = args.threads
    if threads is not None and threads < 1:
        raise CLIError(f"--threads must be >= 1, got {threads}")
    if threads is None and cmd in ("relax", "md", "eos") and atoms is not None and len(atoms) < SMALL_SYSTEM_ATOMS:
        threads = 1  # see SMALL_SYSTEM_ATOMS
    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # this CLI process only
        log.info("torch threads: %d", threads)
    calc = _calculator(args)
    progress = not args.quiet

    if cmd == "relax":
        if args.opt_cell_fully and args.opt_cell_lengths:
            raise CLIError("choose one of --opt-cell-fully and --opt-cell-lengths")
        cell = "full" if args.opt_cell_fully else "lengths" if args.opt_cell_lengths else "fixed"
        res = drivers.run_relax(atoms, calc, optimizer=args.optimizer, fmax=args.fmax, steps=args.steps, cell=cell,
                                pressure_GPa=args.pressure, fix_symmetry=args.symmetrize, symprec=args.symprec,
                                file_prefix=prefix, write_traj=args.write_traj, out=args.out, progress=progress,
                                dtype=args.dtype)
        _say(args, f"relax: converged={res.converged} after {res.steps} steps; E = {res.energy:.6f} eV "
                   f"({res.energy_per_atom:.6f} eV/atom); max force {res.max_force:.2e} eV/Å"
                   + (f"; P = {res.pressure_GPa:.4f} GPa; V = {res.volume:.4f} Å³" if res.pressure_GPa is not None else ""))
    elif cmd == "md":
        res = drivers.run_md(atoms, calc, ensemble=args.ensemble, steps=args.steps, timestep_fs=args.timestep,
                             temperature_K=args.temp, temperature_end_K=args.temp_end, friction_per_fs=args.friction,
                             taut_fs=args.taut, taup_fs=args.taup, pressure_GPa=args.pressure,
                             bulk_modulus_GPa=args.bulk_modulus, seed=args.seed, keep_velocities=args.keep_velocities,
                             file_prefix=prefix, traj_every=args.traj_every, traj_format=args.traj_format,
                             stats_every=args.stats_every, restart_every=args.restart_every, restart=args.restart,
                             keep_restarts=args.keep_restarts, progress=progress, dtype=args.dtype)
        _say(args, f"md {res.ensemble}: steps {res.start_step}->{res.steps}, seed {res.seed}; <T> = "
                   f"{res.mean_temperature_K:.1f} K; {res.steps_per_second:.1f} steps/s")
    elif cmd == "phonons":
        mesh = _mesh(args.mesh)
        supercell = _ints(args.supercell, "supercell", (1, 3, 9)) if args.supercell is not None else None
        res = drivers.run_phonons(atoms, calc, supercell=supercell, min_length_A=args.min_length,
                                  displacement_A=args.displacement, relax=args.minimize, relax_fmax=args.fmax,
                                  symmetrize_fc=args.symmetrize, band_npoints=args.band_npoints, mesh=mesh,
                                  t_min_K=args.temp_min, t_max_K=args.temp_max, t_step_K=args.temp_step,
                                  file_prefix=prefix, plot=args.plot, progress=progress, dtype=args.dtype)
        gamma = ", ".join(f"{f:.3f}" for f in res.gamma_frequencies_THz[:3])
        _say(args, f"phonons: {res.n_displacements} displacements; acoustic at Gamma [{gamma}] THz; "
                   f"lowest {res.min_frequency_THz:.3f} THz; imaginary modes: {'YES' if res.has_imaginary_modes else 'none'}")
    elif cmd == "eos":
        res = drivers.run_eos(atoms, calc, min_volume=args.min_volume, max_volume=args.max_volume,
                              n_volumes=args.n_volumes, eos_type=args.eos_type, relax=args.minimize,
                              relax_positions=args.minimize_all, fmax=args.fmax, file_prefix=prefix,
                              plot=args.plot, progress=progress, dtype=args.dtype)
        _say(args, f"eos ({res.eos_type}): V0 = {res.v0:.4f} Å³, E0 = {res.e0:.6f} eV, B0 = {res.b0_GPa:.2f} GPa")
    else:
        res = drivers.run_eval(path, calc, batch_size=args.batch_size, energy_key=args.energy_key,
                               forces_key=args.forces_key, stress_key=args.stress_key, index=args.index,
                               file_prefix=prefix, progress=progress, dtype=args.dtype)
        _say(args, f"eval: {res.n_structures} structures")
        for key, value in res.metrics.items():
            if key != "n_structures":
                _say(args, f"  {key:28s} {value:12.4f}")
    _add_to_summary(res.files.get("summary"), args, argv, log_path)
    _say(args, f"files: {', '.join(sorted(set(res.files.values())))}")
    return 0


def _run_models(args: argparse.Namespace) -> int:
    import json

    names = gaunt_md.available_models()
    infos = [gaunt_md.model_info(n) for n in names]
    if args.json:
        print(json.dumps(infos, indent=1, default=str))
        return 0
    if not infos:
        print("no shipped potentials found (set GAUNT_MD_POTENTIALS or pass --model PATH)")
        return 0
    for info in infos:
        all_metrics = info.get("metrics") or {}
        shown = {k: v for k, v in all_metrics.items() if k.startswith("all/") or "/" not in k} or all_metrics
        metrics = ", ".join(f"{k} {v:.3g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in shown.items())
        print(f"{info['name']}: {info.get('description') or ''}")
        print(f"  elements: {' '.join(map(str, info.get('elements') or []))}; cutoff {info.get('cutoff')} Å")
        if metrics:
            print(f"  metrics (energy meV/atom, forces meV/Å, stress GPa): {metrics}")
        if info.get("card"):
            print(f"  card: {info['card']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gaunt-md``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
        limit_blas_threads(1)
        keep_freed_memory()
        if args.command in _STRUCTURE_COMMANDS:
            return _run_structure_command(args, argv)
        if args.command == "models":
            return _run_models(args)
        return int(args.func(args) or 0)
    except (GauntError, OSError, ValueError, KeyboardInterrupt) as err:
        if os.environ.get("GAUNT_MD_DEBUG"):
            raise
        return _report(err)


def _report(err: BaseException) -> int:
    """One line on stderr for a user-facing error; the exit status."""
    if isinstance(err, KeyboardInterrupt):
        print("gaunt-md: interrupted (md: `--restart` continues from the newest restart file)", file=sys.stderr)
        return 130
    if isinstance(err, GauntError):
        print(f"gaunt-md: error: {err}", file=sys.stderr)
    else:  # bad paths, unwritable folders, malformed files: the message names the culprit
        print(f"gaunt-md: error: {type(err).__name__}: {err}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
