// The search page: asks /api/search, renders the results as DOM nodes (text only through textContent, so file
// names are never parsed as HTML), and plays a clicked result from its start time in the page's <video>.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const root = document.body.dataset.root || "";
  const form = $("search-form"), input = $("q"), kSelect = $("k"), rerank = $("rerank");
  const statusLine = $("status"), grid = $("results");
  const player = $("player"), video = $("video"), nowPlaying = $("now-playing");
  let searchSeq = 0;

  function clock(s) {
    const m = Math.floor(s / 60), rest = s - 60 * m;
    return `${m}:${rest.toFixed(1).padStart(4, "0")}`;
  }

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", Boolean(isError));
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function card(hit, rank) {
    const li = el("li");
    const button = el("button", "card");
    button.type = "button";
    button.dataset.id = String(hit.id);
    button.title = hit.path;
    const img = el("img", "thumb");
    img.alt = "";
    img.loading = "lazy";
    img.src = hit.thumbnail;
    img.addEventListener("error", () => img.replaceWith(el("span", "thumb none", "no thumbnail")), { once: true });
    const text = el("span", "text");
    text.append(el("span", "name", hit.name));
    const meta = el("span", "meta");
    meta.append(el("span", "range", `${clock(hit.start_s)} – ${clock(hit.end_s)}`));
    meta.append(el("span", "score", `#${rank + 1} · ${hit.score.toFixed(3)}`));
    text.append(meta);
    button.append(img, text);
    button.addEventListener("click", () => play(hit, button));
    li.append(button);
    return li;
  }

  function play(hit, button) {
    for (const other of grid.querySelectorAll(".card.playing")) other.classList.remove("playing");
    button.classList.add("playing");
    player.hidden = false;
    nowPlaying.textContent = `${hit.name} · ${clock(hit.start_s)} – ${clock(hit.end_s)} · score ${hit.score.toFixed(3)}`;
    const start = hit.start_s;
    const seek = () => {
      if (Math.abs(video.currentTime - start) > 0.05) video.currentTime = start;
    };
    if (video.dataset.itemVideo === hit.video && video.readyState >= 1) {
      seek();
    } else {
      video.dataset.itemVideo = hit.video;
      video.src = `${hit.video}#t=${start}`;  // media fragment: the browser starts there (range requests)
      video.addEventListener("loadedmetadata", seek, { once: true });
    }
    const playing = video.play();  // called inside the click: the user's gesture allows playback with sound
    if (playing) playing.catch(() => {});
    player.scrollIntoView({ block: "nearest" });
  }

  function params(q, k) {
    const p = new URLSearchParams({ q, k: String(k) });
    if (rerank && rerank.checked) p.set("rerank", "1");
    return p;
  }

  async function search(q, k, push) {
    const seq = ++searchSeq;
    q = q.trim();
    if (!q) { setStatus("Type what you are looking for.", true); return; }
    setStatus("Searching…");
    const p = params(q, k);
    if (push) history.pushState(null, "", `${root}/?${p}`);
    let response, data;
    try {
      response = await fetch(`${root}/api/search?${p}`, { headers: { Accept: "application/json" } });
      data = await response.json();
    } catch (err) {
      if (seq === searchSeq) setStatus("The server did not answer.", true);
      return;
    }
    if (seq !== searchSeq) return;  // a newer search was started meanwhile
    if (!response.ok) { setStatus(data.error || `error ${response.status}`, true); return; }
    grid.replaceChildren(...data.results.map(card));
    const n = data.results.length;
    setStatus(n ? `${n} result${n === 1 ? "" : "s"} for “${data.query}” (${data.took_ms} ms)`
                : `Nothing found for “${data.query}”.`);
  }

  function fromLocation() {
    const p = new URLSearchParams(location.search);
    input.value = p.get("q") || "";
    const k = p.get("k");
    if (k && [...kSelect.options].some((o) => o.value === k)) kSelect.value = k;
    if (rerank) rerank.checked = p.get("rerank") === "1";
    if (input.value.trim()) search(input.value, kSelect.value, false);
    else { grid.replaceChildren(); setStatus(""); }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search(input.value, kSelect.value, true);
  });
  window.addEventListener("popstate", fromLocation);
  fromLocation();
})();
