"""Every example script runs to the end (slow: each one takes 10-60 s on 2 cores)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    if script.stem == "md_3bpa":
        import gaunt_md

        if "gaunt-3bpa" not in gaunt_md.available_models():
            pytest.skip("gaunt-3bpa is not installed")
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "gaunt_results" / "examples").is_dir()
