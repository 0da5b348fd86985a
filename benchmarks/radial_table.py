"""How far the fused path's tabulated radial weights move energies and forces, per shipped model.

Not a test (tests/model/test_kernels.py bounds the same errors). For every shipped potential,
float64, on the frames of its fixtures (tests/data/fixtures, cut from its training data):
the largest deviation of energies (relative to |E|) and forces (relative to the largest force)
between the torch ops (radial MLP) and the fused kernels with ``radial_intervals`` = 256 ... 4096,
and the fused kernels with the MLP itself (``0``: rounding only).

    python benchmarks/radial_table.py
    python benchmarks/radial_table.py --intervals 1024 2048 --dtype float32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIXTURES = {
    "gaunt-mlearn": ["mlearn_Si_3.xyz", "mlearn_Cu_1.xyz", "mlearn_Mo_1.xyz"],
    "gaunt-3bpa": ["3bpa_train_300K_3.xyz"],
    "gaunt-rmd17-ethanol": ["rmd17_ethanol_3.xyz"],
    "gaunt-rmd17-aspirin": ["rmd17_aspirin_3.xyz"],
}


def main() -> None:
    import torch

    from gaunt_md import available_models
    from gaunt_md.calculator import GauntCalculator
    from gaunt_md.data.datasets import read_labelled

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, nargs="+", default=[0, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {args.dtype}; energy: max |dE| / |E|; forces: max |dF| / max |F| (over atoms and frames)")
    print("| model | frames | " + " | ".join(f"{n or 'MLP'}: energy, forces" for n in args.intervals) + " |")
    print("|---|---|" + "---|" * len(args.intervals))
    for name, files in FIXTURES.items():
        if name not in available_models():
            continue
        frames = [s.atoms for f in files for s in read_labelled(ROOT / "tests" / "data" / "fixtures" / f)]
        ref_calc = GauntCalculator(name, device="cpu", dtype=args.dtype, fused=False)
        ref = ref_calc.calculate_batch(frames, properties=("energy", "forces"))
        cells = []
        for n in args.intervals:
            calc = GauntCalculator(name, device="cpu", dtype=args.dtype, fused=True, radial_intervals=n)
            out = calc.calculate_batch(frames, properties=("energy", "forces"))
            de = max(abs(o["energy"] - r["energy"]) / abs(r["energy"]) for o, r in zip(out, ref))
            f_max = max(np.abs(r["forces"]).max() for r in ref)
            df = max(np.abs(o["forces"] - r["forces"]).max() for o, r in zip(out, ref)) / f_max
            cells.append(f"{de:.1e}, {df:.1e}")
        print(f"| {name} | {len(frames)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
