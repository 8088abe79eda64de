"""The layer order is a checked contract (``[tool.importlinter]`` in pyproject.toml, run by ``lint-imports``):
the package keeps it, and an upward import or a cycle breaks it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"
pytestmark = pytest.mark.skipif(not LINT.is_file(), reason="import-linter is not installed (pip install -e '.[dev]')")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_layers():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("Layers only point down", "No import cycles", "no training dependency"):
        assert f"{name}" in r.stdout


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src" / "internvideo2", tmp_path / "src" / "internvideo2",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize("module, line, broken", [
    # a model importing training code (the kind of import this contract exists for)
    ("models/vision.py", "from internvideo2.train import losses_that_do_not_exist  # noqa", "Layers only point down"),
    ("models/stage2.py", "from ..train.engine import Trainer  # noqa", "Layers only point down"),
    # data reaching up to the models
    ("data/transforms.py", "from internvideo2.models import vision  # noqa", "Layers only point down"),
    # the inference library pulling in a training dependency
    ("eval/metrics.py", "import matplotlib  # noqa", "no training dependency"),
    # a cycle between two sibling modules of one layer
    ("models/layers.py", "from . import vision  # noqa", "No import cycles"),
])
def test_a_violation_breaks_the_contract(tmp_path, module, line, broken):
    root = _copy(tmp_path)
    path = root / "src" / "internvideo2" / module
    path.write_text(path.read_text() + "\n" + line + "\n")
    r = _lint(root)
    assert r.returncode != 0
    assert f"{broken}" in r.stdout and "BROKEN" in r.stdout
    broken_line = next(ln for ln in r.stdout.splitlines() if ln.startswith(broken) or broken in ln)
    assert "BROKEN" in broken_line, r.stdout
