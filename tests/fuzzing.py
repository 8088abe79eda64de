"""Fuzzing every parser and reader users feed files to.

Each *target* turns seed files (real assets, the synthetic world's annotation files, saved tiny models,
the repository's recipes, the evaluation fixtures) into mutated inputs — byte flips, truncations, spliced
and duplicated chunks, and structure-aware edits of JSON/JSONL/CSV/YAML (values replaced by other types,
NaN/inf, huge numbers, missing and unknown keys, empty lists, non-UTF-8 bytes) — and runs the package's
reader on each one in a worker process. The oracle, for every input:

* it ends in a result or a typed error (:class:`internvideo2.errors.InternVideo2Error`); any other
  exception is a finding;
* it ends within the per-input timeout (the worker is killed and restarted otherwise: a hang is a finding);
* it writes no file: the worker's working folder and the input's folder hold nothing new afterwards.

Inputs are derived from ``(seed, target, index)`` with the package's seed rule, so a finding is reproduced
by its index. Findings are copied to ``--keep`` (default: a temporary folder) with a JSON line each.

``make test`` runs a bounded budget (``tests/test_fuzz.py``; ``INTERNVIDEO2_FUZZ_SECONDS``, default 60 s
over all targets). A longer run, e.g. overnight on a machine without CI::

    .venv/bin/python tests/fuzzing.py --seconds 3600 --seed 1 --keep fuzz-findings
    .venv/bin/python tests/fuzzing.py --target media --seconds 600
    .venv/bin/python tests/fuzzing.py --target annotations.classification --index 123   # reproduce one input
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import math
import os
import random
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INTERNVIDEO2_SHARED", ROOT.parent / "shared"))
ASSETS = SHARED / "assets"
EVAL_DATA = ROOT / "tests" / "data" / "eval"

# ================================================================================================ mutations

_ODD_VALUES: list = [None, True, False, 0, -1, 1, 2**31, -(2**63), 10**30, 1e308, -1e-308, math.nan, math.inf,
                     -math.inf, 0.5, "", " ", "x" * 2000, "\u0000", "ü\u202e", "../../etc/passwd", "1e9", "NaN",
                     [], {}, [None], [[[]]], {"": None}, [1, "a", None], {"a": {"b": {"c": []}}}]


def odd_value(rng: random.Random):
    return copy.deepcopy(rng.choice(_ODD_VALUES))


def mutate_bytes(data: bytes, rng: random.Random, other: bytes | None = None) -> bytes:
    """One to three byte-level edits."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["flip", "flip", "zero", "truncate", "insert", "duplicate", "splice", "header"])
        n = len(b)
        if n == 0:
            b = bytearray(rng.randbytes(rng.randint(1, 64)))
            continue
        i = rng.randrange(n)
        if op == "flip":
            for _ in range(rng.choice([1, 1, 4, 32])):
                j = rng.randrange(n)
                b[j] ^= 1 << rng.randrange(8)
        elif op == "zero":
            k = rng.choice([1, 16, 512, 8192])
            b[i:i + k] = bytes(len(b[i:i + k]))
        elif op == "truncate":
            b = b[:i]
        elif op == "insert":
            b[i:i] = rng.randbytes(rng.choice([1, 7, 100, 4096]))
        elif op == "duplicate":
            k = rng.choice([4, 100, 4096])
            b[i:i] = b[i:i + k]
        elif op == "splice" and other:
            j = rng.randrange(len(other))
            b = b[:i] + bytearray(other[j:j + rng.choice([100, 4096, 65536])]) + b[i:]
        elif op == "header":
            k = min(n, rng.choice([4, 16, 64]))
            b[:k] = rng.randbytes(k)
    return bytes(b)


def _containers(node, depth: int = 0, out: list | None = None) -> list:
    """Every dict and list in a parsed tree (the first 200 children of each, 12 levels deep)."""
    out = [] if out is None else out
    if isinstance(node, (dict, list)) and depth < 12:
        out.append(node)
        for v in list(node.values() if isinstance(node, dict) else node)[:200]:
            _containers(v, depth + 1, out)
    return out


def mutate_tree(tree, rng: random.Random, edits: int | None = None):
    """Structure-aware edits of a parsed JSON/YAML value: replace, delete or add a node somewhere."""
    tree = copy.deepcopy(tree)
    for _ in range(edits or rng.randint(1, 3)):
        parents = _containers(tree)
        if not parents:
            return odd_value(rng)
        node = rng.choice(parents)
        op = rng.choice(["replace", "replace", "replace", "delete", "add", "empty", "duplicate"])
        if isinstance(node, dict):
            keys = list(node)
            if op == "replace" and keys:
                node[rng.choice(keys)] = odd_value(rng)
            elif op == "delete" and keys:
                del node[rng.choice(keys)]
            elif op == "add":
                node[rng.choice(["unknown_key", "", "label", "video", "score", "caption", "segment"])] = odd_value(rng)
            elif op == "empty":
                node.clear()
        else:
            if op == "replace" and node:
                node[rng.randrange(len(node))] = odd_value(rng)
            elif op == "delete" and node:
                del node[rng.randrange(len(node))]
            elif op == "add":
                node.insert(rng.randint(0, len(node)), odd_value(rng))
            elif op == "empty":
                node.clear()
            elif op == "duplicate" and node:
                node.extend(copy.deepcopy(node[: rng.randint(1, len(node))]))
    return tree


def dump_json(value, rng: random.Random) -> bytes:
    try:
        text = json.dumps(value, allow_nan=True, indent=rng.choice([None, 1]))
    except (TypeError, ValueError, RecursionError):
        text = "[]"
    return text.encode()


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.2:
        return mutate_bytes(data, rng)
    try:
        tree = json.loads(data)
    except ValueError:
        return mutate_bytes(data, rng)
    return dump_json(mutate_tree(tree, rng), rng)


def mutate_lines(data: bytes, rng: random.Random, structured: bool = False) -> bytes:
    """Line formats (CSV, ``path label`` lists, JSONL): line edits, field edits, encoding damage."""
    if rng.random() < 0.15:
        return mutate_bytes(data, rng)
    lines = data.split(b"\n")
    for _ in range(rng.randint(1, 3)):
        if not lines:
            lines = [b""]
        i = rng.randrange(len(lines))
        op = rng.choice(["delete", "duplicate", "swap", "field", "garbage", "long", "blank", "bom"])
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "field":
            if structured:
                try:
                    lines[i] = dump_json(mutate_tree(json.loads(lines[i]), rng), rng).replace(b"\n", b" ")
                    continue
                except ValueError:
                    pass
            sep = b"," if b"," in lines[i] else b" "
            parts = lines[i].split(sep)
            k = rng.randrange(len(parts))
            parts[k] = rng.choice([b"", b"-1", b"3.5", b"nan", b"1e400", b"\xff\xfe", b'"', b"a,b", b"label",
                                   b" " * 3, str(rng.randint(-5, 10**12)).encode()])
            lines[i] = sep.join(parts)
        elif op == "garbage":
            lines[i] = rng.randbytes(rng.randint(1, 40))
        elif op == "long":
            lines[i] = lines[i] * rng.randint(50, 500)
        elif op == "blank":
            lines.insert(i, rng.choice([b"", b"   ", b"\r"]))
        elif op == "bom":
            lines[0] = b"\xef\xbb\xbf" + lines[0]
    return b"\n".join(lines)


def mutate_yaml(data: bytes, rng: random.Random) -> bytes:
    import yaml

    if rng.random() < 0.2:
        return mutate_bytes(data, rng)
    try:
        tree = yaml.safe_load(data)
    except yaml.YAMLError:
        return mutate_bytes(data, rng)
    tree = mutate_tree(tree, rng)
    try:
        return yaml.safe_dump(tree, sort_keys=False).encode()
    except yaml.YAMLError:
        return b"{}"


# ================================================================================================ targets


@dataclass
class Target:
    """``make(rng, seeds, dst_dir) -> path`` writes one input; ``run`` (in the worker) reads it."""

    name: str
    seeds: Callable[[Path], dict[str, Path]]  # builds (once) the seed files in a folder
    make: Callable[[random.Random, dict[str, Path], Path], Path]
    run: str  # "module:function" run by the worker on the input path
    timeout: float = 30.0
    weight: float = 1.0  # share of the budget


def _annotation_seeds(d: Path) -> dict[str, Path]:
    from internvideo2.data.synth import generate_world

    generate_world(d / "world", 6, seed=1, progress=False, write_videos=False)
    w = d / "world"
    seeds = {p.name: p for p in w.iterdir() if p.is_file()}
    (d / "kinetics.txt").write_text("a/b c.mp4 3\nd.mp4 0\ne.mp4 12\n")
    seeds["kinetics.txt"] = d / "kinetics.txt"
    (d / "instr.json").write_text(json.dumps([{"video": "a.mp4", "QA": [{"i": "describe", "q": "what?", "a": "x"}]},
                                              {"video": "b.mp4", "QA": [{"q": "why?", "a": "y"}]}]))
    seeds["instr.json"] = d / "instr.json"
    return seeds


def _pick(rng: random.Random, seeds: dict[str, Path], names: list[str]) -> Path:
    return seeds[rng.choice([n for n in names if n in seeds])]


def _text_input(names: list[str], structured: bool = False, suffix: str | None = None):
    def make(rng: random.Random, seeds: dict[str, Path], dst: Path) -> Path:
        src = _pick(rng, seeds, names)
        data = src.read_bytes()
        if src.suffix == ".json":
            out = mutate_json(data, rng)
        elif src.suffix in (".yaml", ".yml"):
            out = mutate_yaml(data, rng)
        else:
            out = mutate_lines(data, rng, structured=structured or src.suffix == ".jsonl")
        p = dst / (src.stem + (suffix or src.suffix))
        p.write_bytes(out)
        return p

    return make


def _media_seeds(d: Path) -> dict[str, Path]:
    from internvideo2.data.synth import SynthConfig, generate_world

    generate_world(d / "world", 2, seed=2, cfg=SynthConfig(), progress=False)
    seeds = {f"synth{p.name}": p for p in sorted((d / "world" / "videos" / "train").glob("*.mp4"))}
    if ASSETS.is_dir():
        for p in sorted(ASSETS.rglob("*")):
            if p.is_file() and p.suffix in (".mp4", ".webm", ".wav", ".ogg"):
                seeds[p.name] = p
    return seeds


def _media_input(kinds: tuple[str, ...]):
    def make(rng: random.Random, seeds: dict[str, Path], dst: Path) -> Path:
        names = [n for n in seeds if n.endswith(kinds)]
        src = seeds[rng.choice(names)]
        other = seeds[rng.choice(list(seeds))].read_bytes()
        p = dst / src.name
        p.write_bytes(mutate_bytes(src.read_bytes(), rng, other))
        return p

    return make


def _checkpoint_seeds(d: Path) -> dict[str, Path]:
    import torch

    from internvideo2.checkpoint.pretrained import save_pretrained
    from internvideo2.models import create_model

    torch.manual_seed(0)
    m = create_model("tiny", "classifier", num_classes=3, depth=1)
    save_pretrained(m, d / "folder")
    sd = m.state_dict()
    torch.save(sd, d / "zip.pth")
    torch.save({"model": sd, "epoch": 3}, d / "container.pth")
    torch.save({"module": sd}, d / "legacy.pt", _use_new_zipfile_serialization=False)
    return {"folder": d / "folder", "model.safetensors": d / "folder" / "model.safetensors",
            "config.json": d / "folder" / "config.json", "zip.pth": d / "zip.pth",
            "container.pth": d / "container.pth", "legacy.pt": d / "legacy.pt"}


def _checkpoint_file(rng: random.Random, seeds: dict[str, Path], dst: Path) -> Path:
    src = _pick(rng, seeds, ["model.safetensors", "zip.pth", "container.pth", "legacy.pt"])
    p = dst / (src.name if rng.random() < 0.8 else rng.choice(["x.pth", "x.safetensors", "x.bin"]))
    p.write_bytes(mutate_bytes(src.read_bytes(), rng))
    return p


def _checkpoint_folder(rng: random.Random, seeds: dict[str, Path], dst: Path) -> Path:
    folder = dst / "model"
    shutil.copytree(seeds["folder"], folder)
    if rng.random() < 0.6:
        (folder / "config.json").write_bytes(mutate_json(seeds["config.json"].read_bytes(), rng))
    else:
        w = folder / "model.safetensors"
        w.write_bytes(mutate_bytes(w.read_bytes(), rng))
    return folder


def _config_seeds(d: Path) -> dict[str, Path]:
    seeds = {}
    for sub in ("tiny", "demo"):
        for p in sorted((ROOT / "configs" / sub).glob("*.yaml")):
            q = d / f"{sub}_{p.name}"
            text = p.read_text()
            # the base chain stays resolvable from the copy
            text = text.replace("_base_: ", f"_base_: {ROOT / 'configs' / sub}/")
            q.write_text(text)
            seeds[q.name] = q
    return seeds


def _eval_seeds(d: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(EVAL_DATA.glob("*")) if p.suffix in (".json", ".jsonl")
            and "golden" not in p.name}


def _eval_pair(gt_names: list[str], pred_names: list[str]):
    """A pair folder: gt + pred, one of them (or both) mutated."""
    def make(rng: random.Random, seeds: dict[str, Path], dst: Path) -> Path:
        k = rng.randrange(len(gt_names))
        gt, pred = seeds[gt_names[k]], seeds[pred_names[k]]
        folder = dst / "pair"
        folder.mkdir()
        which = rng.choice(["gt", "pred", "pred", "both"])
        for role, src in (("gt", gt), ("pred", pred)):
            data = src.read_bytes()
            if which in (role, "both"):
                data = mutate_json(data, rng) if src.suffix == ".json" else mutate_lines(data, rng, structured=True)
            (folder / f"{role}{src.suffix}").write_bytes(data)
        return folder

    return make


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("annotations.video_text", _annotation_seeds, _text_input(["train.json"]),
           "internvideo2.data.annotations:read_video_text"),
    Target("annotations.classification", _annotation_seeds,
           _text_input(["train_cls.csv", "train_cls.json", "kinetics.txt"]),
           "internvideo2.data.annotations:read_classification"),
    Target("annotations.retrieval", _annotation_seeds, _text_input(["train.json"]),
           "internvideo2.data.annotations:read_retrieval"),
    Target("annotations.multiple_choice", _annotation_seeds, _text_input(["train_mc.json"]),
           "internvideo2.data.annotations:read_multiple_choice"),
    Target("annotations.instruction", _annotation_seeds, _text_input(["instr.json"]),
           "internvideo2.data.annotations:read_instruction"),
    Target("annotations.records", _annotation_seeds, _text_input(["train.jsonl"], structured=True),
           "internvideo2.data.annotations:read_jsonl"),
    Target("annotations.classes", _annotation_seeds, _text_input(["classes.json"]),
           "internvideo2.eval.zeroshot:read_classes"),
    Target("eval.tal", _eval_seeds, _eval_pair(["tal_anet_gt.json", "tal_thumos_gt.json"],
                                               ["tal_anet_pred.json", "tal_thumos_pred.json"]),
           "fuzzing:run_tal"),
    Target("eval.moments", _eval_seeds, _eval_pair(["mr_qvh_gt.jsonl", "mr_charades_gt.jsonl"],
                                                   ["mr_qvh_pred.jsonl", "mr_charades_pred.jsonl"]),
           "fuzzing:run_moments"),
    Target("media.video", _media_seeds, _media_input((".mp4", ".webm")), "fuzzing:run_video", weight=3.0),
    Target("media.audio", _media_seeds, _media_input((".wav", ".ogg", ".mp4")), "fuzzing:run_audio"),
    Target("media.shards", _media_seeds, lambda rng, seeds, dst: _shard_input(rng, seeds, dst), "fuzzing:run_shard"),
    Target("checkpoint.file", _checkpoint_seeds, _checkpoint_file, "fuzzing:run_checkpoint_file", weight=1.5),
    Target("checkpoint.folder", _checkpoint_seeds, _checkpoint_folder, "fuzzing:run_checkpoint_folder",
           weight=1.5),
    Target("config.recipe", _config_seeds, _text_input(["tiny_engine.yaml", "tiny_stage2.yaml", "demo_stage1.yaml",
                                                        "demo_finetune.yaml", "demo_clip_teacher.yaml"]),
           "fuzzing:run_recipe"),
]}


def _shard_input(rng: random.Random, seeds: dict[str, Path], dst: Path) -> Path:
    from internvideo2.data.shards import write_shards

    videos = [p for n, p in seeds.items() if n.startswith("synth")]
    shard = write_shards([{"__key__": f"{k:04d}", "mp4": p, "json": {"caption": "a red ball"}}
                          for k, p in enumerate(videos)], dst / "src", samples_per_shard=10)[0]
    p = dst / "shard.tar"
    p.write_bytes(mutate_bytes(shard.read_bytes(), rng))
    shutil.rmtree(dst / "src")
    return p


# ================================================================================================ runners
# (in the worker process; each returns something small or raises)


def run_tal(folder: str):
    from internvideo2.eval.tal import evaluate_detection_files

    return evaluate_detection_files(Path(folder) / "gt.json", Path(folder) / "pred.json")["average_mAP"]


def run_moments(folder: str):
    from internvideo2.eval.moments import charades_sta_metrics, evaluate_moments_files, load_jsonl

    gt, pred = Path(folder) / "gt.jsonl", Path(folder) / "pred.jsonl"
    if "qid" in gt.read_text(errors="replace")[:2000] and "relevant_windows" in gt.read_text(errors="replace"):
        return len(evaluate_moments_files(gt, pred))
    return len(charades_sta_metrics(load_jsonl(pred), load_jsonl(gt)))


def run_video(path: str):
    from internvideo2.data.video import probe_video, read_frames

    meta = probe_video(path, scan_packets=True, timeout=10)
    n = meta.num_frames
    idx = sorted({0, n // 2, max(n - 1, 0)})
    return tuple(read_frames(path, idx, meta=meta, timeout=10, size=(32, 32)).shape)


def run_audio(path: str):
    from internvideo2.data.audio import load_audio

    return tuple(load_audio(path, timeout=10).shape)


def run_shard(path: str):
    from internvideo2.data.shards import iter_shard

    return sum(1 for _ in iter_shard(path))


def run_checkpoint_file(path: str):
    from internvideo2.checkpoint.io import read_checkpoint, unwrap_state_dict

    sd, _ = unwrap_state_dict(read_checkpoint(path), path)
    return len(sd)


def run_checkpoint_folder(path: str):
    from internvideo2.checkpoint import load_model
    from internvideo2.checkpoint.pretrained import inspect_pretrained

    inspect_pretrained(path)
    return type(load_model(path)).__name__


def run_recipe(path: str):
    from internvideo2.train.config import load_config
    from internvideo2.train.tasks import get_task

    cfg = load_config(path)
    get_task(cfg.task.name, cfg.task.module).validate(cfg)
    return cfg.task.name


# ================================================================================================ worker


def worker_main() -> None:
    """Read ``{"run": "module:function", "path": ...}`` lines; answer one JSON line each."""
    import importlib
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(Path(__file__).parent))
    from internvideo2.errors import InternVideo2Error

    out = sys.stdout
    sys.stdout = io.StringIO()  # readers must not print into the protocol
    for line in sys.stdin:
        req = json.loads(line)
        mod, _, fn = req["run"].partition(":")
        try:
            res = getattr(importlib.import_module(mod), fn)(req["path"])
            ans = {"outcome": "ok", "result": repr(res)[:200]}
        except InternVideo2Error as e:
            ans = {"outcome": "typed", "type": type(e).__name__, "message": str(e)[:300]}
        except BaseException as e:
            ans = {"outcome": "untyped", "type": type(e).__name__, "message": str(e)[:500],
                   "traceback": traceback.format_exc()[-3000:]}
        sys.stdout.seek(0)
        sys.stdout.truncate()
        out.write(json.dumps(ans) + "\n")
        out.flush()


class Worker:
    """A worker process with a per-request timeout (a hung worker is killed and replaced)."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                            os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"], cwd=self.cwd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env)

    def ask(self, run: str, path: Path, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"run": run, "path": str(path)}) + "\n")
        self.proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout + 15)  # + the worker's start-up (imports) on the first request
        sel.close()
        if not ready:
            self.stop()
            return {"outcome": "hang", "type": "Timeout", "message": f"no answer within {timeout + 15:.0f} s"}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return {"outcome": "crash", "type": "WorkerDied", "message": f"worker exited with {code}"}
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# ================================================================================================ driver


@dataclass
class Report:
    target: str
    inputs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def fuzz_target(target: Target, *, seconds: float, seed: int, work: Path, keep: Path, worker: Worker,
                min_inputs: int = 3, index: int | None = None) -> Report:
    """Run ``target`` on mutated inputs for ``seconds`` (at least ``min_inputs``; or only input ``index``)."""
    from internvideo2.utils.seeding import derive_rng

    seed_files = seeds_for(target, work)
    rep = Report(target.name)
    t0 = time.monotonic()
    indices = [index] if index is not None else range(10**9)
    for i in indices:
        if index is None and time.monotonic() - t0 > seconds and rep.inputs >= min_inputs:
            break
        rng = derive_rng("fuzz", seed, target.name, i)
        case = work / "case"
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir()
        path = target.make(rng, seed_files, case)
        before, cwd_before = _listing(case), _listing(worker.cwd)
        ans = worker.ask(target.run, path, target.timeout)
        rep.inputs += 1
        rep.outcomes[ans["outcome"]] = rep.outcomes.get(ans["outcome"], 0) + 1
        written = sorted((_listing(case) - before) | (_listing(worker.cwd) - cwd_before))
        if ans["outcome"] not in ("ok", "typed") or written:
            if written:
                ans = {**ans, "outcome": "wrote_files", "written": written[:10]}
            dst = keep / target.name / f"{i:06d}"
            shutil.rmtree(dst, ignore_errors=True)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(case, dst)
            rep.findings.append({"target": target.name, "seed": seed, "index": i, "input": str(dst), **ans})
            for p in _listing(worker.cwd) - cwd_before:  # keep the next inputs' check meaningful
                q = worker.cwd / p
                if q.is_file():
                    q.unlink()
        shutil.rmtree(case, ignore_errors=True)
    rep.seconds = round(time.monotonic() - t0, 2)
    return rep


def seeds_for(target: Target, work: Path) -> dict[str, Path]:
    """The target's seed files, built once per work folder (targets share builders)."""
    folder = work / "seeds" / target.seeds.__name__
    index = folder.with_suffix(".json")
    if not index.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        built = target.seeds(folder)
        index.write_text(json.dumps({k: str(v) for k, v in built.items()}))
    return {k: Path(v) for k, v in json.loads(index.read_text()).items()}


def signature(f: dict) -> str:
    """Target, exception type and the innermost frame of the package (where the fix goes)."""
    where = ""
    for line in f.get("traceback", "").splitlines():
        line = line.strip()
        if line.startswith("File ") and "/internvideo2/" in line:
            where = line.split("/internvideo2/", 1)[1].replace('", line ', ":").split(",")[0]
    return f"{f['target']} {f['type']} {where}".strip()


def group_findings(findings: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for f in findings:
        groups.setdefault(signature(f), []).append(f)
    return groups


def budget_shares(names: list[str], seconds: float) -> dict[str, float]:
    total = sum(TARGETS[n].weight for n in names)
    return {n: seconds * TARGETS[n].weight / total for n in names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=600.0, help="total budget (default 600)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default=None, help="one target, or a prefix (media, annotations, ...)")
    ap.add_argument("--index", type=int, default=None, help="run only this input (reproduce a finding)")
    ap.add_argument("--keep", default=None, help="folder for the inputs of findings (default: a temp folder)")
    args = ap.parse_args(argv)
    if args.worker:
        worker_main()
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    names = [n for n in TARGETS if args.target is None or n == args.target or n.startswith(args.target + ".")]
    if not names:
        ap.error(f"unknown target {args.target!r}; choose from {', '.join(TARGETS)}")
    work = Path(tempfile.mkdtemp(prefix="internvideo2-fuzz-"))
    keep = Path(args.keep) if args.keep else work / "findings"
    (work / "cwd").mkdir()
    worker = Worker(work / "cwd")
    findings = []
    try:
        for name, secs in budget_shares(names, args.seconds).items():
            rep = fuzz_target(TARGETS[name], seconds=secs, seed=args.seed, work=work, keep=keep, worker=worker,
                              index=args.index)
            findings += rep.findings
            print(json.dumps({"target": name, "inputs": rep.inputs, "seconds": rep.seconds,
                              "outcomes": rep.outcomes, "findings": len(rep.findings)}), flush=True)
    finally:
        worker.stop()
    groups = group_findings(findings)
    for sig, group in groups.items():
        f = group[0]
        print(f"--- {len(group)} x {sig}: e.g. index {f['index']} ({f['input']}): {f['message'][:300]}", flush=True)
        if "traceback" in f:
            print(f["traceback"], file=sys.stderr)
    print(f"{len(findings)} finding(s) of {len(groups)} kind(s); inputs kept in {keep}" if findings
          else "no findings", flush=True)
    if not args.keep and not findings:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
