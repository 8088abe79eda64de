"""``internvideo2 serve``: the JSON API, the page, thumbnails and videos (range requests) through the ASGI test
client; the safety rules (hostile file names escaped, only indexed files served, by id, 4xx for bad queries,
no traceback in any error); and a real headless Chromium that searches, clicks a result and watches the video
play from the result's start time (a screenshot goes to runs/search-screenshot.png).

The index is written directly with :class:`IndexStore` (the builder is tested elsewhere): items over real
synthetic-world clips, JPEG thumbnails of their middle frames, and embeddings from a saved tiny stage-2 model
(random weights). Each item's embedding is the model's text embedding of a caption of its clip, computed one
text at a time like a query, so that searching for that exact caption finds that item first.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import internvideo2
from internvideo2.data.synth import SynthConfig, generate_world
from internvideo2.search import Index, IndexStore, model_identity
from internvideo2.search.store import FORMAT, SCHEMA_VERSION, VideoState

starlette = pytest.importorskip("starlette", reason="the search extra (starlette, uvicorn, httpx) is not installed")
from starlette.testclient import TestClient  # noqa: E402

from internvideo2.search import server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_NAME = "<img src=x onerror=\"document.title='pwned'\">.mp4"  # a valid file name (no slash)
SCRIPT_PATH = ("<script>alert(1)<", "script>.mp4")  # the path text ends in "<script>alert(1)</script>.mp4"
CLIP_SECONDS = 8.0  # 64 frames at 8 fps


# ---------------------------------------------------------------------------------------------------------
# the index
# ---------------------------------------------------------------------------------------------------------
def _jpeg_of_middle_frame(path: Path) -> bytes:
    import av

    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    frame = frames[len(frames) // 2].reformat(format="yuvj420p")
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt, enc.time_base = frame.width, frame.height, "yuvj420p", Fraction(1, 25)
    packets = [*enc.encode(frame), *enc.encode(None)]
    data = bytes(packets[0])
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"  # a real JPEG
    return data


def _state(path: Path) -> VideoState:
    st = path.stat()
    return VideoState(str(path), st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """The index folder, the saved model, the expected items and the query that finds each."""
    root = tmp_path_factory.mktemp("search-server")
    world = root / "world"
    generate_world(world, 3, seed=0, cfg=SynthConfig(num_frames=64, fps=8.0, size=64, audio=False), progress=False)
    records = json.loads((world / "train.json").read_text())
    torch.manual_seed(0)
    model_dir = internvideo2.save_pretrained(internvideo2.create_model("tiny", "stage2"), root / "model")
    model = internvideo2.load_model(model_dir).eval()

    def embed(text: str) -> np.ndarray:  # one text at a time, exactly as a query is embedded
        return model.encode_texts([text]).embeds[0].float().numpy()

    videos = {}
    for rec in records:  # two 4 s windows per clip, each with its own caption
        path = (world / rec["video"]).resolve()
        thumb = _jpeg_of_middle_frame(path)
        videos[path] = [(0.0, 4.0, rec["caption"][0], thumb), (4.0, CLIP_SECONDS, rec["caption"][1], thumb)]
    hostile = (root / "videos" / HOSTILE_NAME).resolve()
    script = (root / "videos" / SCRIPT_PATH[0] / SCRIPT_PATH[1]).resolve()
    gone = (root / "videos" / "deleted-after-indexing.mp4").resolve()
    for p in (hostile, script, gone):
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(world / records[2]["video"], p)
    videos[hostile] = [(1.0, 3.0, "a file with a hostile name", _jpeg_of_middle_frame(hostile))]
    videos[script] = [(2.0, 6.0, "a path that spells a script tag", None)]  # no thumbnail
    videos[gone] = [(0.0, 8.0, "a file deleted after indexing", None)]

    index_dir = root / "index"
    store = IndexStore(index_dir, create=True)
    with store.transaction():
        store.set_meta(format=FORMAT, schema=SCHEMA_VERSION, model=model_identity(model, model_dir),
                       settings={"mode": "window", "window": 4.0}, dim=int(model.projection_dim))
        for path, items in videos.items():
            store.put_video(_state(path), [(s, e, embed(text), jpg) for s, e, text, jpg in items])
    expected = {}
    for item in store.items():
        s, e, text, jpg = next(x for x in videos[Path(item.path)] if x[0] == item.start_s)
        expected[item.id] = {"item": item, "text": text, "thumbnail": jpg}
    store.close()
    gone.unlink()
    return {"index": index_dir, "model": model_dir, "expected": expected, "hostile": hostile, "script": script,
            "gone": gone, "root": root}


def _id_of(built: dict, path: Path, start: float | None = None) -> int:
    return next(i for i, e in built["expected"].items()
                if e["item"].path == str(path) and (start is None or e["item"].start_s == start))


@pytest.fixture(scope="module")
def index(built) -> Index:
    return Index(built["index"], model=built["model"])


@pytest.fixture(scope="module")
def client(index) -> TestClient:
    with TestClient(server.create_app(index), raise_server_exceptions=False) as c:
        yield c


def _no_internals(r) -> None:
    """An error body is a short JSON message: no traceback, no Python internals."""
    body = r.text
    assert r.headers["content-type"].startswith("application/json"), (r.status_code, body[:200])
    assert set(r.json()) == {"error", "status"} and r.json()["status"] == r.status_code
    for needle in ("Traceback", "File \"", "site-packages", ".py\"", "line "):
        assert needle not in body, body


# ---------------------------------------------------------------------------------------------------------
# the JSON API
# ---------------------------------------------------------------------------------------------------------
def test_search_finds_each_described_item_first(client, built):
    for item_id, exp in built["expected"].items():
        r = client.get("/api/search", params={"q": exp["text"], "k": 5})
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["query"] == exp["text"] and data["k"] == 5 and len(data["results"]) == 5
        top = data["results"][0]
        item = exp["item"]
        assert top["id"] == item_id, (exp["text"], data["results"])
        assert (top["path"], top["start_s"], top["end_s"]) == (item.path, item.start_s, item.end_s)
        assert top["name"] == os.path.basename(item.path)
        assert top["thumbnail"] == f"/thumb/{item_id}" and top["video"] == f"/video/{item_id}"
        scores = [h["score"] for h in data["results"]]
        assert scores == sorted(scores, reverse=True) and abs(scores[0] - 1) < 1e-4
        assert set(top) >= {"id", "path", "start_s", "end_s", "score", "name", "thumbnail", "video"}


def test_search_defaults_and_k_bounds(client, built, index):
    n = len(built["expected"])
    r = client.get("/api/search?q=a+red+star")
    assert r.status_code == 200 and r.json()["k"] == server.DEFAULT_K and len(r.json()["results"]) == n
    assert r.headers["cache-control"] == "no-store"
    r = client.get("/api/search", params={"q": "  padded  ", "k": str(server.MAX_K)})
    assert r.status_code == 200 and r.json()["query"] == "padded" and r.json()["k"] == server.MAX_K
    # ITM re-ranking (a stage-2 model has the head): scores become match probabilities; the page offers it
    r = client.get("/api/search", params={"q": "a green cross", "k": 3, "rerank": "1"})
    assert r.status_code == 200 and all(0 <= h["score"] <= 1 for h in r.json()["results"]), r.text
    assert 'id="rerank"' in client.get("/").text
    # the same answer as the Python API
    hits = index.search("a red star", k=3)
    assert [h["id"] for h in client.get("/api/search?q=a+red+star&k=3").json()["results"]] == [h.id for h in hits]


@pytest.mark.parametrize("query, needle", [
    ("", "q:"), ("q=", "q:"), ("q=%20%20", "q:"), ("k=3", "q:"),
    ("q=x&k=0", "k:"), ("q=x&k=-1", "k:"), ("q=x&k=abc", "k:"), ("q=x&k=1.5", "k:"), ("q=x&k=", "k:"),
    ("q=x&k=101", "k:"), ("q=x&k=99999999999999999999999", "k:"), ("q=x&k=1e3", "k:"),
    ("q=a&q=b", "'q' once"), ("q=x&k=1&k=2", "'k' once"), ("q=x%00y", "NUL"),
    ("q=x&rerank=maybe", "rerank"),
])
def test_malformed_queries_are_4xx_json(client, query, needle):
    r = client.get("/api/search?" + query)
    assert r.status_code == 400, (query, r.status_code, r.text)
    _no_internals(r)
    assert needle in r.json()["error"]


def test_oversized_query_is_refused(client):
    r = client.get("/api/search", params={"q": "a" * (server.MAX_QUERY_CHARS + 1)})
    assert r.status_code == 400 and "too long" in r.json()["error"]
    _no_internals(r)
    r = client.get("/api/search", params={"q": "a" * server.MAX_QUERY_CHARS, "k": 1})
    assert r.status_code == 200  # the limit itself is allowed
    r = client.get("/api/search", params={"q": "é" * 5_000})  # a big request is refused, not a crash
    assert r.status_code == 400
    _no_internals(r)


def test_hostile_names_are_data_in_json_and_text_in_the_page(client, built):
    for path in (built["hostile"], built["script"]):
        item_id = _id_of(built, path)
        r = client.get("/api/search", params={"q": built["expected"][item_id]["text"], "k": 1})
        top, = r.json()["results"]
        assert top["path"] == str(path) and top["name"] == os.path.basename(path)  # exact, unmangled
    assert str(built["script"]).endswith("<script>alert(1)</script>.mp4")
    assert json.loads(r.content)  # JSON, served as JSON
    assert r.headers["content-type"] == "application/json"
    # a query that is markup, reflected in the page, is escaped there (the page's script inserts results
    # with textContent; the browser test checks that side)
    r = client.get("/", params={"q": "<script>alert(1)</script>\"><img src=x onerror=alert(2)>"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"' in page
    assert page.count("<script") == 1  # only the page's own script file
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    js = client.get("/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in js.text and "insertAdjacentHTML" not in js.text and "textContent" in js.text
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")


def test_index_name_is_escaped_in_the_page(built, index, tmp_path):
    evil = tmp_path / "<b onmouseover=alert(1)>idx"
    shutil.copytree(built["index"], evil)
    with TestClient(server.create_app(Index(evil, model=index.model))) as c:
        page = c.get("/").text
    assert "<b onmouseover" not in page and "&lt;b onmouseover=alert(1)&gt;idx" in page
    assert f"{len(built['expected'])} items" in page


def test_page_is_self_contained(client):
    page = client.get("/").text
    urls = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for u in urls:
        assert client.get(u).status_code == 200, u
    assert 'id="q"' in page and 'id="results"' in page and "<video" in page
    assert f'maxlength="{server.MAX_QUERY_CHARS}"' in page


# ---------------------------------------------------------------------------------------------------------
# thumbnails and videos
# ---------------------------------------------------------------------------------------------------------
def test_thumbnails(client, built):
    for item_id, exp in built["expected"].items():
        r = client.get(f"/thumb/{item_id}")
        if exp["thumbnail"] is None:
            assert r.status_code == 404 and "no thumbnail" in r.json()["error"]
            _no_internals(r)
            continue
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert r.content == exp["thumbnail"]
        again = client.get(f"/thumb/{item_id}", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""


def test_video_full_and_ranges(client, built):
    item_id = _id_of(built, built["hostile"])
    data = built["hostile"].read_bytes()
    size = len(data)
    r = client.get(f"/video/{item_id}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "video/mp4" and r.headers["accept-ranges"] == "bytes"
    assert int(r.headers["content-length"]) == size
    assert "content-disposition" not in r.headers  # played inline, not downloaded
    cases = {"bytes=0-99": (0, 99), "bytes=100-": (100, size - 1), "bytes=-50": (size - 50, size - 1),
             f"bytes=10-{size + 1000}": (10, size - 1), "bytes=0-0": (0, 0)}
    for header, (a, b) in cases.items():
        r = client.get(f"/video/{item_id}", headers={"Range": header})
        assert r.status_code == 206, (header, r.status_code)
        assert r.headers["content-range"] == f"bytes {a}-{b}/{size}", header
        assert r.content == data[a:b + 1] and int(r.headers["content-length"]) == b - a + 1
        assert r.headers["content-type"] == "video/mp4"
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        r = client.get(f"/video/{item_id}", headers={"Range": header})
        assert r.status_code == 416, (header, r.status_code)
        assert r.headers["content-range"] == f"bytes */{size}"
    r = client.get(f"/video/{item_id}", headers={"Range": "bytes=0-9,20-29"})  # several ranges: multipart
    assert r.status_code == 206 and r.headers["content-type"].startswith("multipart/byteranges")
    assert data[:10] in r.content and data[20:30] in r.content
    # a Range header that is not well formed is ignored (RFC 9110 allows it): the whole file, never a 400/500
    for header in ("bytes=5-2", "items=0-5", "bytes=abc", "bytes=", "bytes 0-5", "bytes=0-1," * 200,
                   "bytes=--5", "bytes=1-2-3", "bytes=" + "9" * 40 + "-"):
        r = client.get(f"/video/{item_id}", headers={"Range": header})
        assert r.status_code == 200 and r.content == data, (header[:40], r.status_code)
    assert server.usable_range("bytes=0-0") and server.usable_range("bytes= 1-, -5 ,7-9")
    assert not server.usable_range("bytes=9-1") and not server.usable_range("bytes=0-1,", 100)
    r = client.head(f"/video/{item_id}")
    assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) == size
    # If-Range with a stale validator: the whole file
    r = client.get(f"/video/{item_id}", headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == data
    r = client.get(f"/video/{item_id}", headers={"Range": "bytes=0-9",
                                                 "If-Range": client.head(f"/video/{item_id}").headers["etag"]})
    assert r.status_code == 206 and r.content == data[:10]


def test_only_indexed_files_by_id(client, built):
    for url in ("/video/999999", "/video/abc", "/video/-1", "/video/1.0", "/video/" + "9" * 40,
                "/thumb/999999", "/thumb/x", "/thumb/" + "9" * 40,
                "/video/..%2F..%2Fetc%2Fpasswd", "/video/%2Fetc%2Fpasswd", "/video/../../etc/passwd",
                "/video?path=/etc/passwd", "/videos/etc/passwd", "/static/../server.py",
                "/static/..%2Fserver.py", "/static/index.html", "/static/%2E%2E/store.py", "/etc/passwd",
                "/" + str(built["hostile"]), "/video/" + str(built["hostile"])):
        r = client.get(url)
        assert r.status_code == 404, (url, r.status_code)
        _no_internals(r)
    r = client.get(f"/video/{_id_of(built, built['gone'])}")  # indexed, then deleted: 404, said plainly
    assert r.status_code == 404 and "no longer on disk" in r.json()["error"]
    _no_internals(r)


def test_errors_are_json_without_internals(client, index, built, monkeypatch):
    r = client.post("/api/search?q=x")
    assert r.status_code == 405
    _no_internals(r)

    def boom(*a, **k):
        raise RuntimeError("secret internal detail /very/private/path")

    monkeypatch.setattr(index, "search", boom)
    r = client.get("/api/search?q=hello")
    assert r.status_code == 500
    _no_internals(r)
    assert "secret" not in r.text and "RuntimeError" not in r.text and "private" not in r.text
    monkeypatch.setattr(index, "thumbnail", boom)
    r = client.get(f"/thumb/{next(iter(built['expected']))}")
    assert r.status_code == 500 and "secret" not in r.text


def test_host_check_when_bound_to_loopback(index):
    assert server.is_loopback("127.0.0.1") and server.is_loopback("localhost") and server.is_loopback("::1")
    assert not server.is_loopback("0.0.0.0") and not server.is_loopback("192.168.1.10")
    assert server.allowed_hosts_for("0.0.0.0") is None
    app = server.create_app(index, allowed_hosts=server.allowed_hosts_for("127.0.0.1"))
    for host, ok in (("127.0.0.1:8000", True), ("localhost:8000", True), ("[::1]:8000", True), ("localhost", True),
                     ("evil.example:8000", False), ("127.0.0.1.evil.example", False), ("", False)):
        with TestClient(app, base_url="http://127.0.0.1:8000") as c:
            r = c.get("/api/search?q=x&k=1", headers={"host": host})
        assert (r.status_code == 200) == ok, (host, r.status_code)
        if not ok:
            assert r.status_code == 400 and "Host" in r.json()["error"]


def test_serve_command_line(built, tmp_path):
    """The command refuses a folder that is not an index and a port out of range (exit 2)."""
    from internvideo2.cli import main

    assert main(["serve", str(tmp_path)]) == 2
    assert main(["serve", str(built["index"]), "--port", "70000"]) == 2


# ---------------------------------------------------------------------------------------------------------
# a served process and a real browser
# ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _serving(built: dict, *extra: str):
    """``internvideo2 serve INDEX --port 0`` in a subprocess; yields (base URL, the process, its output lines
    up to the one that gave the URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "internvideo2.cli", "serve", str(built["index"]), "--port", "0",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r" at (http://\S+/) ", line)
            if m:
                yield m.group(1), proc, lines
                return
        raise AssertionError("serve did not start:\n" + "".join(lines))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_served_process_warns_on_a_public_address(built):
    with _serving(built, "--host", "0.0.0.0") as (url, proc, lines):
        import httpx

        port = int(url.rsplit(":", 1)[1].strip("/"))
        r = httpx.get(f"http://127.0.0.1:{port}/api/search?q=a+star&k=2", timeout=60)
        assert r.status_code == 200 and len(r.json()["results"]) == 2
    out = "".join(lines) + proc.stdout.read()
    assert "warning: listening on 0.0.0.0" in out and "Traceback" not in out


def _chromium() -> str | None:
    for name in (os.environ.get("INTERNVIDEO2_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """Headless Chromium driven through the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (NUL-
    terminated JSON on file descriptors 3 and 4): no driver, no websocket library."""

    def __init__(self, exe: str, profile: Path, log: Path, size=(1280, 900)):
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        # moved above 4, so that placing them on 3 and 4 in the child cannot clobber one with the other
        a, b = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_r, out_w))
        flags = ["--headless", "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
                 "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
                 f"--window-size={size[0]},{size[1]}", "about:blank"]
        if os.geteuid() == 0:
            flags.insert(0, "--no-sandbox")  # Chromium's sandbox refuses to run as root
        self.log = log
        exec_with_pipes = f"import os, sys; os.dup2({a}, 3); os.dup2({b}, 4); os.execv(sys.argv[1], sys.argv[1:])"
        self.proc = subprocess.Popen([sys.executable, "-c", exec_with_pipes, exe, *flags],
                                     pass_fds=(a, b), stdin=subprocess.DEVNULL, stdout=log.open("wb"),
                                     stderr=subprocess.STDOUT)
        for fd in (cmd_r, out_w, a, b):
            os.close(fd)
        self.w, self.r = cmd_w, out_r
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium; its log:\n" + self.log.read_text(errors="replace")[-3000:])
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe; its log:\n" + self.log.read_text(errors="replace"))
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.w, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout=5)
        for fd in (self.w, self.r):
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Page:
    def __init__(self, browser: Browser):
        self.b = browser
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        return self.b.call(method, self.session, **params)

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expression: str, timeout: float = 30, what: str = ""):
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or expression}; last value {value!r}")
            time.sleep(0.1)

    def events(self, method: str) -> list[dict]:
        return [e["params"] for e in self.b.events if e.get("method") == method and e.get("sessionId") == self.session]

    def click(self, selector: str) -> None:
        x, y = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                       "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                       "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def test_real_browser_searches_clicks_and_plays_from_the_start_time(built, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("Chromium is not installed (`.ci/run` installs Debian's `chromium` with apt-get when it can)")
    target = _id_of(built, Path(built["expected"][next(iter(built["expected"]))]["item"].path), start=4.0)
    query = built["expected"][target]["text"]
    start_s = built["expected"][target]["item"].start_s
    with _serving(built) as (url, _proc, _lines):
        browser = Browser(exe, tmp_path / "profile", tmp_path / "chromium.log")
        try:
            page = Page(browser)
            page.call("Page.navigate", url=url)
            page.wait("document.readyState === 'complete' && !!document.getElementById('q')", what="the page")
            page.js("document.getElementById('q').focus()")
            page.call("Input.insertText", text=query)  # typed into the focused search box
            for kind in ("keyDown", "keyUp"):
                page.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                          **({"text": "\r"} if kind == "keyDown" else {}))
            n = page.wait("document.querySelectorAll('#results .card').length", timeout=60, what="results")
            assert n == len(built["expected"])
            cards = page.js("[...document.querySelectorAll('#results .card')].map(c => ({id: +c.dataset.id, "
                            "name: c.querySelector('.name').textContent, range: c.querySelector('.range').textContent"
                            "}))")
            assert cards[0]["id"] == target and cards[0]["range"] == "0:04.0 – 0:08.0"
            # the hostile file name is shown as text, nothing of it ran or became markup
            names = [c["name"] for c in cards]
            assert HOSTILE_NAME in names and "script>.mp4" in names
            assert page.js("document.title") != "pwned"
            assert page.js("document.querySelectorAll('img[onerror], #results script').length") == 0
            assert not page.events("Page.javascriptDialogOpening")
            page.wait("[...document.querySelectorAll('#results .card img')].filter(i => i.naturalWidth > 0).length "
                      f"=== {sum(1 for e in built['expected'].values() if e['thumbnail'])} && "
                      "document.querySelectorAll('#results .thumb.none').length === "
                      f"{sum(1 for e in built['expected'].values() if not e['thumbnail'])}", what="the thumbnails")
            assert "?q=" in page.js("location.search")  # the search is in the address (shareable)

            page.click(f'#results .card[data-id="{target}"]')
            state = page.wait(f"(() => {{ const v = document.getElementById('video'); return !v.paused && "
                              f"v.readyState >= 2 && v.currentTime > {start_s} + 0.2 && "
                              "{t: v.currentTime, paused: v.paused, src: v.currentSrc}; })()", timeout=30,
                              what="the video to play from the result's start")
            assert start_s < state["t"] < CLIP_SECONDS and state["src"].split("#")[0].endswith(f"/video/{target}")
            assert page.js("document.getElementById('player').hidden") is False
            assert page.js(f"document.querySelector('#results .card[data-id=\"{target}\"]').classList"
                           ".contains('playing')")
            size = page.call("Page.getLayoutMetrics")["cssContentSize"]  # the whole page, results included
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            shot = base64.b64decode(page.call("Page.captureScreenshot", format="png", clip=clip,
                                              captureBeyondViewport=True)["data"])
            out = ROOT / "runs" / "search-screenshot.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(shot)
            assert shot[:8] == b"\x89PNG\r\n\x1a\n"

            # the video came through range requests (206), and nothing broke the page's rules
            videos = [e["response"] for e in page.events("Network.responseReceived")
                      if "/video/" in e["response"]["url"]]
            assert videos and any(r["status"] == 206 for r in videos), [r["status"] for r in videos]
            errors = [e for e in page.events("Runtime.exceptionThrown")]
            csp = [e for e in page.events("Log.entryAdded") if "Content Security Policy" in e["entry"]["text"]]
            assert not errors and not csp, (errors, csp)
        finally:
            browser.close()


def test_serve_load_benchmark_helper(built):
    """benchmarks/search_serve_load.py against the real server: every request answered, none failed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_serve_load", ROOT / "benchmarks" / "search_serve_load.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.serve_throughput(built["index"], clients=4, requests=24, k=3)
    assert r["errors"] == 0 and r["requests"] == 24 and r["clients"] == 4, r
    assert r["requests_per_s"] > 0 and 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p95"] <= r["latency_ms"]["max"]
