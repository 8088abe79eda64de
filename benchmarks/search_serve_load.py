"""Throughput of ``internvideo2 serve`` under concurrent clients (issue 16's "16 concurrent clients" number).

Starts ``internvideo2 serve INDEX --port 0`` in a subprocess (the real server: uvicorn, one process), waits
for it, sends one warm-up query, then ``clients`` threads, each with its own keep-alive HTTP connection, share
a bounded number of ``GET /api/search?q=...&k=...`` requests (the queries cycle through a fixed list). Reported:
requests per second over the whole run, latency p50/p95/max as seen by the clients (queueing included: the
server answers one search at a time, so p50 grows with the number of clients), and the error count (any
non-200 answer or failed connection), which must be zero.

    .venv/bin/python benchmarks/search_serve_load.py INDEX              # 16 clients, 400 requests
    .venv/bin/python benchmarks/search_serve_load.py INDEX --requests 100 --out runs/bench/serve.json

``serve_throughput`` is imported by ``benchmarks/bench_search.py``.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]

QUERIES = (
    "a red star moving to the left",
    "a small green cross spins counterclockwise",
    "a blue circle bouncing at the bottom",
    "a yellow square growing in the middle",
    "a triangle disappears then moves right",
    "something shrinking on the right",
    "a big purple star moving up",
    "a circle appearing at the top",
)


def _percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class _Server:
    """``internvideo2 serve`` in a subprocess on a free port; ``url`` once it listens."""

    def __init__(self, index_dir, model=None, host="127.0.0.1", startup_timeout=300.0):
        cmd = [sys.executable, "-m", "internvideo2.cli", "serve", str(index_dir), "--host", host, "--port", "0"]
        if model is not None:
            cmd += ["--model", str(model)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.output: list[str] = []
        self.url = None
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            m = re.search(r" at (http://\S+/) ", line)
            if m:
                self.url = m.group(1)
                break
        if self.url is None:
            self.close()
            raise RuntimeError("internvideo2 serve did not start:\n" + "".join(self.output))
        self.startup_s = time.perf_counter() - t0
        # keep reading its output (uvicorn's log) so that the pipe never fills up and blocks the server
        self._drain = threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True)
        self._drain.start()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def serve_throughput(index_dir: str | os.PathLike, model: str | os.PathLike | None = None, clients: int = 16,
                     requests: int = 400, host: str = "127.0.0.1", k: int = 10,
                     queries: tuple[str, ...] | list[str] = QUERIES, timeout: float = 120.0) -> dict:
    """Serve ``index_dir`` and measure ``requests`` searches from ``clients`` concurrent clients.

    Returns ``{"clients", "requests", "k", "errors", "error_samples", "seconds", "requests_per_s",
    "latency_ms": {"p50", "p95", "max", "mean"}, "server_startup_s", "warmup_ms"}``.
    """
    if clients < 1 or requests < 1:
        raise ValueError("clients and requests must be >= 1")
    srv = _Server(index_dir, model=model, host=host)
    try:
        parts = urlsplit(srv.url)
        # a server bound to every address is measured through loopback
        connect_host = "127.0.0.1" if parts.hostname in ("0.0.0.0", "::") else parts.hostname
        port = parts.port

        def get(conn: http.client.HTTPConnection, i: int) -> tuple[int, bytes]:
            conn.request("GET", "/api/search?" + urlencode({"q": queries[i % len(queries)], "k": k}))
            r = conn.getresponse()
            return r.status, r.read()

        warm = http.client.HTTPConnection(connect_host, port, timeout=timeout)
        t0 = time.perf_counter()
        status, body = get(warm, 0)  # the first query pays for lazy loading (vectors, ANN index)
        warmup_ms = (time.perf_counter() - t0) * 1000
        warm.close()
        if status != 200:
            raise RuntimeError(f"the warm-up query failed: {status} {body[:300]!r}")

        counter = iter(range(requests))
        lock = threading.Lock()
        latencies: list[float] = []
        errors: list[str] = []

        def client() -> None:
            conn = http.client.HTTPConnection(connect_host, port, timeout=timeout)
            try:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    t = time.perf_counter()
                    try:
                        status, body = get(conn, i)
                        ok = status == 200 and "results" in json.loads(body)
                        why = f"{status} {body[:200]!r}"
                    except Exception as e:  # a refused or dropped connection is an error, then reconnect
                        ok, why = False, f"{type(e).__name__}: {e}"
                        conn.close()
                        conn = http.client.HTTPConnection(connect_host, port, timeout=timeout)
                    dt = (time.perf_counter() - t) * 1000
                    with lock:
                        latencies.append(dt)
                        if not ok:
                            errors.append(why)
            finally:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(clients)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        seconds = time.perf_counter() - t0
    finally:
        srv.close()
    return {
        "clients": clients, "requests": len(latencies), "k": k, "errors": len(errors), "error_samples": errors[:5],
        "seconds": round(seconds, 3), "requests_per_s": round(len(latencies) / seconds, 2),
        "latency_ms": {"p50": round(_percentile(latencies, 50), 2), "p95": round(_percentile(latencies, 95), 2),
                       "max": round(max(latencies), 2), "mean": round(statistics.fmean(latencies), 2)},
        "server_startup_s": round(srv.startup_s, 2), "warmup_ms": round(warmup_ms, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("index", metavar="INDEX", help="an index folder (internvideo2 index ... -o INDEX)")
    p.add_argument("--model", default=None, help="the model the index was built with (default: the recorded one)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=400, help="searches in all (default 400)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.clients < 1 or args.requests < 1:
        p.error("--clients and --requests must be >= 1")
    result = serve_throughput(args.index, model=args.model, clients=args.clients, requests=args.requests,
                              host=args.host, k=args.k)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
