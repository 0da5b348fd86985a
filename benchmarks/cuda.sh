#!/usr/bin/env bash
# The checks that need a GPU, in one go (a few minutes on an H200):
#   1. pytest -m cuda: GauntCalculator on the card against the CPU, finite differences,
#      equivariance, batching, NVE, the TorchScript export (tests/test_cuda.py);
#   2. the speed table on the card, GauntCalculator against the same-size MACE
#      (benchmarks/model_speed.py --device cuda; MACE columns only where mace-torch imports);
#   3. calculate_batch over 1000 small cells against a loop of single calls, on the card.
# Usage: bash benchmarks/cuda.sh [OUTDIR]   (default benchmarks/results; files named by date)
# Needs torch with CUDA, e3nn >= 0.5, ase, matscipy and this package importable (an install, or
# PYTHONPATH=.); for the MACE columns also `pip install --no-deps mace-torch==0.3.16 torch-ema lmdb
# orjson prettytable configargparse` (the 2026-12-04 run carried these as wheels). PYTHON picks
# the interpreter (default python3).
set -uo pipefail
out=${1:-benchmarks/results}
day=$(date +%F)
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  echo "# pytest -m cuda, $(date '+%F %H:%M')"
  echo "# $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
  echo "# $($py -c "import torch, e3nn, ase; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'e3nn', e3nn.__version__, 'ase', ase.__version__)")"
  echo '```'
  $py -m pytest -o addopts="" -m cuda -v -p no:cacheprovider -W ignore::DeprecationWarning tests/test_cuda.py 2>&1
  echo '```'
} | tee "$out/cuda_tests_$day.md"

$py benchmarks/model_speed.py --device cuda --rounds 2 --min-time 0.6 \
    --systems mol27 Si64 Si216 Si512 Si1000 Cu108 Cu500 Cu1372 Si4096 Si13824 \
    --json "$out/model_speed_cuda_$day.json" 2>&1 | grep -v "^cuequivariance" | tee "$out/model_speed_cuda_$day.md"

$py benchmarks/model_speed.py --device cuda --batch --rounds 1 2>&1 | grep -v "^cuequivariance" \
    | tee "$out/model_batch_cuda_$day.md"
