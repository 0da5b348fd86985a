#!/usr/bin/env bash
# A/B test of message normalisation (ModelConfig.message_scales, `normalize_messages`): the
# ethanol recipe of potentials/gaunt-rmd17-ethanol trained twice from scratch, identical except
# for that option, side by side (1 thread each), then validation errors compared epoch by epoch.
#   bash training/ab_message_scales.sh [MINUTES]        (default 20 per run; runs/ab/ holds both)
set -eu
cd "$(dirname "$0")/.."
minutes="${1:-20}"
mkdir -p runs/ab
for mode in true false; do
  .venv/bin/python -m gaunt_md.train train --config potentials/gaunt-rmd17-ethanol/train.yaml --threads 1 --quiet \
    --output-dir "runs/ab/normalize-$mode" --normalize-messages "$mode" --max-time-min "$minutes" \
    > "runs/ab/normalize-$mode.out" 2>&1 &
done
wait
.venv/bin/python - <<'PY'
import csv
runs = {m: list(csv.DictReader(open(f"runs/ab/normalize-{m}/log.csv"))) for m in ("true", "false")}
last = min(len(r) for r in runs.values())
print("validation MAE, ethanol (50 configs): energy meV/atom / forces meV/Å")
print("| epoch | normalize_messages=true | normalize_messages=false |")
print("|---|---|---|")
for e in sorted({1, 10, 25, 50, 100, 150, 200, 300, 400, last} & set(range(1, last + 1))):
    cells = [f"{float(runs[m][e-1]['all/energy_mae']):.2f} / {float(runs[m][e-1]['all/forces_mae']):.1f}" for m in ("true", "false")]
    print(f"| {e} | " + " | ".join(cells) + " |")
for m, rows in runs.items():
    best = min(rows, key=lambda r: float(r["valid_loss"]))
    print(f"normalize_messages={m}: {len(rows)} epochs, best valid loss {float(best['valid_loss']):.4g} at epoch {best['epoch']}: "
          f"{float(best['all/energy_mae']):.2f} meV/atom / {float(best['all/forces_mae']):.1f} meV/Å")
PY
