"""Model speed: GauntCalculator against MACE (same size, random weights) through ASE, on CPU or CUDA.

Not a test. Every (system, dtype, model) runs in its own subprocess (peak RSS and page faults
per size), gaunt and MACE alternate within each round (shared machines drift), and the
reported time per call is the best round's median. A "call" is what an MD/relax step costs:
a small displacement, then energy + forces (+ stress for periodic cells) through the ASE
calculator, neighbour list included.

    python benchmarks/model_speed.py                    # full table, 2 rounds
    python benchmarks/model_speed.py --big              # also Si 4096 (8x8x8 diamond)
    python benchmarks/model_speed.py --systems Si64 --dtypes float32 --rounds 1
    python benchmarks/model_speed.py --batch            # calculate_batch vs a loop of single calls
    python benchmarks/model_speed.py --torch-ops        # gaunt without the fused CPU kernels
    python benchmarks/model_speed.py --batch --profile  # where a calculate_batch call goes
    python benchmarks/model_speed.py --profile Si216 --dtypes float32   # torch.profiler breakdown
    python benchmarks/model_speed.py --device cuda --big --systems mol27 Si64 Si216 Si1000 Si13824
                                                        # both models on the GPU (NL on the CPU)

Peer sizes (anchors.md): 64 channels, edge l_max 3, hidden 64x0e+64x1o, correlation 3,
2 layers, r_max 5 Å, 8 Bessel functions, polynomial cutoff p = 5, radial MLP [64, 64, 64].
Threads: torch.set_num_threads(2) in every worker (set here, never in the library), and
OMP_WAIT_POLICY=PASSIVE in the workers' environment: on a shared, oversubscribed 2-core machine
spinning OpenMP threads made single calls vary 0.1-6 s (measured); ``--omp-active`` turns it off.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THREADS = 2
SYSTEMS = {  # name -> (family, builder argument)
    "mol27": ("mol", None),
    "Si64": ("Si", 2),
    "Si216": ("Si", 3),
    "Si512": ("Si", 4),
    "Si1000": ("Si", 5),
    "Cu108": ("Cu", 3),
    "Cu500": ("Cu", 5),
    "Cu1372": ("Cu", 7),
}
BIG = {"Si4096": ("Si", 8)}
LARGE = {**BIG, "Si13824": ("Si", 12)}  # Si13824: for a GPU
ELEMENTS = {"mol": (1, 6, 7, 8), "Si": (14,), "Cu": (29,)}
MOLECULE = [
    Path(__file__).resolve().parent.parent / "tests" / "data" / "fixtures" / "3bpa_train_300K_3.xyz",
    Path("/work/shared/data/3bpa/train_300K.xyz"),
]


# ---------------------------------------------------------------------------------------------
# structures and models


def build_structure(name: str):
    from ase import Atoms
    from ase.build import bulk

    family, reps = {**SYSTEMS, **LARGE}[name]
    rng = np.random.default_rng(7)
    if family == "mol":
        import ase.io

        frame = ase.io.read(next(p for p in MOLECULE if p.is_file()), 0)
        return Atoms(numbers=frame.numbers, positions=frame.positions, pbc=False)
    if family == "Si":
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((reps,) * 3)
    else:
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((reps,) * 3)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def gaunt_config(elements):
    from gaunt_md.model.config import ModelConfig

    return ModelConfig(
        elements=elements, cutoff=5.0, num_channels=64, l_max_edge=3, l_max_hidden=1, correlation=3,
        num_layers=2, num_bessel=8, cutoff_p=5, radial_hidden=(64, 64, 64), avg_num_neighbors=20.0,
    )


def make_models(folder: Path, with_mace: bool) -> dict:
    """Random-weight checkpoints per element family: {family: {"gaunt": path, "mace": path}}."""
    import torch

    from gaunt_md.model.checkpoint import save_checkpoint
    from gaunt_md.model.potential import GauntPotential

    out = {}
    for family, elements in ELEMENTS.items():
        paths = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = GauntPotential(gaunt_config(elements))
            paths["gaunt"] = str(save_checkpoint(folder / f"gaunt_{family}.safetensors", model))
            paths["gaunt_params"] = sum(p.numel() for p in model.parameters())
            if with_mace:
                mace = make_mace(elements)
                paths["mace"] = str(folder / f"mace_{family}.model")
                torch.save(mace, paths["mace"])
                paths["mace_params"] = sum(p.numel() for p in mace.parameters())
        out[family] = paths
    return out


def make_mace(elements):
    import torch
    from e3nn import o3
    from mace import modules

    return modules.ScaleShiftMACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=2, num_elements=len(elements), hidden_irreps=o3.Irreps("64x0e+64x1o"),
        MLP_irreps=o3.Irreps("16x0e"), gate=torch.nn.functional.silu,
        atomic_energies=np.zeros(len(elements)), avg_num_neighbors=20.0, atomic_numbers=list(elements),
        correlation=3, radial_type="bessel", radial_MLP=[64, 64, 64],
        atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    ).float()


def has_mace() -> bool:
    try:
        import mace.modules  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# worker: one model, one system, one dtype, in its own process


def _status_kb(key: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, kB. Unlike ``ru_maxrss``, ``VmHWM``
    is not inherited from the parent across fork + exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _timed(module, name: str, box: list):
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            box[0] += time.perf_counter() - t

    setattr(module, name, wrapper)


def make_calculator(model: str, path: str, dtype: str, nl_box: list, torch_ops: bool = False, skin: float = 0.5,
                    device: str = "cpu"):
    if model == "gaunt":
        import gaunt_md.calculator as gc

        # neighbour list + graph: a search, or the kept (Verlet) list filtered, checks included
        _timed(gc.GauntCalculator, "_graphs", nl_box)
        return gc.GauntCalculator(path, device=device, dtype=dtype, fused=False if torch_ops else None, skin=skin)
    import logging

    logging.disable(logging.WARNING)
    import mace.data.atomic_data as ad
    from mace.calculators import MACECalculator

    _timed(ad, "get_neighborhood", nl_box)
    return MACECalculator(model_paths=path, device=device, default_dtype=dtype)


def worker(spec: dict) -> dict | list[dict]:
    """One model in one dtype: one system (``spec["system"]``), or several in turn
    (``spec["paths"]``, system -> checkpoint: the CUDA table: one process and one CUDA context per model and dtype)."""
    import torch

    from gaunt_md.runtime import keep_freed_memory

    torch.set_num_threads(spec["threads"])
    if spec.get("malloc", "keep") == "keep":
        keep_freed_memory()  # what the gaunt-md commands do; applied to both models alike
    if spec["model"] == "gaunt":
        import gaunt_md.calculator  # noqa: F401
    else:
        import mace.calculators  # noqa: F401
    rss_imports = _status_kb("VmRSS")
    if "paths" in spec:  # {system: checkpoint}
        return [measure({**spec, "system": system, "path": path}, rss_imports) for system, path in spec["paths"].items()]
    return measure(spec, rss_imports)


def measure(spec: dict, rss_imports: int) -> dict:
    import torch

    cuda = spec.get("device", "cpu") == "cuda"
    nl_box = [0.0]
    atoms = build_structure(spec["system"])
    calc = make_calculator(spec["model"], spec["path"], spec["dtype"], nl_box, spec.get("torch_ops", False),
                           spec.get("skin", 0.5), spec.get("device", "cpu"))
    atoms.calc = calc
    periodic = bool(atoms.pbc.all())
    step = np.random.default_rng(1).normal(scale=1e-3, size=atoms.positions.shape)

    def call(k: int) -> None:
        # results come back as numpy arrays: a CUDA call has finished when get_forces returns
        atoms.positions += step if k % 2 == 0 else -step  # a new state each call, no drift
        atoms.get_forces()
        if periodic:
            atoms.get_stress()

    for k in range(3 if cuda else 2 if len(atoms) < 500 else 1):  # warm-up: allocator, lazy init
        call(k)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    nl_box[0] = 0.0
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < spec["min_calls"] or (time.perf_counter() - start < spec["min_time"] and len(times) < 200):
        t = time.perf_counter()
        call(len(times))
        times.append(time.perf_counter() - t)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        **spec,
        "n_atoms": len(atoms),
        "median_s": statistics.median(times),
        "calls": len(times),
        "nl_share": nl_box[0] / sum(times),
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "imports_rss_mb": rss_imports / 1024,  # python + torch (+ e3nn, mace) before any model
        "minflt_per_call": (usage.ru_minflt - usage0.ru_minflt) / len(times),
        # kernel share of this process's CPU time in the timed calls (page faults, zeroing, munmap)
        "sys_share": (usage.ru_stime - usage0.ru_stime)
        / max(1e-9, usage.ru_stime - usage0.ru_stime + usage.ru_utime - usage0.ru_utime),
    }
    if cuda:  # CUDA memory a timed call peaked at, model and graph included (caching allocator: allocated, not reserved)
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    del atoms.calc, calc
    if cuda:
        torch.cuda.empty_cache()
    return out


def run_worker(spec: dict, omp_active: bool = False) -> dict:
    env = dict(os.environ)
    if not omp_active:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, check=False, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# benchmarks


def speed_table(args, models: dict, with_mace: bool) -> None:
    """Rounds outermost: every (system, dtype, model) is measured once per round, so slow drifts of
    a shared machine hit all sizes and both models alike; the best round counts. On CUDA one worker
    per (dtype, model) goes through all sizes (a CUDA context per size would cost more than the
    timings)."""
    systems = {k: v for k, v in {**SYSTEMS, **LARGE}.items() if k in args.systems}
    names = ["gaunt"] + (["mace"] if with_mace else [])
    best: dict[tuple, dict] = {}

    def spec_for(model: str, dtype: str, system: str) -> dict:
        family = systems[system][0]
        return dict(model=model, path=models[family][model], system=system, dtype=dtype, min_calls=args.min_calls,
                    min_time=args.min_time, threads=args.threads, malloc=args.malloc, torch_ops=args.torch_ops,
                    skin=args.skin, device=args.device)

    def keep(r: int, res: dict) -> None:
        key = (res["system"], res["dtype"], res["model"])
        if key not in best or res["median_s"] < best[key]["median_s"]:
            best[key] = res
        memory = (f"CUDA peak {res['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in res else
                  f"peak RSS {res['peak_rss_mb']:.0f} MB, {res['minflt_per_call']:.0f} faults/call, "
                  f"kernel {100 * res['sys_share']:.0f}% of CPU")
        print(f"  round {r} {res['system']:>7} {res['dtype']} {res['model']:>5}: {1e3 * res['median_s']:9.1f} ms/call "
              f"({res['calls']} calls), {1e6 * res['median_s'] / res['n_atoms']:6.1f} us/atom, {memory}", flush=True)

    for r in range(args.rounds):
        if args.device == "cuda":
            for dtype in args.dtypes:
                for model in names if r % 2 == 0 else names[::-1]:
                    spec = spec_for(model, dtype, next(iter(systems)))
                    spec["paths"] = {system: models[family][model] for system, (family, _) in systems.items()}
                    for res in run_worker(spec, args.omp_active):
                        keep(r, res)
            continue
        for system in systems:
            for dtype in args.dtypes:
                for model in names if r % 2 == 0 else names[::-1]:
                    keep(r, run_worker(spec_for(model, dtype, system), args.omp_active))
    rows = [{m: best[(system, dtype, m)] for m in names} for system in systems for dtype in args.dtypes]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print_markdown(rows, with_mace)


def print_markdown(rows: list, with_mace: bool) -> None:
    gpu = "gpu_peak_mb" in rows[0]["gaunt"]
    memory = "CUDA peak MB" if gpu else "peak RSS MB (over imports)"
    print("\n| system | atoms | dtype | gaunt ms/call | gaunt atom-steps/s | "
          + ("MACE ms/call | MACE atom-steps/s | speed-up | " if with_mace else "")
          + f"gaunt NL share | gaunt {memory} | "
          + (f"MACE NL share | MACE {memory} | " if with_mace else "")
          + ("" if gpu else "gaunt faults/call |" + (" MACE faults/call |" if with_mace else "")))
    print("|---" * ((11 if gpu else 13) if with_mace else (7 if gpu else 8)) + "|")
    for best in rows:
        g = best["gaunt"]
        cells = [g["system"], str(g["n_atoms"]), g["dtype"], f"{1e3 * g['median_s']:.1f}", f"{g['n_atoms'] / g['median_s']:.0f}"]
        if with_mace:
            m = best["mace"]
            cells += [f"{1e3 * m['median_s']:.1f}", f"{m['n_atoms'] / m['median_s']:.0f}", f"{m['median_s'] / g['median_s']:.2f}x"]

        def mem(r):
            if gpu:
                return f"{r['gpu_peak_mb']:.0f}"
            return f"{r['peak_rss_mb']:.0f} (+{r['peak_rss_mb'] - r['imports_rss_mb']:.0f})"

        cells += [f"{100 * g['nl_share']:.1f}%", mem(g)]
        if with_mace:
            cells += [f"{100 * best['mace']['nl_share']:.1f}%", mem(best["mace"])]
        if not gpu:
            cells.append(f"{g['minflt_per_call']:.0f}")
            if with_mace:
                cells.append(f"{best['mace']['minflt_per_call']:.0f}")
        print("| " + " | ".join(cells) + " |")
    for family in ("Si", "Cu"):
        for dtype in sorted({b["gaunt"]["dtype"] for b in rows}):
            per_atom = {b["gaunt"]["n_atoms"]: b["gaunt"]["median_s"] / b["gaunt"]["n_atoms"]
                        for b in rows if b["gaunt"]["system"].startswith(family) and b["gaunt"]["dtype"] == dtype}
            if len(per_atom) > 1:
                sizes = sorted(per_atom)
                print(f"per-atom cost {family} {dtype}: " + ", ".join(
                    f"{n}: {1e6 * per_atom[n]:.0f} us" for n in sizes)
                    + f"; largest/smallest {per_atom[sizes[-1]] / per_atom[sizes[0]]:.2f}x")


def random_small_cells(n: int, seed: int = 3):
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    prim = bulk("Si", "diamond", a=5.43)
    shapes = [(1, 1, 1), (2, 1, 1), (1, 2, 1), (3, 1, 1), (2, 2, 1), (1, 2, 2)]
    cells = []
    for k in range(n):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True) if k % 7 == 0 else prim.repeat(shapes[k % len(shapes)])
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        cells.append(atoms)
    return cells


def batch_benchmark(args, models: dict) -> None:
    import torch

    from gaunt_md.calculator import GauntCalculator

    torch.set_num_threads(args.threads)
    cells = random_small_cells(args.batch_size)
    print(f"batch on {args.device}, {args.threads} torch threads, loop on {args.loop_threads or args.threads}, "
          f"max_batch_atoms {args.max_batch_atoms or 'default'}, radial_intervals {args.radial_intervals}")
    print(f"calculate_batch: {len(cells)} Si cells, {sum(map(len, cells))} atoms "
          f"({min(map(len, cells))}-{max(map(len, cells))} per cell), energy+forces+stress")
    for dtype in args.dtypes:
        calc = GauntCalculator(models["Si"]["gaunt"], device=args.device, dtype=dtype,
                               fused=False if args.torch_ops else None, max_batch_atoms=args.max_batch_atoms,
                               radial_intervals=args.radial_intervals)
        calc.calculate_batch(cells[:50])
        t_batch, t_loop = [], []
        for _ in range(args.rounds):  # interleaved
            t = time.perf_counter()
            calc.calculate_batch(cells)
            t_batch.append(time.perf_counter() - t)
            torch.set_num_threads(args.loop_threads or args.threads)
            t = time.perf_counter()
            for atoms in cells:
                atoms.calc = calc
                atoms.get_forces()
                atoms.get_stress()
                calc.reset()
            t_loop.append(time.perf_counter() - t)
            torch.set_num_threads(args.threads)
        b, lo = min(t_batch), min(t_loop)
        print(f"  {dtype}: batch {b:.2f} s ({1e3 * b / len(cells):.2f} ms/cell), loop {lo:.2f} s "
              f"({1e3 * lo / len(cells):.2f} ms/cell), speed-up {lo / b:.1f}x")


def profile_batch(args, models: dict) -> None:
    """Where one calculate_batch call over the small cells goes: graphs, then torch ops / kernels."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from gaunt_md.calculator import GauntCalculator

    torch.set_num_threads(args.threads)
    cells = random_small_cells(args.batch_size)
    for dtype in args.dtypes:
        calc = GauntCalculator(models["Si"]["gaunt"], device="cpu", dtype=dtype, fused=False if args.torch_ops else None)
        calc.calculate_batch(cells)
        t = time.perf_counter()
        calc.calculate_batch(cells)
        total = time.perf_counter() - t
        t = time.perf_counter()
        calc._graphs(cells)
        graphs = time.perf_counter() - t
        print(f"\n== calculate_batch {len(cells)} cells {dtype}: {1e3 * total:.0f} ms; neighbour lists and graphs "
              f"{1e3 * graphs:.0f} ms ({100 * graphs / total:.0f}%)")
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            calc.calculate_batch(cells)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40))


def profile(args, models: dict) -> None:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from gaunt_md.calculator import GauntCalculator

    torch.set_num_threads(args.threads)
    for system in args.systems:
        family = {**SYSTEMS, **LARGE}[system][0]
        for dtype in args.dtypes:
            atoms = build_structure(system)
            calc = GauntCalculator(models[family]["gaunt"], device="cpu", dtype=dtype)
            atoms.calc = calc
            # forward time per block, by hooks (CPU is synchronous)
            spent: dict[str, float] = {}
            starts: dict[str, float] = {}
            named = {"edge_harmonics": calc.potential.edge_harmonics, "radial_basis": calc.potential.radial_basis}
            for t, layer in enumerate(calc.potential.layers):
                for part in ("linear_up", "conv", "linear_message", "product", "linear_out", "skip"):
                    named[f"L{t}.{part}"] = getattr(layer, part)
                named[f"L{t}.conv.radial"] = layer.conv.radial
            for key, mod in named.items():
                mod.register_forward_pre_hook(lambda m, i, k=key: starts.__setitem__(k, time.perf_counter()))
                mod.register_forward_hook(
                    lambda m, i, o, k=key: spent.__setitem__(k, spent.get(k, 0.0) + time.perf_counter() - starts[k]))
            wrap_ff = calc.forcefield
            totals = {"call": 0.0, "forcefield": 0.0}

            def ff(*a, **kw):
                t = time.perf_counter()
                try:
                    return wrap_ff(*a, **kw)
                finally:
                    totals["forcefield"] += time.perf_counter() - t

            calc.forcefield = ff
            n = 5
            for k in range(2 + n):
                if k == 2:
                    spent.clear()
                    totals.update(call=0.0, forcefield=0.0)
                atoms.positions += 1e-3 * (-1) ** k
                t = time.perf_counter()
                atoms.get_forces()
                atoms.get_stress() if atoms.pbc.all() else None
                totals["call"] += time.perf_counter() - t
            call = totals["call"] / n
            fwd = sum(v for k, v in spent.items() if k.count(".") <= 1 and not k.endswith("radial")) / n
            print(f"\n== {system} {dtype}: {1e3 * call:.1f} ms/call; model call {100 * totals['forcefield'] / n / call:.0f}%, "
                  f"hooked forward {100 * fwd / call:.0f}%, so backward + glue ~{100 * (totals['forcefield'] / n - fwd) / call:.0f}%")
            for key, v in sorted(spent.items(), key=lambda kv: -kv[1]):
                print(f"   forward {key:<20} {1e3 * v / n:8.2f} ms {100 * v / n / call:5.1f}%")
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                for k in range(3):
                    atoms.positions += 1e-3 * (-1) ** k
                    atoms.get_forces()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=38))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS) + list(LARGE))
    parser.add_argument("--big", action="store_true", help="add Si4096 (8x8x8 diamond)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-calls", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=4.0, help="seconds of timed calls per worker")
    parser.add_argument("--no-mace", action="store_true")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads per worker")
    parser.add_argument("--omp-active", action="store_true", help="do not set OMP_WAIT_POLICY=PASSIVE")
    parser.add_argument("--malloc", choices=["keep", "default"], default="keep",
                        help="keep: workers call gaunt_md.runtime.keep_freed_memory() (as the CLI does), "
                        "for gaunt and MACE alike; default: glibc's defaults")
    parser.add_argument("--batch", action="store_true", help="calculate_batch vs a loop of single calls")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--skin", type=float, default=0.5,
                        help="GauntCalculator(skin=...): 0 searches the neighbour list on every call (default 0.5 "
                             "keeps it between calls, as MD and optimisers get it)")
    parser.add_argument("--torch-ops", action="store_true",
                        help="gaunt without the fused CPU kernels (GauntCalculator(fused=False)): the path of "
                             "training, TorchScript and machines without a C++ compiler")
    parser.add_argument("--max-batch-atoms", type=int, default=None, help="GauntCalculator(max_batch_atoms=...)")
    parser.add_argument("--radial-intervals", type=int, default=2048,
                        help="GauntCalculator(radial_intervals=...) for --batch (accuracy: benchmarks/radial_table.py)")
    parser.add_argument("--loop-threads", type=int, default=None,
                        help="torch threads for the loop of single calls (default: --threads)")
    parser.add_argument("--profile", action="store_true", help="torch.profiler breakdown of the gaunt model")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: both models on the GPU (the table, --batch); neighbour lists stay on the CPU")
    parser.add_argument("--json", help="write raw results here")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if not args.omp_active:  # this process too (--batch, --profile); before anything imports torch
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.malloc == "keep" and (args.batch or args.profile):  # these run in this process
        from gaunt_md.runtime import keep_freed_memory

        keep_freed_memory()
    if args.big:
        args.systems = list(dict.fromkeys(args.systems + list(BIG)))
    with_mace = not args.no_mace and has_mace()
    if not args.no_mace and not with_mace:
        print("MACE not installed (`import mace` failed): MACE columns skipped")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average "
          f"{tuple(round(x, 1) for x in os.getloadavg())}, {args.threads} torch threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, allocator: {args.malloc}, "
          f"device: {args.device}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device")
        print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    with tempfile.TemporaryDirectory() as tmp:
        models = make_models(Path(tmp), with_mace and not (args.batch or args.profile))
        for family, paths in models.items():
            print(f"# {family}: gaunt {paths['gaunt_params']} parameters"
                  + (f", MACE {paths['mace_params']}" if "mace_params" in paths else ""))
        if args.batch and args.profile:
            profile_batch(args, models)
        elif args.batch:
            batch_benchmark(args, models)
        elif args.profile:
            profile(args, models)
        else:
            speed_table(args, models, with_mace)


if __name__ == "__main__":
    main()
