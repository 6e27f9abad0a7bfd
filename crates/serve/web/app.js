// weft serve's page: redraws the lab's SVG (from `weft graph`) every
// second, lists events, and sends changes with the token from the URL.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
let selected = null; // {kind: "cable", a, b} or {kind: "node", name}
let lastTs = 0;
const SVGNS = "http://www.w3.org/2000/svg";
// Per cable ("a|b"): the counters last drawn and when the server read
// them, and the rates worked out between the last two reads.
const seen = new Map();
const rates = new Map();

function api(path, params, method) {
  const q = new URLSearchParams(params || {}).toString();
  return fetch("/api/" + path + (q ? "?" + q : ""), {
    method: method || "GET",
    headers: { "X-Weft-Token": token },
  }).then(async (r) => {
    if (!r.ok) {
      let msg = r.status + "";
      try { msg = (await r.json()).error; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return r;
  });
}

function setStatus(text, error) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function markSelection() {
  const g = document.getElementById("graph");
  g.querySelectorAll(".selected").forEach((x) => x.classList.remove("selected"));
  if (!selected) return;
  if (selected.kind === "cable") {
    g.querySelectorAll(".cable").forEach((l) => {
      if (l.dataset.a === selected.a && l.dataset.b === selected.b) l.classList.add("selected");
    });
  } else {
    g.querySelectorAll("g.node").forEach((n) => {
      if (n.dataset.node === selected.name) n.classList.add("selected");
    });
  }
}

function perSecond(now, prev, dt) {
  // A counter that went back belongs to an interface made again.
  if (!now || !prev || now[0] < prev[0] || now[1] < prev[1]) return null;
  return [(now[0] - prev[0]) / dt, (now[1] - prev[1]) / dt];
}

function human(bytesPerS) {
  const units = ["B/s", "kB/s", "MB/s", "GB/s"];
  let v = bytesPerS;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return (v >= 100 || u === 0 ? Math.round(v) : v.toFixed(1)) + " " + units[u];
}

// Which way a→b runs on screen, as an arrow.
function arrows(l) {
  let ax, ay, bx, by;
  if (l.tagName === "line") {
    [ax, ay, bx, by] = ["x1", "y1", "x2", "y2"].map((k) => Number(l.getAttribute(k)));
  } else {
    const d = l.getAttribute("d").split(" ");
    [ax, ay, bx, by] = [d[1], d[2], d[6], d[7]].map(Number);
  }
  if (Math.abs(ax - bx) >= Math.abs(ay - by)) return ax <= bx ? ["→", "←"] : ["←", "→"];
  return ay <= by ? ["↓", "↑"] : ["↑", "↓"];
}

// Rates on each cable that carries traffic: what it carried (from the
// server, per cable [a, b, [bytes, frames] a to b, the same b to a])
// against the last read. Drawn in a layer of their own, replaced each time.
function drawRates(g, readAt, traffic) {
  const svg = g.querySelector("svg");
  if (!svg) return;
  const old = svg.querySelector("g.rates");
  if (old) old.remove();
  const layer = document.createElementNS(SVGNS, "g");
  layer.setAttribute("class", "rates");
  const cables = new Map();
  g.querySelectorAll(".cable").forEach((l) => cables.set(l.dataset.a + "|" + l.dataset.b, l));
  for (const [a, b, ab, ba] of traffic) {
    const key = a + "|" + b;
    const now = { t: readAt, ab, ba };
    const prev = seen.get(key);
    if (prev && prev.t === readAt) continue; // the same read again
    seen.set(key, now);
    if (!prev) continue;
    const dt = (now.t - prev.t) / 1000;
    const r = { ab: perSecond(now.ab, prev.ab, dt), ba: perSecond(now.ba, prev.ba, dt) };
    rates.set(key, r);
  }
  for (const [key, r] of rates) {
    const l = cables.get(key);
    if (!l || !l.dataset.mid) continue;
    const [fwd, back] = arrows(l);
    const words = [];
    if (r.ab && r.ab[1] > 0) words.push(fwd + " " + human(r.ab[0]));
    if (r.ba && r.ba[1] > 0) words.push(back + " " + human(r.ba[0]));
    if (!words.length) continue;
    const [x, y] = l.dataset.mid.split(" ").map(Number);
    const t = document.createElementNS(SVGNS, "text");
    t.setAttribute("x", x);
    t.setAttribute("y", y - 4);
    t.setAttribute("text-anchor", "middle");
    t.setAttribute("class", "rate");
    t.dataset.cable = key;
    t.textContent = words.join("  ");
    layer.append(t);
  }
  svg.append(layer);
}

// What the last redraws cost, newest last (the status line shows the last;
// bench/serve.sh reads them): the server's time reading the lab and
// drawing it, the whole request, putting the drawing (when it changed) and
// the rates in the page, and until the browser painted it.
window.weftRedraws = [];
let etag = "";
// Redraws are numbered as they ask: an answer older than the one drawn is
// not drawn. (A periodic redraw asked before a click's change and answered
// after the change's own redraw would put the old state back for a second.)
let asked = 0;
let drawn = 0;

// why: "tick" (the periodic redraw) or "change" (right after a change the
// page made); crates/cli/tests/serve.rs reads it back.
async function redraw(why = "tick") {
  const n = ++asked;
  const t0 = performance.now();
  const j = await (await api("live", { etag })).json();
  const t1 = performance.now();
  if (n < drawn) return;
  drawn = n;
  const g = document.getElementById("graph");
  if (j.svg !== null) {
    g.innerHTML = j.svg;
    etag = j.etag;
    // A wide invisible twin over each cable makes it easy to click.
    g.querySelectorAll(".cable").forEach((l) => {
      const hit = l.cloneNode(false);
      hit.setAttribute("class", "hit");
      hit.removeAttribute("stroke-dasharray");
      hit.addEventListener("click", (ev) => { ev.stopPropagation(); showCable(l.dataset.a, l.dataset.b); });
      l.after(hit);
    });
    g.querySelectorAll("g.node").forEach((n) => {
      n.addEventListener("click", () => showNode(n.dataset.node));
    });
    markSelection();
  }
  drawRates(g, j.read_ms, j.traffic);
  if (selected && selected.kind === "cable") updateCableState();
  const t2 = performance.now();
  // Painted: after the next frame has been drawn.
  await new Promise((ok) => requestAnimationFrame(() => setTimeout(ok, 0)));
  const t3 = performance.now();
  window.weftRedraws.push({
    why, status_ms: j.timing.status_ms, svg_ms: j.timing.svg_ms, request_ms: t1 - t0,
    dom_ms: t2 - t1, paint_ms: t3 - t2, total_ms: t3 - t0,
    drawing_changed: j.svg !== null, bytes: j.svg ? j.svg.length : 0,
  });
  if (window.weftRedraws.length > 60) window.weftRedraws.shift();
}

function cableState(a, b) {
  const l = [...document.querySelectorAll("#graph .cable")].find(
    (x) => x.dataset.a === a && x.dataset.b === b);
  return l ? l.dataset.state : "?";
}

function updateCableState() {
  const s = document.getElementById("cable-state");
  if (s) s.textContent = cableState(selected.a, selected.b);
  const t = document.getElementById("cable-traffic");
  if (!t) return;
  const key = selected.a + "|" + selected.b;
  const c = seen.get(key);
  const r = rates.get(key) || {};
  t.innerHTML = "";
  for (const [dir, from, to] of [["ab", selected.a, selected.b], ["ba", selected.b, selected.a]]) {
    const tr = el("tr");
    const total = c && c[dir];
    const rate = r[dir];
    tr.append(
      el("td", {}, from + " → " + to),
      el("td", { class: "rate-" + dir }, rate ? human(rate[0]) + ", " + Math.round(rate[1]) + " frames/s" : "…"),
      el("td", {}, total ? total[1] + " frames, " + total[0] + " bytes" : "no counters"));
    t.append(tr);
  }
}

function showCable(a, b) {
  selected = { kind: "cable", a, b };
  markSelection();
  const p = document.getElementById("panel");
  p.innerHTML = "";
  p.append(el("h2", {}, a + " — " + b));
  const st = el("p", {}, "state: ");
  st.append(el("b", { id: "cable-state" }, cableState(a, b)));
  p.append(st);
  p.append(el("table", { id: "cable-traffic" }));
  updateCableState();
  const down = el("button", { id: "link-down" }, "down");
  const up = el("button", { id: "link-up" }, "up");
  down.onclick = () => change("link", { a, b, state: "down" });
  up.onclick = () => change("link", { a, b, state: "up" });
  p.append(down, up);
  const imp = el("p", {}, "impair: delay ");
  const delay = el("input", { id: "impair-delay", placeholder: "20ms" });
  const loss = el("input", { id: "impair-loss", placeholder: "1%" });
  const set = el("button", { id: "impair-set" }, "set");
  const clear = el("button", { id: "impair-clear" }, "clear");
  set.onclick = () => change("impair", { a, b, delay: delay.value, loss: loss.value });
  clear.onclick = () => change("impair", { a, b, clear: "1" });
  imp.append(delay, " loss ", loss, " ", set, clear);
  p.append(imp);
  const cap = el("p", {}, "capture ");
  const secs = el("input", { id: "capture-seconds", value: "3" });
  const go = el("button", { id: "capture" }, "record and download");
  go.onclick = () => capture(a, secs.value);
  cap.append(secs, " s on " + a + " ", go);
  p.append(cap);
  p.append(el("pre", { id: "result" }));
}

async function change(what, params) {
  const out = document.getElementById("result");
  try {
    const r = await api(what, params, "POST");
    out.textContent = JSON.stringify(await r.json());
    await redraw("change");
  } catch (e) {
    out.textContent = "refused: " + e.message;
  }
}

async function capture(point, seconds) {
  const out = document.getElementById("result");
  out.textContent = "recording " + seconds + " s…";
  try {
    const r = await api("capture", { point, seconds }, "POST");
    const blob = await r.blob();
    const name = (r.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const a = el("a", { href: URL.createObjectURL(blob), download: name ? name[1] : "capture.pcapng" });
    document.body.append(a);
    a.click();
    a.remove();
    out.textContent = "downloaded " + blob.size + " bytes";
  } catch (e) {
    out.textContent = "capture failed: " + e.message;
  }
}

async function showNode(name) {
  selected = { kind: "node", name };
  markSelection();
  const p = document.getElementById("panel");
  p.innerHTML = "";
  p.append(el("h2", {}, name));
  try {
    const n = await (await api("node", { name })).json();
    const t = el("table", { id: "node-interfaces" });
    for (const i of n.interfaces) {
      const tr = el("tr");
      tr.append(el("td", {}, i.name), el("td", {}, i.kind + " " + (i.state || "")),
        el("td", {}, (i.addresses || []).join(" ")));
      t.append(tr);
    }
    p.append(t);
    if (n.routes && n.routes.length) {
      p.append(el("h2", {}, "routes"));
      p.append(el("pre", { id: "node-routes" }, n.routes.join("\n")));
    }
  } catch (e) {
    p.append(el("p", {}, e.message));
  }
  for (const cmd of ["ip addr", "ip route"]) {
    const b = el("button", { id: "exec-" + cmd.replace(" ", "-") }, cmd);
    b.onclick = async () => {
      const out = document.getElementById("exec-out");
      try {
        out.textContent = await (await api("exec", { node: name, cmd })).text();
      } catch (e) {
        out.textContent = e.message;
      }
    };
    p.append(b);
  }
  p.append(el("pre", { id: "exec-out" }));
}

function describe(e) {
  const t = new Date(e.ts).toISOString().slice(11, 23);
  let where = e.node ? e.node + (e.port ? ":" + e.port : "") + " " : "";
  let rest = "";
  if (e.from !== undefined && e.to !== undefined) rest = " " + e.from + " → " + e.to;
  else if (e.a) rest = " " + e.a + " — " + e.b;
  else if (e.action) rest = " " + e.action + " " + (e.detail || e.why || "");
  else if (e.impair) rest = " " + e.impair;
  else if (e.mac) rest = " " + e.mac;
  return t + " " + where + e.type + rest;
}

async function pollEvents() {
  const r = await api("events", { after: lastTs });
  const evs = await r.json();
  const list = document.getElementById("events");
  for (const e of evs) {
    lastTs = Math.max(lastTs, e.ts);
    if (e.type === "counters") continue;
    const li = el("li", { class: e.type.split(".")[0] }, describe(e));
    list.prepend(li);
  }
  while (list.children.length > 300) list.lastChild.remove();
}

let busy = false;

async function tick() {
  // A slow answer must not let two redraws (and two event polls with the
  // same starting point) overlap.
  if (busy) return;
  busy = true;
  try {
    await redraw();
    await pollEvents();
    const last = window.weftRedraws[window.weftRedraws.length - 1];
    setStatus("live, redrawn " + new Date().toLocaleTimeString() +
      (last ? " in " + Math.round(last.total_ms) + " ms" : ""));
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    busy = false;
  }
}

async function start() {
  try {
    const lab = await (await api("lab")).json();
    document.getElementById("title").textContent = "weft — lab " + lab.lab;
    document.title = "weft serve — " + lab.lab;
  } catch (e) {
    setStatus(e.message, true);
    return;
  }
  await tick();
  setInterval(tick, 1000);
}

start();
