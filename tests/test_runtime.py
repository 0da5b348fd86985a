"""gaunt_md.runtime: process-wide settings, each checked in a fresh interpreter (never this one)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SNIPPET = "from gaunt_md.runtime import keep_freed_memory; print(keep_freed_memory())"


def _run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GAUNT_MD_MALLOC"))}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_applies_on_glibc_and_defers_to_the_user():
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else ""
    if not libc or "glibc" not in libc:
        pytest.skip("not glibc")
    assert _run({}) == "True"
    assert _run({"GAUNT_MD_MALLOC": "default"}) == "False"
    assert _run({"MALLOC_MMAP_MAX_": "0"}) == "False"  # the user's own setting wins


def test_calculator_sizes_cpu_batches_by_the_allocator():
    """1024-atom CPU batches under glibc's default allocator (it maps big blocks afresh on every
    call), 8192 where freed memory is kept; in a fresh interpreter each."""
    code = ("import sys; from gaunt_md.runtime import keep_freed_memory, freed_memory_kept; "
            "keep = sys.argv[1] == 'keep' and keep_freed_memory(); "
            "from gaunt_md.calculator import GauntCalculator; calc = GauntCalculator(dtype='float32'); "
            "print(freed_memory_kept(), calc.fused, calc.max_batch_atoms)")
    out = {}
    for mode, extra in (("default", {}), ("keep", {}), ("env", {"MALLOC_MMAP_MAX_": "0"})):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GAUNT_MD_MALLOC"))}
        env.update(extra)
        out[mode] = subprocess.run([sys.executable, "-c", code, mode], env=env, capture_output=True, text=True,
                                   check=True).stdout.split()
    if out["default"][1] != "True":
        pytest.skip("no fused kernels here (no C++ compiler)")
    assert out["default"] == ["False", "True", "1024"]
    if sys.platform.startswith("linux") and "glibc" in (os.confstr("CS_GNU_LIBC_VERSION") or ""):
        assert out["keep"] == ["True", "True", "8192"]
    assert out["env"] == ["True", "True", "8192"]


def test_cli_applies_it(monkeypatch, tmp_path):
    import gaunt_md.cli as cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main(["models"]) == 0
    assert calls == [1]
