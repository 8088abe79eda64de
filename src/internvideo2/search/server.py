"""``internvideo2 serve INDEX``: search an index and watch its results in a web page.

A Starlette application (:func:`create_app`) run by uvicorn (:func:`run`). Routes:

=========================  ==========================================================================================
``GET /``                  the page: a search box, a grid of results (thumbnail, file name, time range, score);
                           clicking one plays its video in the page from the item's start time. ``/?q=...&k=...``
                           opens with that search (shareable). Everything it needs is served by the app.
``GET /static/{name}``     the page's script and style sheet (a fixed list of bundled files)
``GET /api/search``        ``?q=TEXT&k=N`` (k: 1..:data:`MAX_K`, default :data:`DEFAULT_K`; ``rerank=1`` where the
                           index supports it) -> ``{"query", "k", "took_ms", "results": [Hit.to_json() + "name"
                           (file name), "thumbnail" and "video" (URLs)]}``, best first
``GET /thumb/{item_id}``   the item's JPEG thumbnail (404 when it has none)
``GET /video/{item_id}``   the item's video file, with HTTP range requests (206 / 416) so that seeking works
=========================  ==========================================================================================

Safety rules: only files that are in the index are ever read, and only by item id (the path comes from the
index, never from the request); every error is JSON ``{"error": MESSAGE, "status": CODE}`` (but the empty 416
of an unsatisfiable range), a 4xx code for a bad request, and an unexpected failure is a generic 500 (the
traceback goes to the server's log only); text from the index is escaped in the HTML and inserted with
``textContent`` by the page's script; the responses carry a strict Content-Security-Policy (no inline script,
nothing from other origins). Bound to a loopback address (the default), the server also refuses requests
whose ``Host`` is not a loopback name (a web page on another site cannot reach it through DNS rebinding).
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import html
import inspect
import ipaddress
import logging
import mimetypes
import os
import re
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .index import Index

logger = logging.getLogger("internvideo2.search.server")

MAX_QUERY_CHARS = 500
MAX_K = 100
DEFAULT_K = 12
K_CHOICES = (12, 24, 48, 96)

STATIC_DIR = Path(__file__).with_name("static")
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
_VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
                ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ogv": "video/ogg", ".ts": "video/mp2t",
                ".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".3gp": "video/3gpp", ".flv": "video/x-flv"}
_ID = re.compile(r"[0-9]{1,18}")  # item ids are SQLite rowids (< 2**63)
_K = re.compile(r"[0-9]{1,6}")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_RANGE_SPEC = re.compile(r"\s*(?:([0-9]{1,18})-([0-9]{0,18})|-([0-9]{1,18}))\s*")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


# ---------------------------------------------------------------------------------------------------- the app
def create_app(index: Index, *, allowed_hosts: Iterable[str] | None = None, default_k: int = DEFAULT_K):
    """The web application over ``index`` (a Starlette app; run it with any ASGI server).

    ``allowed_hosts``: the host names (without port) the ``Host`` header may carry; None accepts any (what
    :func:`run` passes when bound to a non-loopback address). Searches run one at a time in a worker thread
    (the model uses every core for one query; the event loop keeps serving files meanwhile).
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    if not 1 <= default_k <= MAX_K:
        raise ConfigError("default_k", f"must be in [1, {MAX_K}], got {default_k!r}")
    lock = threading.Lock()  # one search at a time; sqlite reads of the other routes are cheap and threadsafe
    can_rerank = "rerank" in inspect.signature(index.search).parameters
    show_rerank = can_rerank and bool(getattr(getattr(index, "model", None), "has_itm", False))
    VideoResponse = _video_response_class()
    statics = {name: (STATIC_DIR / name).read_bytes() for name in STATIC_FILES}
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)

    def item_or_404(request: Request):
        raw = request.path_params["item_id"]
        if not _ID.fullmatch(raw):
            raise HTTPException(404, f"no item {raw[:40]!r} in this index")
        try:
            return index.item(int(raw))
        except KeyError:
            raise HTTPException(404, f"no item {int(raw)} in this index") from None

    def root_path(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    # ------------------------------------------------------------------ routes
    async def home(request: Request) -> Response:
        meta = getattr(index, "meta", {}) or {}
        model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
        source = os.path.basename(str(model.get("source") or "").rstrip("/"))
        model_name = " ".join(x for x in (source, f"({model['model_type']})" if model.get("model_type") else "") if x)
        query = request.query_params.get("q", "")[:MAX_QUERY_CHARS]
        k = request.query_params.get("k", "")
        k_default = int(k) if _K.fullmatch(k) and int(k) in K_CHOICES else default_k
        choices = sorted({*K_CHOICES, default_k})
        k_options = "".join(f'<option value="{c}"{" selected" if c == k_default else ""}>{c}</option>'
                            for c in choices)
        rerank = ('<label><input id="rerank" name="rerank" type="checkbox" value="1"> re-rank (ITM)</label>'
                  if show_rerank else "")
        folder = str(getattr(index, "path", "") or "")
        values = {"title": os.path.basename(folder.rstrip("/")) or folder or "index", "items": str(len(index)),
                  "model": model_name or "?", "query": query,
                  "root": root_path(request), "max_query": str(MAX_QUERY_CHARS), "max_k": str(MAX_K)}
        values = {k: html.escape(v, quote=True) for k, v in values.items()}  # text from the index or the request
        values.update(k_options=k_options, rerank=rerank)  # markup made here from numbers
        body = _PLACEHOLDER.sub(lambda m: values[m.group(1)], page)  # one pass: inserted text is never re-read
        return HTMLResponse(body, headers={"cache-control": "no-cache"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in statics:
            raise HTTPException(404, "no such file")
        return Response(statics[name], media_type=STATIC_FILES[name], headers={"cache-control": "no-cache"})

    async def api_search(request: Request) -> Response:
        params = request.query_params
        for key in ("q", "k", "rerank"):
            if len(params.getlist(key)) > 1:
                return error(400, f"give {key!r} once")
        q = params.get("q")
        if q is None or not q.strip():
            return error(400, "q: give the text to search for, e.g. /api/search?q=a+red+star&k=10")
        if len(q) > MAX_QUERY_CHARS:
            return error(400, f"q: too long ({len(q)} characters; at most {MAX_QUERY_CHARS})")
        if "\x00" in q:
            return error(400, "q: contains a NUL character")
        k_raw = params.get("k")
        if k_raw is None:
            k = default_k
        elif not _K.fullmatch(k_raw.strip()) or not 1 <= int(k_raw) <= MAX_K:
            return error(400, f"k: must be an integer from 1 to {MAX_K}, got {k_raw[:20]!r}")
        else:
            k = int(k_raw)
        kwargs: dict[str, Any] = {}
        rerank_raw = params.get("rerank")
        if rerank_raw is not None:
            if rerank_raw.lower() not in ("0", "1", "true", "false"):
                return error(400, f"rerank: must be 0 or 1, got {rerank_raw[:20]!r}")
            if rerank_raw.lower() in ("1", "true"):
                if not can_rerank:
                    return error(400, "rerank: this index cannot re-rank")
                kwargs["rerank"] = True
        q = q.strip()

        def search():
            with lock:
                return index.search(q, k=k, **kwargs)

        t0 = time.perf_counter()
        try:
            hits = await run_in_threadpool(search)
        except ConfigError as e:  # a query the index refuses (e.g. re-ranking without ITM)
            return error(400, f"{e.field}: {e.reason}")
        took_ms = round((time.perf_counter() - t0) * 1000, 1)
        base = root_path(request)
        results = [{**h.to_json(), "name": os.path.basename(h.path), "thumbnail": f"{base}/thumb/{h.id}",
                    "video": f"{base}/video/{h.id}"} for h in hits]
        return JSONResponse({"query": q, "k": k, "took_ms": took_ms, "results": results},
                            headers={"cache-control": "no-store"})

    async def thumb(request: Request) -> Response:
        item = item_or_404(request)
        data = index.thumbnail(item.id)
        if not data:
            raise HTTPException(404, f"item {item.id} has no thumbnail")
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'  # ids can be reused after a re-index
        headers = {"etag": etag, "cache-control": "no-cache"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="image/jpeg", headers=headers)

    async def video(request: Request) -> Response:
        item = item_or_404(request)
        # the path comes from the index, never from the request; checked again against the index's files
        if not index.is_indexed(item.path):
            raise HTTPException(404, f"item {item.id}'s video is not in the index")
        try:
            st = os.stat(item.path)
        except OSError:
            raise HTTPException(404, f"item {item.id}'s video is no longer on disk") from None
        if not stat.S_ISREG(st.st_mode):
            raise HTTPException(404, f"item {item.id}'s video is not a regular file")
        return VideoResponse(item.path, stat_result=st, media_type=video_type(item.path),
                             headers={"cache-control": "no-cache"})

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    # ------------------------------------------------------------------ errors
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/api/search", api_search, methods=["GET"]),
        Route("/thumb/{item_id}", thumb, methods=["GET"]),
        Route("/video/{item_id}", video, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.add_middleware(_Guard, allowed_hosts=None if allowed_hosts is None else list(allowed_hosts))
    app.state.index = index
    return app


def _video_response_class():
    from starlette.responses import FileResponse

    class VideoResponse(FileResponse):
        """Starlette's FileResponse answers Range requests: 206 + Content-Range for one range (multipart/
        byteranges for several, overlaps merged), 416 + ``Content-Range: bytes */SIZE`` when no range starts
        inside the file, and honours If-Range against its ETag / Last-Modified. It answers a Range header it
        cannot parse with a plain-text 400; here such a header is ignored instead (the whole file, 200), as
        RFC 9110 allows, so that a player never sees a 400 for a seek."""

        async def __call__(self, scope, receive, send):
            headers = [(k, v) for k, v in scope["headers"]
                       if k != b"range" or usable_range(v.decode("latin-1"), self.max_ranges)]
            await super().__call__({**scope, "headers": headers}, receive, send)

    return VideoResponse


def usable_range(value: str, max_ranges: int = 100) -> bool:
    """Whether a Range header is well formed: ``bytes=`` then 1..max_ranges specs ``A-B`` (A <= B), ``A-`` or
    ``-N``. Satisfiability (416) is the response's business."""
    unit, sep, specs = value.partition("=")
    if unit.strip() != "bytes" or not sep:
        return False
    parts = specs.split(",")
    if not 1 <= len(parts) <= max_ranges:
        return False
    for part in parts:
        m = _RANGE_SPEC.fullmatch(part)
        if m is None or (m.group(1) is not None and m.group(2) and int(m.group(2)) < int(m.group(1))):
            return False
    return True


def video_type(path: str | os.PathLike) -> str:
    """The Content-Type of a video file, from its extension."""
    ext = os.path.splitext(str(path))[1].lower()
    return _VIDEO_TYPES.get(ext) or mimetypes.guess_type(str(path))[0] or "application/octet-stream"


class _Guard:
    """Pure ASGI middleware: the Host check, the security headers on every response, and the last line of
    defence: an exception no route handled becomes a generic JSON 500 (logged with its traceback here, never
    sent to the client)."""

    def __init__(self, app, allowed_hosts: list[str] | None = None):
        self.app = app
        self.allowed = None if allowed_hosts is None else {_host_key(h) for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if self.allowed is not None:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if _host_key(_strip_port(host)) not in self.allowed:
                return await _json(send_with_headers, 400, "unexpected Host header (this server answers only to "
                                                          "the loopback names it is bound to)")
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            logger.exception("internal error while answering %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _json(send_with_headers, 500, "internal server error (details are in the server's log)")


async def _json(send, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _host_key(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is reachable only from this machine."""
    if _host_key(host) == "localhost":
        return True
    try:
        return ipaddress.ip_address(_host_key(host)).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(host: str) -> list[str] | None:
    """The Host names to accept when bound to ``host``: the loopback names for a loopback address (DNS
    rebinding cannot reach the server), anything otherwise."""
    return sorted({*_LOOPBACK_NAMES, _host_key(host)}) if is_loopback(host) else None


# ---------------------------------------------------------------------------------------------------- command
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", metavar="INDEX", help="an index folder (internvideo2 index ... -o INDEX)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 serves every "
                             "network the machine is on: anyone there can search and watch the indexed videos)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--model", default=None, metavar="M",
                        help="the model the index was built with (default: the one recorded in the index)")
    parser.add_argument("--device", default="cpu", help="where the query model runs (default cpu)")
    parser.add_argument("--default-k", type=int, default=DEFAULT_K, metavar="K",
                        help=f"results per search when the request does not say (default {DEFAULT_K}, "
                             f"at most {MAX_K})")
    parser.add_argument("--access-log", action="store_true", help="log every request")


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket bound to ``host:port``; a name that does not resolve, an address not on this
    machine, a port in use or a privileged port are usage errors (ConfigError naming the flag)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError("host", f"{host!r}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError("port", f"{host}:{port} is already in use; choose another port (0 picks a free "
                                      "one)") from None
        if e.errno == errno.EACCES:
            raise ConfigError("port", f"{host}:{port}: permission denied (ports below 1024 need privileges)") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ConfigError("host", f"{host} is not an address of this machine") from None
        raise
    sock.set_inheritable(True)
    return sock


def url_for(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..utils.paths import input_dir

    if not 0 <= args.port <= 65535:
        raise ConfigError("port", f"must be in [0, 65535], got {args.port}")
    if not 1 <= args.default_k <= MAX_K:
        raise ConfigError("default_k", f"must be in [1, {MAX_K}], got {args.default_k}")
    folder = input_dir(args.index, "index")
    sock = _bind(args.host, args.port)  # before loading the model: a taken port fails at once
    try:
        index = Index(folder, model=args.model, device=args.device)
    except BaseException:
        sock.close()
        raise
    prepare = getattr(index, "prepare", None)
    if callable(prepare):  # load the vectors (or the ANN index) now, not on the first visitor's query
        prepare()
    if not is_loopback(args.host):
        print(f"internvideo2 serve: warning: listening on {args.host}, not on a loopback address: anyone who can "
              "reach this machine can search the index and watch its videos (no authentication)",
              file=sys.stderr, flush=True)
    app = create_app(index, allowed_hosts=allowed_hosts_for(args.host), default_k=args.default_k)
    config = uvicorn.Config(app, log_level="info", access_log=args.access_log, lifespan="off",
                            timeout_graceful_shutdown=5)
    if not logger.handlers:  # errors of the app (with their tracebacks) go to stderr, next to uvicorn's log
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
    print(f"internvideo2 serve: {index.path} ({len(index)} items) at {url_for(sock)} (Ctrl-C stops)", flush=True)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: for a server, a normal end
        print("internvideo2 serve: stopped", file=sys.stderr, flush=True)
    return 0
