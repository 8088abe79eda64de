"""``internvideo2 search INDEX "a red star moving to the left" [-k 10] [--json] [--rerank] [--exact] [--model M]``

Prints the ``k`` best items of an index for a text, best first: rank, file, start-end (``m:ss.s``) and score
(cosine in the model's video-text space, or the ITM match probability with ``--rerank``). ``--json`` prints
one JSON object per result (JSON lines: ``rank``, ``id``, ``path``, ``start_s``, ``end_s``, ``score``).
Items that re-ranking had to leave out (a file gone or changed since indexing) are listed on stderr; the exit
code stays 0 (the results shown are complete for what the files allow). Errors follow the package's CLI
rules: a bad flag or another model than the index's -> exit 2 naming the flag; a failure -> exit 1.
"""
from __future__ import annotations

import argparse
import json
import sys

from .index import Index, SearchResult


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", metavar="INDEX", help="an index folder (internvideo2 index ... -o INDEX)")
    parser.add_argument("query", metavar="QUERY", help="what to find, in words")
    parser.add_argument("-k", type=int, default=10, help="results to print (default 10)")
    parser.add_argument("--json", action="store_true", help="JSON lines, one object per result")
    parser.add_argument("--rerank", action="store_true",
                        help="re-score the top candidates with the ITM head (stage-2 models; decodes them again)")
    parser.add_argument("--rerank-k", type=int, default=None, metavar="N",
                        help="candidates re-scored with --rerank (default max(k, 16))")
    parser.add_argument("--exact", action="store_true", help="exact search even above the ANN threshold")
    parser.add_argument("--model", default=None, metavar="M",
                        help="the model to embed the query with (default: the one recorded in the index; "
                             "another model is refused)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")


def format_time(seconds: float) -> str:
    """``m:ss.s`` (``h:mm:ss.s`` from one hour): 75.25 -> ``1:15.2``."""
    tenths = int(round(max(0.0, float(seconds)) * 10))
    s10 = tenths % 600
    m = tenths // 600
    if m >= 60:
        return f"{m // 60}:{m % 60:02d}:{s10 // 10:02d}.{s10 % 10}"
    return f"{m}:{s10 // 10:02d}.{s10 % 10}"


def format_result(res: SearchResult) -> str:
    """The table ``internvideo2 search`` prints (no trailing newline; empty for no hits)."""
    if not res.hits:
        return ""
    rows = [(f"{r}", h.path, f"{format_time(h.start_s)}\u2013{format_time(h.end_s)}", f"{h.score:.4f}")
            for r, h in enumerate(res.hits, 1)]
    head = ("#", "file", "start\u2013end", "ITM prob" if res.reranked else "cosine")
    w = [max(len(head[c]), *(len(r[c]) for r in rows)) for c in range(4)]
    lines = [f"{head[0]:>{w[0]}}  {head[1]:<{w[1]}}  {head[2]:<{w[2]}}  {head[3]:>{w[3]}}"]
    lines += [f"{r[0]:>{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:>{w[3]}}" for r in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..utils.paths import input_dir

    input_dir(args.index, "index")
    with Index(args.index, model=args.model, device=args.device) as index:
        res = index.search_result(args.query, args.k, rerank=args.rerank, rerank_k=args.rerank_k,
                                  exact=True if args.exact else None)
    for s in res.skipped:
        detail = f" ({s.detail})" if s.detail else ""
        print(f"internvideo2 search: warning: re-ranking skipped item {s.id} of {s.path}: {s.reason}{detail}",
              file=sys.stderr)
    if args.json:
        for r, h in enumerate(res.hits, 1):
            print(json.dumps({"rank": r, **h.to_json()}, ensure_ascii=False))
    elif res.hits:
        print(format_result(res))
    else:
        print("no results: the index holds no items", file=sys.stderr)
    return 0
