"""The dependency rule (pyproject's [tool.importlinter] contracts) holds for the whole package.

cli -> {export, quantize, bench, evaluation, training} -> runtime -> {processing, modeling,
checkpoint, ops, model_file, ...} -> {config, structures} -> errors, and no cycles between
packages: a wrong-way import anywhere (including one inside a function) fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_follow_the_layers():
    beside_python = Path(sys.executable).with_name("lint-imports")  # the [test] extra of this interpreter
    exe = str(beside_python) if beside_python.is_file() else shutil.which("lint-imports")
    assert exe, "lint-imports not found: install the [test] extra (import-linter)"
    result = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
