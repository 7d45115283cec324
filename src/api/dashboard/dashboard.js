// The Plexus dashboard: one page, fed by the node's live feed (GET /v1/events,
// Server-Sent Events read through fetch so the token travels in a header), acting
// through the same authenticated API as the CLI. No framework, no build step.
"use strict";

const TOKEN_KEY = "plexus-token";
let token = null;
let last = null;          // the previous snapshot
const log = [];           // changes seen, newest first
const LOG_MAX = 200;

// ----- the token -----

function takeToken() {
  const m = location.hash.match(/token=([0-9a-fA-F]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, m[1]);
    history.replaceState(null, "", location.pathname + "#cluster");
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, options.headers || {});
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  const text = await resp.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  if (!resp.ok) {
    throw new Error((body && body.error) || `${resp.status} ${resp.statusText}`);
  }
  return body;
}

// ----- the live feed -----

function setConnection(on, text) {
  const el = document.getElementById("connection");
  el.textContent = text;
  el.className = `pill ${on ? "on" : "off"}`;
}

async function follow() {
  let wait = 500;
  for (;;) {
    try {
      const resp = await fetch("/v1/events", { headers: { Authorization: `Bearer ${token}` } });
      if (resp.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin("the token was refused");
        return;
      }
      if (!resp.ok) throw new Error(`${resp.status} ${resp.statusText}`);
      setConnection(true, "live");
      wait = 500;
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          handle(block);
        }
      }
      setConnection(false, "reconnecting");
    } catch (e) {
      setConnection(false, `offline: ${e.message}`);
    }
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 10000);
  }
}

function handle(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (event !== "snapshot" || data.length === 0) return;
  let snap;
  try { snap = JSON.parse(data.join("\n")); } catch { return; }
  noteChanges(last, snap);
  last = snap;
  render(snap);
}

// ----- helpers -----

const short = (id) => (id ? String(id).slice(-6) : "");
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => (
  { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs = {}) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function actorsOf(snap) {
  const s = snap && snap.jobs && snap.jobs.Status;
  return (s && s.actors) || [];
}

function jobsOf(snap) {
  const s = snap && snap.jobs && snap.jobs.Status;
  return (s && s.jobs) || [];
}

/// Every node: this one first, then the members it sees.
function nodesOf(snap) {
  const self = { id: snap.node.id, state: "alive", total: null, self: true };
  return [self, ...(snap.members || []).map((m) => Object.assign({ self: false }, m))]
    .sort((a, b) => (a.id < b.id ? -1 : 1));
}

function fmtBytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function fmtTags(tags) {
  if (!tags) return "";
  return Object.entries(tags).map(([k, v]) => (v === "" ? k : `${k}=${v}`)).join(", ");
}

// ----- what changed -----

function noteChanges(before, now) {
  const time = new Date().toLocaleTimeString();
  const add = (text, kind) => {
    log.unshift({ time, text, kind });
    if (log.length > LOG_MAX) log.pop();
  };
  if (!before) {
    add(`connected to ${short(now.node.id)}`, "info");
    return;
  }
  const was = new Map(actorsOf(before).map((a) => [a.key, a]));
  for (const a of actorsOf(now)) {
    const b = was.get(a.key);
    if (!b) add(`${a.key} placed on ${short(a.node)}`, "placed");
    else if (b.node !== a.node) add(`${a.key} moved ${short(b.node)} → ${short(a.node)}`, "moved");
    else if (a.moving_to && a.moving_to !== b.moving_to) add(`${a.key} migrating ${short(a.node)} → ${short(a.moving_to)}`, "migrating");
    was.delete(a.key);
  }
  for (const key of was.keys()) add(`${key} stopped`, "stopped");
  const states = new Map((before.members || []).map((m) => [m.id, m.state]));
  for (const m of now.members || []) {
    const s = states.get(m.id);
    if (s === undefined) add(`node ${short(m.id)} joined`, "joined");
    else if (s !== m.state) add(`node ${short(m.id)} ${m.state}`, m.state);
  }
}

// ----- rendering -----

function render(snap) {
  document.getElementById("network").textContent = snap.node.network ? `network ${snap.node.network}` : "";
  document.getElementById("self").textContent =
    `node ${short(snap.node.id)} · v${snap.node.version} (${String(snap.node.commit || "").slice(0, 9)})`;
  renderMap(snap);
  renderLog();
  renderNodes(snap);
  renderJobs(snap);
  renderActors(snap);
  renderEpochs(snap);
  renderReceipts(snap);
  renderStorage(snap);
  renderFiles(snap);
  renderModels(snap);
  const errors = Object.entries(snap.errors || {}).map(([k, v]) => `${k}: ${v}`);
  document.getElementById("errors").textContent = errors.join("\n");
}

function layout(nodes) {
  const cx = 320, cy = 210, r = nodes.length > 1 ? 150 : 0;
  const at = new Map();
  nodes.forEach((n, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / nodes.length;
    at.set(n.id, { x: cx + r * Math.cos(angle), y: cy + r * Math.sin(angle) });
  });
  return at;
}

function renderMap(snap) {
  const map = document.getElementById("map");
  const nodes = nodesOf(snap);
  const at = layout(nodes);
  // Nodes: rebuilt (cheap); actors: kept by key so a move animates.
  let nodeLayer = map.querySelector("#map-nodes");
  let moveLayer = map.querySelector("#map-moves");
  let actorLayer = map.querySelector("#map-actors");
  if (!nodeLayer) {
    nodeLayer = svg("g", { id: "map-nodes" });
    moveLayer = svg("g", { id: "map-moves" });
    actorLayer = svg("g", { id: "map-actors" });
    map.append(nodeLayer, moveLayer, actorLayer);
  }
  nodeLayer.replaceChildren();
  for (const n of nodes) {
    const p = at.get(n.id);
    const g = svg("g", { class: `node state-${n.state}`, "data-node": n.id, "data-testid": "map-node" });
    g.append(svg("circle", { cx: p.x, cy: p.y, r: 46 }));
    const label = svg("text", { x: p.x, y: p.y + 62 });
    label.textContent = `${short(n.id)}${n.self ? " (here)" : ""}`;
    g.append(label);
    nodeLayer.append(g);
  }
  const actors = actorsOf(snap);
  const perNode = new Map();
  moveLayer.replaceChildren();
  const seen = new Set();
  for (const a of actors) {
    const host = at.get(a.node) || { x: 320, y: 210 };
    const k = perNode.get(a.node) || 0;
    perNode.set(a.node, k + 1);
    const angle = (2 * Math.PI * k) / 8;
    const x = host.x + 26 * Math.cos(angle) * (k < 8 ? 1 : 0.5);
    const y = host.y + 26 * Math.sin(angle) * (k < 8 ? 1 : 0.5);
    let g = actorLayer.querySelector(`g[data-actor="${CSS.escape(a.key)}"]`);
    if (!g) {
      g = svg("g", { class: "actor", "data-actor": a.key, "data-testid": "map-actor" });
      g.append(svg("circle", { r: 8 }));
      const t = svg("text", { x: 10, y: 4 });
      t.textContent = a.key;
      g.append(t);
      g.style.transform = `translate(${x}px, ${y}px)`;
      actorLayer.append(g);
    }
    g.setAttribute("data-node", a.node);
    g.setAttribute("class", `actor${a.active ? "" : " inactive"}${a.moving_to ? " moving" : ""}`);
    g.style.transform = `translate(${x}px, ${y}px)`;
    seen.add(a.key);
    if (a.moving_to && at.has(a.moving_to)) {
      const to = at.get(a.moving_to);
      moveLayer.append(svg("line", { class: "move", x1: x, y1: y, x2: to.x, y2: to.y }));
    }
  }
  for (const g of [...actorLayer.children]) {
    if (!seen.has(g.getAttribute("data-actor"))) g.remove();
  }
}

function renderLog() {
  document.getElementById("log").replaceChildren(
    ...log.slice(0, 60).map((e) => el("li", { class: `log-${e.kind}`, "data-kind": e.kind },
      [el("span", { class: "muted", text: `${e.time} ` }), e.text])));
}

function renderNodes(snap) {
  const count = new Map();
  for (const a of actorsOf(snap)) count.set(a.node, (count.get(a.node) || 0) + 1);
  const rows = nodesOf(snap).map((n) => el("tr", { "data-testid": "node-row", "data-node": n.id }, [
    el("td", { class: "mono", title: n.id, text: `${short(n.id)}${n.self ? " (this node)" : ""}` }),
    el("td", { class: `state-${n.self ? "alive" : n.state}`, text: n.self ? "alive (self)" : n.state }),
    el("td", { text: fmtTags(((snap.allowlist || {})[n.id] || {}).tags) }),
    el("td", { text: n.total ? `${(n.total.cpu_millis / 1000).toFixed(1)}` : "" }),
    el("td", { text: n.total ? fmtBytes(n.total.memory_bytes) : "" }),
    el("td", { text: n.total ? String(n.total.gpus) : "" }),
    el("td", { text: String(count.get(n.id) || 0) }),
    el("td", { text: n.self ? `${snap.node.version} (${String(snap.node.commit || "").slice(0, 12)})` : (n.software || "") }),
  ]));
  document.querySelector("#nodes tbody").replaceChildren(...rows);
}

function actionsEnabled(snap) {
  return Boolean(snap.operator);
}

function renderJobs(snap) {
  const can = actionsEnabled(snap);
  document.getElementById("deploy").disabled = !can;
  if (!can) {
    document.getElementById("deploy-result").textContent =
      "actions are off: this node has no api_operator_key";
  }
  const rows = jobsOf(snap).map((j) => el("tr", { "data-testid": "job-row", "data-job": j.name }, [
    el("td", { text: j.name }),
    el("td", { text: j.state }),
    el("td", { text: String(j.actors) }),
    el("td", { text: String(j.running) }),
    el("td", { text: String(j.priority) }),
    el("td", { class: "mono", text: short(j.submitter) }),
    el("td", {}, [el("button", {
      text: "stop", ...(can ? {} : { disabled: "" }),
      onclick: () => act(`/v1/jobs/${encodeURIComponent(j.name)}/stop`, { method: "POST" }),
    })]),
  ]));
  document.querySelector("#jobs tbody").replaceChildren(...rows);
}

function renderActors(snap) {
  const can = actionsEnabled(snap);
  const live = nodesOf(snap).filter((n) => n.self || n.state === "alive");
  const rows = actorsOf(snap).map((a) => {
    const select = el("select", { "data-testid": "migrate-to" },
      live.filter((n) => n.id !== a.node).map((n) => el("option", { value: n.id, text: short(n.id) })));
    return el("tr", { "data-testid": "actor-row", "data-actor": a.key, "data-node": a.node }, [
      el("td", { text: a.key }),
      el("td", { text: a.kind }),
      el("td", { class: "mono", title: a.node, text: short(a.node) }),
      el("td", { text: a.active ? "yes" : "no" }),
      el("td", { class: "mono", text: (a.replicas || []).map(short).join(" ") }),
      el("td", { class: "mono", text: short(a.moving_to) }),
      el("td", {}, [select, el("button", {
        text: "migrate", "data-testid": "migrate", ...(can ? {} : { disabled: "" }),
        onclick: () => act("/v1/migrate", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ actor: a.key, to: select.value }),
        }),
      })]),
    ]);
  });
  // Keep an open select while the user picks: replace rows only when the set of
  // actors or their hosts changed.
  const body = document.querySelector("#actors tbody");
  const sig = actorsOf(snap).map((a) => `${a.key}@${a.node}>${a.moving_to || ""}:${a.active}`).join("|")
    + `#${live.map((n) => n.id).join(",")}`;
  if (body.getAttribute("data-sig") !== sig) {
    body.replaceChildren(...rows);
    body.setAttribute("data-sig", sig);
  }
}

async function act(path, options) {
  const out = document.getElementById("deploy-result");
  try {
    const r = await api(path, options);
    out.textContent = `ok: ${JSON.stringify(r)}`;
  } catch (e) {
    out.textContent = `refused: ${e.message}`;
  }
}

function renderEpochs(snap) {
  const e = snap.epochs;
  const body = document.querySelector("#epochs tbody");
  if (!e) {
    document.getElementById("epoch-summary").textContent = "epochs are off on this node";
    body.replaceChildren();
    return;
  }
  document.getElementById("epoch-summary").textContent =
    `current ${e.current ?? "-"} · DKG ${e.dkg ?? "-"}`;
  body.replaceChildren(...(e.epochs || []).slice().reverse().map((r) => el("tr", { "data-testid": "epoch-row" }, [
    el("td", { text: String(r.epoch) }),
    el("td", { text: String(r.state).toLowerCase() }),
    el("td", { class: "mono", title: r.hash || "", text: String(r.hash || "").slice(0, 16) }),
    el("td", { text: String(r.signers ?? "") }),
    el("td", { class: "mono", title: r.anchor || "", text: String(r.anchor || "").slice(0, 16) }),
  ])));
}

function renderReceipts(snap) {
  const r = snap.receipts;
  const rows = [];
  for (const e of (r && r.epochs) || []) {
    for (const w of e.workers || []) {
      rows.push(el("tr", { "data-testid": "receipt-row" }, [
        el("td", { text: String(e.epoch) }),
        el("td", { class: "mono", text: short(w.node) }),
        el("td", { text: String(w.receipts) }),
        el("td", { text: String(w.items) }),
        el("td", { text: String(w.sampled) }),
        el("td", { text: String(w.verified) }),
        el("td", { text: String(w.unverified) }),
        el("td", { class: w.proven_wrong ? "error" : "", text: w.proven_wrong ? "yes" : "no" }),
        el("td", { text: String(w.work_units) }),
      ]));
    }
  }
  document.querySelector("#receipts tbody").replaceChildren(...rows);
}

function renderStorage(snap) {
  const s = snap.storage;
  const dl = document.getElementById("storage");
  if (!s) { dl.replaceChildren(el("dt", { text: "storage" }), el("dd", { text: "not running here" })); return; }
  const items = [
    ["chunks held", s.chunks], ["bytes held", fmtBytes(s.bytes)],
    ["quota", s.quota_bytes == null ? "none" : fmtBytes(s.quota_bytes)],
    ["lost, being fetched back", s.lost],
    ["repairs in flight / queued", Array.isArray(s.repairing) ? s.repairing.join(" / ") : s.repairing],
    ["repaired here", s.repaired], ["handed off", s.handed_off],
    ["corrupt copies found", s.corrupt_found], ["write errors", s.write_errors],
    ["key-value keys", s.kv_keys], ["garbage pending", s.gc_pending],
  ];
  dl.replaceChildren(...items.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v ?? "") })]));
}

const copies = new Map(); // file id -> text, once asked

function renderFiles(snap) {
  const files = (snap.files && snap.files.files) || [];
  document.querySelector("#files tbody").replaceChildren(...files.map((f) => {
    const cell = el("td", { "data-testid": "copies", text: copies.get(f.id) || "" });
    const ask = el("button", {
      text: "copies",
      onclick: async () => {
        cell.textContent = "…";
        try {
          const s = await api(`/v1/fs/files/${encodeURIComponent(f.id)}`);
          const text = `${s.copies_min}–${s.copies_max} of ${s.replicas ?? f.replicas}`;
          copies.set(f.id, text);
          cell.textContent = text;
        } catch (e) {
          cell.textContent = `unknown: ${e.message}`;
        }
      },
    });
    if (!copies.has(f.id)) cell.append(ask);
    return el("tr", { "data-testid": "file-row" }, [
      el("td", { class: "mono", title: f.id, text: `${f.id.slice(0, 14)}…` }),
      el("td", { text: fmtBytes(f.size) }),
      el("td", { text: String(f.chunks) }),
      el("td", { text: f.sealed ? "yes" : "no" }),
      el("td", { text: String(f.replicas) }),
      el("td", { text: f.pinned ? "yes" : "no" }),
      cell,
    ]);
  }));
}

function renderModels(snap) {
  const m = snap.models;
  const list = (m && (m.local || m.models)) || [];
  document.querySelector("#models tbody").replaceChildren(...list.map((x) => el("tr", {}, [
    el("td", { class: "mono", text: x.hash }),
    el("td", { text: fmtBytes(x.bytes) }),
    el("td", { text: x.loaded ? "yes" : "no" }),
  ])));
}

// ----- pages and start -----

function showPage() {
  const page = (location.hash.replace("#", "") || "cluster").split("&")[0];
  for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== `page-${page}`;
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.page === page);
}

function showLogin(why) {
  const form = document.getElementById("login");
  form.hidden = false;
  if (why) form.querySelector("p").textContent = `The token was refused (${why}). Paste the node's API token.`;
}

function start() {
  token = takeToken();
  showPage();
  window.addEventListener("hashchange", showPage);
  document.getElementById("login").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    location.reload();
  });
  document.getElementById("deploy-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act("/v1/jobs", { method: "POST", headers: { "Content-Type": "text/plain" }, body: document.getElementById("spec").value });
  });
  document.getElementById("spec-file").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    if (f) document.getElementById("spec").value = await f.text();
  });
  if (!token) { showLogin(); setConnection(false, "no token"); return; }
  follow();
}

start();
