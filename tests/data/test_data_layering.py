"""The data layer imports only layer-0 modules of gaunt_md (see ARCHITECTURE.md)."""

from __future__ import annotations

import subprocess
import sys


def test_data_imports_no_higher_layer() -> None:
    code = (
        "import sys, gaunt_md.data\n"
        "bad = sorted(m for m in sys.modules if m.startswith('gaunt_md.') and m.split('.')[1] "
        "not in ('data', 'errors', 'units'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
