#!/usr/bin/env bash
# Train the molecular potentials one after another (each stops at its max_time_min, resumably).
set -u
cd "$(dirname "$0")/.."
for name in gaunt-rmd17-ethanol gaunt-3bpa gaunt-rmd17-aspirin; do
  resume=""; [ -f "training/$name/state.pt" ] && resume="--resume"
  .venv/bin/python -m gaunt_md.train train --config "potentials/$name/train.yaml" --threads 1 --quiet $resume >> "training/$name.log" 2>&1
done
