"""Every command of ``internvideo2`` answers ``--help`` in a real subprocess, and bad usage exits non-zero."""
from __future__ import annotations

import subprocess
import sys

import pytest

from internvideo2.cli import COMMANDS


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "internvideo2.cli", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command):
    p = _run(command, "--help")
    assert p.returncode == 0, p.stderr
    assert "usage: internvideo2" in p.stdout


def test_eval_subcommands_parse(tmp_path):
    p = _run("eval", "tal", "--help")
    assert p.returncode == 0 and "--gt" in p.stdout, p.stderr
    p = _run("eval", "tal", "--gt", str(tmp_path / "missing.json"), "--pred", str(tmp_path / "p.json"))
    assert p.returncode == 2 and "missing.json" in p.stderr


def test_unknown_command_fails():
    p = _run("frobnicate")
    assert p.returncode != 0 and "unknown command" in p.stderr
