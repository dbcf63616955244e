// The status page: /ui/state for nodes, workers and jobs; /ui/events (server-sent events)
// for the live timeline, which also triggers a fresh /ui/state. No framework, no build.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const maxEvents = 200;
  // When the page first drew a worker on a node (ms since the epoch), by "worker@node":
  // the Chromium test reads it to measure how long a move takes to show.
  const seen = (window.coordSeen = {});
  let served = "";
  let drawn = false; // after the first drawing, a worker that appears on a node is highlighted

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }

  function ago(t, now) {
    if (!t) return "-";
    let s = Math.round((now - new Date(t)) / 1000);
    const sign = s < 0 ? "in " : "";
    s = Math.abs(s);
    let txt;
    if (s < 1) return "now";
    else if (s < 60) txt = s + "s";
    else if (s < 3600) txt = Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    else if (s < 172800) txt = Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
    else txt = Math.floor(s / 86400) + "d";
    return sign ? sign + txt : txt + " ago";
  }

  function renderNodes(st, now) {
    const box = $("nodes");
    const byNode = new Map();
    for (const n of st.nodes) byNode.set(n.node, { info: n, workers: [] });
    for (const w of st.workers) {
      // A claim can outlive its node's record for up to one TTL (a killed node).
      if (!byNode.has(w.node)) byNode.set(w.node, { info: null, workers: [] });
      byNode.get(w.node).workers.push(w);
    }
    const cards = [];
    for (const [name, { info, workers }] of [...byNode].sort((a, b) => a[0].localeCompare(b[0]))) {
      const cls = ["node", info ? "" : "gone", name === served ? "self" : ""].join(" ").trim();
      const badges = [];
      if (!info) badges.push(el("span", { class: "badge gone" }, "not live"));
      else if (info.draining) badges.push(el("span", { class: "badge drain" }, "draining"));
      const sub = info ? `up ${ago(info.started, now).replace(" ago", "")} · ${info.version} · ${workers.length} worker${workers.length === 1 ? "" : "s"}` : "no node record: its claims expire";
      const list = el("ul", { class: "workers" });
      for (const w of workers.sort((a, b) => a.worker.localeCompare(b.worker))) {
        const key = w.worker + "@" + name;
        const fresh = !(key in seen) && drawn;
        if (!(key in seen)) seen[key] = Date.now();
        list.append(el("li", { "data-worker": w.worker, "data-node": name, "data-token": w.token,
          class: [w.state, fresh ? "fresh" : ""].join(" ").trim() },
          el("span", { class: "w" }, w.worker),
          el("span", { class: "t", title: "fencing token " + w.token }, `#${w.token} · ${ago(w.since, now)}`)));
      }
      if (!workers.length) list.append(el("li", { class: "empty" }, "no workers"));
      cards.push(el("section", { class: cls, "data-node": name, "data-live": info ? "true" : "false" },
        el("h3", {}, el("span", {}, name), ...badges), el("p", { class: "sub" }, sub), list));
    }
    if (!cards.length) cards.push(el("p", { class: "empty" }, "no live nodes"));
    box.replaceChildren(...cards);
    drawn = true;
    $("counts").textContent = `${st.nodes.length} live · ${st.workers.length} workers`;
    $("cluster").textContent = st.namespace;
  }

  function renderJobs(jobs, now) {
    const body = $("jobs").tBodies[0];
    const rows = (jobs || []).map((j) => {
      const l = j.last;
      return el("tr", { "data-job": j.name },
        el("td", {}, el("b", {}, j.name)), el("td", {}, el("code", {}, j.schedule)),
        el("td", {}, j.running ? "running" : ago(j.next, now)),
        el("td", {}, l ? ago(l.tick, now) : "-"),
        el("td", { class: l ? "ty " + l.state : "" }, l ? l.state + (l.error ? ": " + l.error : "") : "-"),
        el("td", {}, l ? l.node : "-"));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "no jobs")));
    body.replaceChildren(...rows);
  }

  let problemText = { state: "", events: "" };
  function problem(kind, text) {
    problemText[kind] = text || "";
    const all = Object.values(problemText).filter(Boolean).join(" · ");
    $("problem").hidden = !all;
    $("problem").textContent = all;
  }

  let inflight = false, again = false;
  async function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    try {
      const r = await fetch("/ui/state", { cache: "no-store" });
      const s = await r.json();
      served = s.node;
      $("served").textContent = s.node;
      const now = new Date(s.time);
      if (s.status) renderNodes(s.status, now);
      renderJobs(s.jobs, now);
      problem("state", s.status_error ? "status: " + s.status_error : s.jobs_error ? "jobs: " + s.jobs_error : "");
      $("updated").textContent = new Date().toLocaleTimeString();
    } catch (e) {
      problem("state", "cannot reach " + (served || "the node") + ": " + e.message);
    } finally {
      inflight = false;
      if (again) { again = false; setTimeout(refresh, 100); }
    }
  }
  // One /ui/state per burst of events: a rebalance publishes several at once.
  let soon = null;
  function refreshSoon() {
    if (!soon) soon = setTimeout(() => { soon = null; refresh(); }, 150);
  }
  const openedAt = Date.now();

  function describe(ev) {
    const bits = [];
    if (ev.token) bits.push("token " + ev.token);
    if (ev.from) bits.push("from " + ev.from);
    if (ev.to) bits.push("to " + ev.to);
    if (ev.reason) bits.push(ev.reason);
    if (ev.error) bits.push(ev.error);
    return bits.join(" · ");
  }

  const ids = new Set();
  function addEvent(ev) {
    if (ids.has(ev.id)) return;
    ids.add(ev.id);
    const t = new Date(ev.time);
    const why = describe(ev);
    const li = el("li", { "data-id": ev.id, "data-kind": ev.kind, "data-name": ev.name, "data-type": ev.type, "data-node": ev.node,
      "data-time": t.getTime(), "data-received": Date.now() },
      el("time", { datetime: ev.time, title: t.toLocaleString() }, t.toLocaleTimeString()),
      el("span", { class: "what" }, ev.kind + " ", el("b", {}, ev.name), " ", el("span", { class: "ty " + ev.type }, ev.type), " on " + ev.node),
      why ? el("span", { class: "why" }, why) : null);
    const tl = $("timeline");
    // Newest first; the backlog arrives oldest first, so insert in time order.
    let before = tl.firstChild;
    while (before && Number(before.dataset.time) > t.getTime()) before = before.nextSibling;
    tl.insertBefore(li, before);
    while (tl.children.length > maxEvents) {
      ids.delete(tl.lastChild.dataset.id);
      tl.lastChild.remove();
    }
  }

  function connect() {
    const conn = $("conn");
    const es = new EventSource("/ui/events");
    es.addEventListener("ready", () => { conn.dataset.state = "live"; conn.textContent = "live"; problem("events", ""); });
    es.addEventListener("problem", (m) => problem("events", JSON.parse(m.data)));
    es.addEventListener("lifecycle", (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      addEvent(ev);
      // The backlog replayed on (re)connect is history: the state is fetched anyway.
      if (new Date(ev.time).getTime() > openedAt - 5000 && !(ev.kind === "job" && ev.type === "fired")) refreshSoon();
    });
    es.onerror = () => {
      conn.dataset.state = "down";
      conn.textContent = "reconnecting…";
      // The browser retries by itself unless the server refused the stream outright.
      if (es.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
    };
  }

  refresh();
  connect();
  setInterval(refresh, 5000);
})();
