"""``internvideo2 info [CHECKPOINT]``: what the package knows (presets with parameter counts, model types,
training tasks, official classes), or what a checkpoint file holds (detected kind, sizes, key groups)."""
from __future__ import annotations

import argparse
import json
from collections import Counter


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="a checkpoint file or saved model folder to inspect")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--released", action="store_true",
                        help="list every released InternVideo2 file: what it is and where it is published")


def _presets() -> list[dict]:
    import torch

    from .models import VisionTransformer, list_presets, vision_config

    rows = []
    for name in list_presets():
        cfg = vision_config(name)
        with torch.device("meta"):
            n = sum(p.numel() for p in VisionTransformer(cfg).parameters())
        rows.append({"preset": name, "width": cfg.embed_dim, "depth": cfg.depth, "heads": cfg.num_heads,
                     "frames": cfg.num_frames, "img_size": cfg.img_size, "params_M": round(n / 1e6, 2)})
    return rows


def _inspect(path: str) -> dict:
    from pathlib import Path

    from .checkpoint.detect import detect_checkpoint
    from .checkpoint.io import read_checkpoint, unwrap_state_dict
    from .checkpoint.pretrained import CONFIG_FILE, inspect_pretrained
    from .errors import CheckpointError

    p = Path(path)
    if p.is_dir() and (p / CONFIG_FILE).is_file():
        return {**inspect_pretrained(p), "status": "ok"}
    sd, container = unwrap_state_dict(read_checkpoint(p), str(p))
    groups = Counter(k.split(".")[0] for k in sd)
    out = {"path": str(p), "container": container, "tensors": len(sd),
           "parameters_M": round(sum(v.numel() for v in sd.values()) / 1e6, 2), "key_groups": dict(groups)}
    try:
        det = detect_checkpoint(sd, source=str(p))
        out.update(kind=det.kind, official_class=det.official_class, model_type=det.model_type, **det.summary)
        if det.unsupported:
            out["loads_as"] = det.unsupported
    except CheckpointError as e:
        out["detected"] = f"not a released InternVideo2 layout: {e}"
    return out


def _released(as_json: bool) -> int:
    import dataclasses

    from .checkpoint.zoo import RELEASED

    rows = [dataclasses.asdict(r) | {"model_type": r.model_type} for r in RELEASED]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'tag':<20}{'official file':<36}{'kind':<15}{'preset':<18}{'frames':>6}{'size':>6}{'classes':>8}  text")
    for r in RELEASED:
        print(f"{r.tag:<20}{r.name:<36}{r.kind:<15}{r.preset:<18}{r.frames:>6}{r.img_size:>6}"
              f"{r.num_classes or '':>8}  {r.text or ''}")
    print("\nnormalisation: ImageNet mean/std for every InternVideo2 file; licence: " + RELEASED[0].license)
    print("load with internvideo2.load_model('<tag or file name>', path=<your local copy>); the package never "
          "downloads.\nWhere each is published, sha256 and notes: internvideo2 info --released --json")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.released:
        return _released(args.json)
    if args.checkpoint:
        from .utils.paths import input_path

        input_path(args.checkpoint, "checkpoint")
        info = _inspect(args.checkpoint)
        print(json.dumps(info, indent=2, default=str))
        return 0
    from .checkpoint.official import OFFICIAL_CLASSES
    from .models.registry import model_types
    from .train.tasks import available_tasks

    info = {"presets": _presets(), "model_types": model_types(), "tasks": available_tasks(),
            "official_classes": sorted(OFFICIAL_CLASSES)}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{'preset':<18}{'width':>6}{'depth':>6}{'heads':>6}{'frames':>7}{'size':>6}{'params (M)':>12}")
    for r in info["presets"]:
        print(f"{r['preset']:<18}{r['width']:>6}{r['depth']:>6}{r['heads']:>6}{r['frames']:>7}{r['img_size']:>6}"
              f"{r['params_M']:>12.2f}")
    print("\nmodel types: " + ", ".join(info["model_types"]))
    print("training tasks: " + ", ".join(info["tasks"]))
    print("official classes loadable with load_model(..., official_class=...):")
    for c in info["official_classes"]:
        print("  " + c)
    return 0
