"""`pip install .` (not editable) gives a complete package: every part of the namespace and its data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import sys
from importlib.resources import files
import augscale
assert augscale.__file__.startswith(sys.argv[1]), augscale.__file__  # the installed copy, not the tree
import augscale.cli, augscale.datasets_cache.snapshot, augscale.augment.pipeline, augscale.augment.llm.base
import augscale.train.loop, augscale.evaluate.report, augscale.experiment.runner, augscale.tasks.sqlexec
from augscale.augment.llm.prompts import load_template
assert load_template("gsm8k_evolve").fields  # the template file shipped
assert "kind: ablate" in (files("augscale") / "defaults" / "demo.yaml").read_text()
print("ok")
"""


def test_plain_pip_install_is_complete(tmp_path):
    target = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "pip", "install", str(ROOT), "--no-deps", "--no-build-isolation",
                            "--target", str(target), "-q"], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "absent from the `packages` configuration" not in built.stderr
    ran = subprocess.run([sys.executable, "-c", CHECK, str(target)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert ran.returncode == 0 and ran.stdout.strip() == "ok", ran.stderr[-3000:]
