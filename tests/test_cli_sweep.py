"""Every subcommand (and every ``eval`` task) against the usual mistakes: no arguments, ``--help``, a missing
file, a folder where a file is expected, an unwritable output. Each answer is one error line naming the flag
or file (argparse's usage lines may precede it), no traceback, and the documented exit code: 2 for usage
(nothing was done), 1 for failed work. ``probe`` and ``segment`` take many files and report each one: a
missing or unusable file is a JSON error line and exit 1, the others are still processed.

Runs in real subprocesses; the unwritable-output cases run without root's capabilities
(:func:`conftest.unprivileged`) so that file permissions bind."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, foreign, unprivileged

from internvideo2.cli import COMMANDS
from internvideo2.data.synth import SynthConfig, SynthWorld, write_clip
from internvideo2.eval.cli import TASKS

ALL = sorted(COMMANDS) + [f"eval {t}" for t in sorted(TASKS)]


def _run(argv: list, prefix=None, timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "internvideo2.cli", *map(str, argv)]
    return subprocess.run(prefix(cmd) if prefix else cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _error_line(p: subprocess.CompletedProcess, rc: int, prog: str, *needles: str) -> str:
    err = p.stderr.strip()
    assert p.returncode == rc, (p.returncode, p.stdout[-1500:], err[-3000:])
    assert "Traceback" not in err, err
    lines = err.splitlines()
    errors = [ln for ln in lines if ": error:" in ln or ": internal error:" in ln]
    assert len(errors) == 1 and errors[0] == lines[-1], err  # usage lines first (argparse), then one error
    assert errors[0].startswith(prog.split()[0] + " " + prog.split()[1]), errors[0]
    assert "internal error" not in errors[0], errors[0]
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A scratch folder with: a folder, a locked folder (another user's, 0700), a tiny saved model."""
    from internvideo2.checkpoint.pretrained import save_pretrained
    from internvideo2.models import create_model

    d = tmp_path_factory.mktemp("sweep")
    (d / "adir").mkdir()
    locked = d / "locked"
    locked.mkdir()
    foreign(locked, 0o700)
    d.chmod(0o755)
    save_pretrained(create_model("tiny", "stage2"), d / "model")
    save_pretrained(create_model("tiny", "classifier", num_classes=4), d / "cls")
    (d / "gt.json").write_text('{"database": {}}')
    (d / "ann.json").write_text('[{"video": "a.mp4", "caption": "a thing"}]')
    # a real (tiny, synthetic) video: the commands taking one open it only after the checks under test,
    # but the sweep must not depend on ../shared/assets being present
    world = SynthWorld(seed=0, split="train", cfg=SynthConfig(num_frames=4, size=32, audio=False))
    write_clip(d / "clip.mp4", world.render(0))
    return {"dir": d, "adir": d / "adir", "locked": locked, "model": d / "model", "cls": d / "cls"}


# one invocation per command with its required inputs present (a model, a video, an annotation file), as
# a template: {in} is replaced by the input under test, {out} by the output under test
def _templates(f: dict[str, Path]) -> dict[str, dict[str, list]]:
    video, recipe = f["dir"] / "clip.mp4", ROOT / "configs" / "demo" / "clip_teacher.yaml"
    ann, model = f["dir"] / "ann.json", f["model"]
    return {
        "probe": {"in": ["{in}"]},
        "segment": {"in": ["{in}"]},
        "synth": {"out": ["--out", "{out}", "--num", "2", "--annotations-only", "--quiet"]},
        "train": {"in": ["{in}"], "out": [recipe, "output_dir={out}", "--quiet"]},
        "finetune": {"in": ["{in}"]},
        "embed": {"in": ["{in}", "--model", model, "-o", f["dir"] / "e"],
                  "model": [video, "--model", "{in}", "-o", f["dir"] / "e"],
                  "out": [video, "--model", model, "-o", "{out}"]},
        "info": {"in": ["{in}"]},
        "convert": {"in": ["{in}", "-o", f["dir"] / "c"], "out": [video, "-o", "{out}"]},
        "index": {"in": ["{in}", "--model", model, "-o", f["dir"] / "i"],
                  "model": [video, "--model", "{in}", "-o", f["dir"] / "i"],
                  "out": [video, "--model", model, "-o", "{out}"]},
        "serve": {"in": ["{in}"]},
        "search": {"in": ["{in}", "a red star"]},
        "demo": {"in": ["--configs", "{in}", "--out", f["dir"] / "d"], "out": ["--quick", "--out", "{out}"]},
        "eval": {},  # dispatches to the tasks below
        "eval tal": {"in": ["--gt", "{in}", "--pred", "{in}"], "out": ["--gt", f["dir"] / "gt.json", "--pred",
                                                                     f["dir"] / "gt.json", "-o", "{out}"]},
        "eval moments": {"in": ["--gt", "{in}", "--pred", "{in}"]},
        "eval retrieval": {"in": ["--model", model, "--data", "{in}"], "model": ["--model", "{in}", "--data", ann],
                           "out": ["--model", model, "--data", ann, "-o", "{out}"]},
        "eval mc": {"in": ["--model", model, "--data", "{in}"], "out": ["--model", model, "--data", ann, "-o",
                                                                      "{out}"]},
        "eval zeroshot-cls": {"in": ["--model", model, "--data", ann, "--classes", "{in}"],
                              "out": ["--model", model, "--data", ann, "--classes", ann, "-o", "{out}"]},
        "eval cls": {"in": ["--model", f["cls"], "--data", "{in}"], "model": ["--model", "{in}", "--data", ann],
                     "out": ["--model", f["cls"], "--data", ann, "-o", "{out}"]},
    }


_ROLES = {cmd: set(t) for cmd, t in _templates({k: Path(k) for k in ("dir", "adir", "model", "cls")}).items()}


def _with(role: str) -> list[str]:
    return [c for c in ALL if role in _ROLES[c]]


def _argv(cmd: str, template: list, **subs) -> list:
    out = cmd.split()
    for a in template:
        s = str(a)
        for k, v in subs.items():
            s = s.replace("{" + k + "}", str(v))
        out.append(s)
    return out


def test_every_command_is_swept(files):
    assert sorted(_templates(files)) == sorted(ALL)


@pytest.mark.parametrize("cmd", ALL)
def test_help(cmd):
    p = _run([*cmd.split(), "--help"])
    assert p.returncode == 0 and p.stdout.startswith(f"usage: internvideo2 {cmd}"), p.stderr
    assert not p.stderr


@pytest.mark.parametrize("cmd", [c for c in ALL if c != "demo"])  # `demo` alone runs the demo
def test_no_arguments(cmd):
    p = _run(cmd.split())
    if cmd == "info":  # lists what the package knows
        assert p.returncode == 0 and "model types" in p.stdout, p.stderr
        return
    _error_line(p, 2, f"internvideo2 {cmd}", "required")


@pytest.mark.parametrize("kind", ["missing", "folder"])
@pytest.mark.parametrize("cmd", _with("in"))
def test_bad_input_path(files, cmd, kind):
    t = _templates(files)[cmd]
    if kind == "missing":
        path = files["dir"] / "no_such_file.json"
    elif cmd in ("demo",):  # --configs is a folder: give a file instead
        path = files["dir"] / "gt.json"
    else:
        path = files["adir"]
    p = _run(_argv(cmd, t["in"], **{"in": path}))
    if cmd in ("probe", "segment"):  # many-file tools: one JSON error line per file, exit 1
        assert p.stdout.count('"error"') == 1 and str(path.name) in p.stdout, p.stdout
        _error_line(p, 1, f"internvideo2 {cmd}", "1 of 1")
    elif cmd == "info" and kind == "folder":  # a folder is a valid input: it is not a model
        _error_line(p, 1, "internvideo2 info", str(path))
    else:
        _error_line(p, 2, f"internvideo2 {cmd}", str(path))


@pytest.mark.parametrize("cmd", _with("model"))
def test_bad_model_path(files, cmd):
    t = _templates(files)[cmd]
    missing = files["dir"] / "no_model"
    _error_line(_run(_argv(cmd, t["model"], **{"in": missing})), 2, f"internvideo2 {cmd}", "--model", str(missing))
    not_a_model = files["adir"]  # exists, but holds no model: the work fails (exit 1) naming it
    _error_line(_run(_argv(cmd, t["model"], **{"in": not_a_model})), 1, f"internvideo2 {cmd}", str(not_a_model))


@pytest.mark.parametrize("kind", ["unwritable", "file_for_folder"])
@pytest.mark.parametrize("cmd", _with("out"))
def test_bad_output(files, cmd, kind):
    t = _templates(files)[cmd]
    is_file_output = cmd.startswith("eval")
    if kind == "unwritable":
        out = files["locked"] / ("r.json" if is_file_output else "out")
        p = _run(_argv(cmd, t["out"], out=out), prefix=unprivileged)
        _error_line(p, 2, f"internvideo2 {cmd}", "permission denied", str(out))
    else:
        out = files["adir"] if is_file_output else files["dir"] / "gt.json"
        p = _run(_argv(cmd, t["out"], out=out))
        _error_line(p, 2, f"internvideo2 {cmd}", str(out))
