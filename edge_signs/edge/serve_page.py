"""`live --serve`'s page: the annotated video, the smoothed sign, its confidence, FPS and inference time.

One self-contained document (no external assets: it works on a Pi with no internet). It
shows ``stream.mjpg`` in an <img> and polls ``status`` every ``SERVE_STATUS_POLL_MS``; the
token, when there is one, rides along on both. For tests and scripts the <body> carries
what the page shows as data- attributes.

When the status has a "teach" entry (`edge-signs teach --serve`, teach_serve.py), the
page builds a button per sign and "done", which POST to ``teach`` and ``teach/done``
(keys 0-5 on the page do what the buttons do); `live --serve` has no such entry, so
its page has no buttons.
"""

from __future__ import annotations

import html
import json
from typing import Optional

from edge_signs import config

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-signs live</title>
<style>
body{margin:0;font:16px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;background:#151515;color:#eee}
main{display:flex;flex-wrap:wrap;gap:20px;padding:16px;align-items:flex-start}
#video{display:block;width:min(640px,100%);aspect-ratio:auto;background:#000;image-rendering:pixelated;border-radius:6px}
section{min-width:260px;flex:1}
#sign{font-size:72px;font-weight:700;line-height:1;color:#50dc50}
#sign.none{color:#ffbe00;font-size:40px}
.bar{height:10px;background:#333;border-radius:5px;margin:10px 0 4px;max-width:360px}
#confbar{height:100%;width:0;background:#50dc50;border-radius:5px}
table{border-collapse:collapse;margin-top:12px}
th{text-align:left;font-weight:400;color:#aaa;padding:2px 16px 2px 0}
td{font-variant-numeric:tabular-nums}
#state{margin-top:12px;color:#aaa}#state.bad{color:#ff7070}
small{color:#888}
#teach{margin-top:14px}
#teach button{font:inherit;font-size:22px;min-width:72px;margin:0 6px 6px 0;padding:8px 10px;border:0;border-radius:6px;background:#2d5a2d;color:#eee;cursor:pointer}
#teach button.short{background:#5a4a1d}#teach button#done{background:#3a3a3a}
#teachnote{color:#aaa}#teachnote.bad{color:#ff7070}
</style></head>
<body><main>
<img id="video" alt="annotated camera stream">
<section>
<div id="sign" class="none">waiting&hellip;</div>
<div class="bar"><div id="confbar"></div></div>
<div id="conf">&nbsp;</div>
<table>
<tr><th>this frame</th><td id="raw"></td></tr>
<tr><th>FPS</th><td id="fps"></td></tr>
<tr><th>inference</th><td id="inference"></td></tr>
<tr><th>frame</th><td id="frame"></td></tr>
<tr id="truthrow" hidden><th>truth</th><td id="truth"></td></tr>
<tr><th>viewers</th><td id="viewers"></td></tr>
</table>
<div id="teach" hidden></div>
<p><small>last events</small></p><ul id="events"></ul>
<p id="state">connecting&hellip;</p>
<p><small id="about">__ABOUT__</small></p>
</section></main>
<script>
"use strict";
const CFG = __CONFIG__;
const auth = CFG.token ? "token=" + encodeURIComponent(CFG.token) : "";
const $ = (id) => document.getElementById(id);
const pct = (x) => (100 * x).toFixed(0) + "%";

// The stream: one <img>; reconnect after an error (server busy: 503, or restarting).
function startStream() {
  $("video").src = "stream.mjpg?" + auth + (auth ? "&" : "") + "t=" + Date.now();
}
$("video").onerror = () => { state("video unavailable (too many viewers, or the server stopped); retrying", true); setTimeout(startStream, 2000); };

function state(text, bad) { $("state").textContent = text; $("state").className = bad ? "bad" : ""; }

function show(s) {
  const sign = $("sign");
  sign.textContent = s.frame === null ? "waiting\\u2026" : (s.label === null ? "no sign" : s.label);
  sign.className = s.label === null ? "none" : "";
  $("confbar").style.width = pct(s.smoothed_confidence || 0);
  $("conf").textContent = s.frame === null ? "" : "confidence " + pct(s.smoothed_confidence) + " (smoothed)";
  $("raw").textContent = s.frame === null ? "" : s.raw_label + " " + pct(s.confidence);
  $("fps").textContent = s.fps.toFixed(1);
  $("inference").textContent = s.inference_ms.toFixed(2) + " ms";
  $("frame").textContent = s.frame === null ? "" : s.frame;
  $("truthrow").hidden = !s.truth;
  $("truth").textContent = s.truth || "";
  $("viewers").textContent = s.viewers + " of " + s.max_viewers;
  const events = s.events || [];  // newest first
  $("events").replaceChildren(...events.map((e) => {
    const li = document.createElement("li");
    li.textContent = e.sign + " " + e.event + " " + pct(e.confidence) + ", " + e.held_s.toFixed(1) + " s";
    return li;
  }));
  // For tests and scripts: what the page shows, and whether the video has frames.
  document.body.dataset.frame = s.frame === null ? "" : s.frame;
  document.body.dataset.label = s.label === null ? "" : s.label;
  document.body.dataset.events = events.map((e) => e.sign + ":" + e.event).join(" ");
  document.body.dataset.videoWidth = $("video").naturalWidth;
  showTeach(s.teach, s.labels || []);
}

// Teaching (edge-signs teach --serve): built once the status says teaching is on, never for live.
let teachButtons = null, teachLabels = [], ended = false;

function note(text, bad) { $("teachnote").textContent = text; $("teachnote").className = bad ? "bad" : ""; }

function buildTeach(labels) {
  teachLabels = labels;
  const buttons = labels.map((label) => {
    const b = document.createElement("button");
    b.dataset.label = label;
    b.onclick = () => teach(label);
    return b;
  });
  const done = document.createElement("button");
  done.id = "done";
  done.textContent = "done";
  done.onclick = finish;
  const p = document.createElement("p");
  p.id = "teachnote";
  $("teach").replaceChildren(...buttons, done, p);
  document.addEventListener("keydown", (e) => { if (labels.includes(e.key) && !ended) teach(e.key); });
  return buttons;
}

function showTeach(t, labels) {
  $("teach").hidden = !t;
  if (!t) return;
  document.title = "edge-signs teach";
  teachButtons = teachButtons || buildTeach(labels);
  t.counts.forEach((n, k) => {
    teachButtons[k].textContent = teachLabels[k] + " (" + n + ")";
    teachButtons[k].className = n < t.min_per_sign ? "short" : "";
  });
  if (!$("teachnote").textContent) note("a button teaches the frame shown as that sign; done needs " + t.min_per_sign + " frames of each");
  document.body.dataset.taught = t.counts.join(" ");
  document.body.dataset.head = t.head;
}

async function post(path, body) {
  const r = await fetch(path + (auth ? "?" + auth : ""), {method: "POST", cache: "no-store",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const text = await r.text();
  if (!r.ok) throw new Error(text.trim());
  return JSON.parse(text);
}

async function teach(label) {
  try {
    const a = await post("teach", {label: label});
    showTeach(a.teach, teachLabels);
    note("taught frame " + a.frame + " as " + a.taught + (a.teach.head === "taught" ? "; the taught head predicts" : ""));
  } catch (e) { note(e.message, true); }
}

async function finish() {
  try {
    const a = await post("teach/done", {});
    ended = true;
    note("done: " + a.out + " is being written; the run ends");
    state("ended");
  } catch (e) { note(e.message, true); }
}

async function poll() {
  if (ended) return;
  try {
    const r = await fetch("status" + (auth ? "?" + auth : ""), {cache: "no-store"});
    if (!r.ok) throw new Error(r.status + " " + (await r.text()).trim());
    const s = await r.json();
    if (ended) return;
    show(s);
    state("live");
  } catch (e) {
    if (ended) return;
    state("disconnected: " + e.message, true);
  }
  setTimeout(poll, CFG.poll_ms);
}
startStream();
poll();
</script>
</body></html>
"""


def render_page(token: Optional[str], about: str) -> bytes:
    """The page for one run: the token its own requests carry (JSON inside <script>), and ``about`` (escaped: it names files)."""
    cfg = json.dumps({"token": token, "poll_ms": config.SERVE_STATUS_POLL_MS}).replace("</", "<\\/")
    return PAGE.replace("__CONFIG__", cfg).replace("__ABOUT__", html.escape(about)).encode("utf-8")
