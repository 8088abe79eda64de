"""``internvideo2 convert FILE -o DIR``: a released (pickled) checkpoint -> our format (``config.json`` +
``model.safetensors``), so later loads read no pickle at all and need no detection.

The file is loaded exactly as ``load_model`` loads it (detected, strict); ``--name`` also checks it is the
released file named (``internvideo2 info --released``). CLIP S/B/L models are assembled from three files:
``convert clip/B14/pytorch_model.bin --vision B14_ft_k710_f8.bin --text mobileclip_blt.pt -o DIR``.
The folder records where it came from (file names, sha256, detected class) in ``config.json``'s ``extra``.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("internvideo2.checkpoint")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the checkpoint file (.pt/.pth/.bin/.safetensors)")
    parser.add_argument("-o", "--out", required=True, help="output folder (config.json + model.safetensors)")
    parser.add_argument("--name", default=None, help="the released file's official name or tag: check the file is it")
    parser.add_argument("--vision", default=None, help="CLIP S/B/L: the vision file (e.g. B14_ft_k710_f8)")
    parser.add_argument("--text", default=None, help="CLIP S/B/L: the text file (mobileclip_blt.pt)")
    parser.add_argument("--vision-only", action="store_true", help="keep only the vision encoder of a multi-part file")
    parser.add_argument("--no-verify-sha256", action="store_true", help="skip the published-sha256 check of --name")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..utils.paths import input_file, output_dir
    from .detect import detect_checkpoint
    from .io import read_checkpoint, unwrap_state_dict
    from .loader import load_clip_parts, load_model
    from .pretrained import file_sha256, save_pretrained

    input_file(args.file, "file")
    if (args.vision is None) != (args.text is None):
        raise ConfigError("vision", "--vision and --text go together (the parts of a CLIP S/B/L model)")
    for name in ("vision", "text"):
        if getattr(args, name):
            input_file(getattr(args, name), name)
    out = output_dir(args.out, "out")
    files = {"file": args.file} | ({"vision": args.vision, "text": args.text} if args.vision else {})
    if args.name:
        path = {"clip": args.file, "vision": args.vision, "text": args.text} if args.vision else args.file
        model = load_model(args.name, path=path, verify_sha256=not args.no_verify_sha256,
                           vision_only=args.vision_only)
    elif args.vision:
        model = load_clip_parts(vision=args.vision, text=args.text, clip=args.file)
    else:
        model = load_model(args.file, vision_only=args.vision_only)
    extra = {"converted_from": {part: {"file": Path(p).name, "sha256": file_sha256(p)} for part, p in files.items()}}
    if not args.vision:
        det = detect_checkpoint(unwrap_state_dict(read_checkpoint(args.file), args.file)[0], source=args.file,
                                vision_only=args.vision_only)
        extra.update(official_class=det.official_class, kind=det.kind)
    if args.name:
        extra["released_name"] = args.name
    save_pretrained(model, out, extra=extra)
    print(f"{args.file} -> {out} ({model.model_type}; {model.load_report.summary()})")
    return 0
