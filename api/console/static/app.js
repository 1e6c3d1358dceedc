// graphrisk investigator console: a single page over the /v1 API. No build step: plain ES2020
// and Cytoscape.js (vendored, MIT). Everything from the API is written with textContent, never
// as markup, so a note or a masked value cannot inject anything.
"use strict";

(function () {
  const KEY_STORAGE = "graphrisk.apiKey";
  const PAGE_SIZE = 50;
  const EXPAND_CAP = 15;
  const $ = (sel) => document.querySelector(sel);

  // Render timings per page, read by the browser tests and shown in the header.
  window.consoleTimings = {};
  let routeSeq = 0; // a late answer for a page the investigator already left is dropped

  // --- API ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const key = sessionStorage.getItem(KEY_STORAGE);
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    if (key) headers["X-API-Key"] = key;
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
      cache: "no-store",
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch (_) {
      payload = null;
    }
    if (!response.ok) {
      let detail = payload && payload.detail;
      if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
      if (response.status === 401) {
        sessionStorage.removeItem(KEY_STORAGE);
        detail = "Your key was not accepted; log in again.";
      } else if (response.status === 403) {
        detail = "This key's role may not use the console (investigator or admin needed).";
      }
      throw new ApiError(response.status, detail || `HTTP ${response.status}`);
    }
    return payload;
  }

  // --- helpers -----------------------------------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  const fmtScore = (s) => (s === null || s === undefined ? "—" : Number(s).toFixed(3));
  const fmtTime = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "—");
  const fmtAmount = (a) => (a === null || a === undefined ? "" : Number(a).toLocaleString("en", { maximumFractionDigits: 2 }));

  function showOnly(id) {
    for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== id;
    $("#error").textContent = "";
  }

  function done(page, started) {
    // Measured after the DOM is filled and the graph laid out: what the investigator waits for.
    const ms = performance.now() - started;
    window.consoleTimings[page] = ms;
    $("#timing").textContent = `${page} rendered in ${Math.round(ms)} ms`;
    document.body.dataset.ready = page;
  }

  function fail(err) {
    if (err instanceof ApiError && err.status === 401) {
      route();
      return;
    }
    $("#error").textContent = err.message || String(err);
    document.body.dataset.ready = "error";
  }

  function badge(text, cls) {
    return el("span", { className: `badge ${cls || ""}`, text });
  }

  // --- login -------------------------------------------------------------------------------

  async function login(event) {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    sessionStorage.setItem(KEY_STORAGE, key);
    try {
      await api("/v1/console/queue/rings?limit=1");
      $("#api-key").value = "";
      $("#login-error").textContent = "";
      if (!location.hash || location.hash === "#/login") location.hash = "#/queue/rings";
      else route();
    } catch (err) {
      sessionStorage.removeItem(KEY_STORAGE);
      $("#login-error").textContent = err.message;
    }
  }

  function showLogin() {
    showOnly("login-view");
    $("#nav").hidden = true;
    $("#logout").hidden = true;
    $("#api-key").focus();
    document.body.dataset.ready = "login";
  }

  // --- queue -------------------------------------------------------------------------------

  const queueState = { kind: "rings", cursors: [null], page: 0, filters: {} };

  function filterQuery() {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(queueState.filters)) {
      if (v === "" || v === null || v === undefined) continue;
      if (k === "first_seen_from") params.set(k, String(Date.parse(v + "T00:00:00Z")));
      else if (k === "first_seen_to") params.set(k, String(Date.parse(v + "T23:59:59Z")));
      else params.set(k, v);
    }
    return params;
  }

  async function showQueue(kind, seq) {
    const started = performance.now();
    showOnly("queue-view");
    if (queueState.kind !== kind) {
      queueState.kind = kind;
      queueState.cursors = [null];
      queueState.page = 0;
      queueState.filters = {};
      $("#filters").reset();
    }
    $("#queue-title").textContent = kind === "rings" ? "Ring queue" : "User queue (review and block bands)";
    for (const n of document.querySelectorAll(".ring-only")) n.hidden = kind !== "rings";
    for (const n of document.querySelectorAll(".user-only")) n.hidden = kind !== "users";
    const params = filterQuery();
    params.set("limit", String(PAGE_SIZE));
    const cursor = queueState.cursors[queueState.page];
    if (cursor) params.set("cursor", cursor);
    if (kind === "users") {
      params.delete("typology");
      params.delete("min_size");
      params.delete("max_size");
      params.delete("first_seen_from");
      params.delete("first_seen_to");
    } else {
      params.delete("band");
    }
    const data = await api(`/v1/console/queue/${kind}?${params}`);
    if (seq !== routeSeq) return;
    window.consoleTimings[`${kind}-queue:api`] = performance.now() - started;
    if (data.typologies) {
      const select = $("#filters select[name=typology]");
      if (select.options.length === 1) {
        for (const t of data.typologies) select.append(el("option", { value: t, text: t.replace(/_/g, " ") }));
      }
    }
    const body = $("#queue-table tbody");
    const rows = data.data.map((r) => {
      const link = el("a", { href: `#/${kind === "rings" ? "ring" : "user"}/${encodeURIComponent(r.id)}`, text: r.id });
      const statusText = r.decision ? `${r.queue_status} (${r.decision.replace(/_/g, " ")})` : r.queue_status;
      const cells = [el("td", { text: fmtScore(r.score), className: "num" }), el("td", {}, link)];
      if (kind === "rings") {
        cells.push(el("td", { text: String(r.size), className: "num" }), el("td", { text: r.typology.replace(/_/g, " ") }));
      } else {
        cells.push(el("td", {}, badge(r.band, r.band)));
      }
      cells.push(el("td", { className: `status ${r.queue_status}`, text: statusText }), el("td", { className: "why", text: r.why }));
      return el("tr", { dataset: { id: r.id, status: r.queue_status } }, ...cells);
    });
    body.replaceChildren(...rows);
    const first = queueState.page * PAGE_SIZE;
    $("#queue-count").textContent = `${data.count.toLocaleString("en")} ${kind} match` + (data.count ? `; showing ${first + 1}–${first + rows.length}` : "");
    $("#page-label").textContent = `page ${queueState.page + 1} of ${Math.max(1, Math.ceil(data.count / PAGE_SIZE)).toLocaleString("en")}`;
    queueState.cursors[queueState.page + 1] = data.next_cursor;
    $("#prev-page").disabled = queueState.page === 0;
    $("#next-page").disabled = !data.next_cursor;
    $("#nav-rings").classList.toggle("active", kind === "rings");
    $("#nav-users").classList.toggle("active", kind === "users");
    done(`${kind}-queue`, started);
  }

  function applyFilters(event) {
    event.preventDefault();
    const form = new FormData($("#filters"));
    queueState.filters = Object.fromEntries(form.entries());
    queueState.cursors = [null];
    queueState.page = 0;
    route();
  }

  // --- graphs ------------------------------------------------------------------------------

  const STYLE = [
    { selector: "node", style: { label: "data(display)", "font-size": 9, "text-valign": "bottom", "text-margin-y": 3,
      width: 18, height: 18, "background-color": "#4a78c2", color: "#222", "text-wrap": "ellipsis", "text-max-width": 110 } },
    { selector: "node[label = 'User']", style: { "background-color": "#8a9bb0", shape: "ellipse" } },
    { selector: "node[?member]", style: { "background-color": "#c8403a", width: 24, height: 24 } },
    { selector: "node[label = 'Merchant']", style: { "background-color": "#e08a1e", shape: "round-rectangle" } },
    { selector: "node[label = 'Device']", style: { "background-color": "#6a4ac2", shape: "round-rectangle" } },
    { selector: "node[label = 'More']", style: { "background-color": "#ddd", "border-width": 1, "border-style": "dashed",
      "border-color": "#888", shape: "round-rectangle", width: 40, height: 16, "text-valign": "center", "text-margin-y": 0 } },
    { selector: "node.expanded", style: { "border-width": 3, "border-color": "#222" } },
    { selector: "node:selected", style: { "overlay-opacity": 0.15 } },
    { selector: "edge", style: { width: 1.2, "line-color": "#b5bcc6", "curve-style": "bezier" } },
    { selector: "edge[type = 'TRANSFERRED_TO']", style: { width: 2.5, "line-color": "#c8403a", "target-arrow-shape": "triangle",
      "target-arrow-color": "#c8403a", label: "data(amountText)", "font-size": 8, "text-rotation": "autorotate" } },
    { selector: "edge[type = 'PAID']", style: { "line-color": "#e08a1e", "target-arrow-shape": "triangle", "target-arrow-color": "#e08a1e" } },
    { selector: "edge[type = 'MORE']", style: { "line-style": "dashed", "line-color": "#aaa" } },
  ];

  function elementsOf(nodes, edges) {
    const out = nodes.map((n) => ({ group: "nodes", data: { ...n } }));
    for (const e of edges) {
      out.push({ group: "edges", data: { ...e, amountText: e.amount ? fmtAmount(e.amount) : "" } });
    }
    return out;
  }

  function drawGraph(container, nodes, edges, view, onSelect) {
    if (window.cy) window.cy.destroy();
    const cy = cytoscape({
      container,
      elements: elementsOf(nodes, edges),
      style: STYLE,
      // Concentric: the members (or the user) in the middle, what they share around them. Linear
      // in the nodes, where a force layout (cose) took half a second for 22 nodes on a busy host.
      layout: { name: "concentric", animate: false, padding: 20, minNodeSpacing: 28, avoidOverlap: true,
        concentric: (n) => (n.data("member") ? 3 : n.data("label") === "User" ? 1 : 2), levelWidth: () => 1 },
    });
    cy.scratch("view", view);
    cy.on("tap", "node", (evt) => {
      const node = evt.target;
      if (onSelect) onSelect(node.data());
      if (node.data("label") === "More") {
        // "+N more": the same hop again with a larger cap (the API's limit is 100).
        const anchor = cy.getElementById(node.id().slice("more:".length));
        if (anchor.nonempty()) expandNode(cy, anchor, Math.min(100, (anchor.scratch("cap") || EXPAND_CAP) * 3)).catch(fail);
        return;
      }
      if (node.hasClass("expanded")) return;
      expandNode(cy, node, EXPAND_CAP).catch(fail);
    });
    window.cy = cy; // for the browser tests and for the curious
    return cy;
  }

  async function expandNode(cy, node, cap) {
    const view = cy.scratch("view");
    const params = new URLSearchParams({ view, node: node.id(), cap: String(cap) });
    node.addClass("expanded");
    node.scratch("cap", cap);
    const data = await api(`/v1/console/expand?${params}`);
    if (window.cy !== cy) return;
    cy.getElementById(`more:${node.id()}`).remove(); // replaced by this answer's marker, if any
    const fresh = elementsOf(data.nodes, data.edges).filter((e) => cy.getElementById(e.data.id).empty());
    const added = cy.add(fresh);
    // Only the new nodes move: they are placed around the node that was expanded.
    const around = added.nodes().union(node);
    around.layout({ name: "concentric", animate: false, fit: false, boundingBox: {
      x1: node.position("x") - 150, y1: node.position("y") - 150, w: 300, h: 300 },
      concentric: (n) => (n.same(node) ? 2 : 1), levelWidth: () => 1, minNodeSpacing: 12 }).run();
    cy.fit(undefined, 20); // keep the new neighbours in view
    window.consoleLastExpansion = { node: node.id(), added: added.nodes().length, edges: added.edges().length, hidden: data.hidden, total: data.total };
    document.body.dataset.expanded = String((Number(document.body.dataset.expanded) || 0) + 1);
  }

  function describeNode(data) {
    if (data.label === "More") return `${data.hidden} more neighbours not drawn (the cap)`;
    const bits = [`${data.label}: ${data.display}`];
    if (data.score !== null && data.score !== undefined) bits.push(`score ${fmtScore(data.score)} (${data.band})`);
    if (data.members_sharing) bits.push(`shared by ${data.members_sharing}`);
    return bits.join(" · ");
  }

  // --- decisions ---------------------------------------------------------------------------

  function renderDecisions(box, decisions) {
    const list = box.querySelector(".decisions");
    list.replaceChildren(...decisions.slice().reverse().map((d) =>
      el("li", { text: `${fmtTime(d.at)} · ${d.actor}: ${d.decision.replace(/_/g, " ")}${d.note ? " — " + d.note : ""}` })));
  }

  function wireDecision(box, subject, id, after) {
    for (const button of box.querySelectorAll("button[data-decision]")) {
      button.onclick = async () => {
        const note = box.querySelector("textarea").value;
        const result = box.querySelector(".decision-result");
        const body = { decision: button.dataset.decision, note };
        // A ring decision keeps the ring's typology with its labels (the guess, or the investigator's).
        const typology = box.querySelector("select[name=typology]");
        if (typology && typology.value) body.typology = typology.value;
        result.textContent = "saving…";
        try {
          const out = await api(`/v1/${subject}s/${encodeURIComponent(id)}/decision`, { method: "POST", body });
          result.textContent = `Recorded: ${String(out.decision).replace(/_/g, " ")} (decision ${out.id})`;
          box.querySelector("textarea").value = "";
          document.body.dataset.decided = String(out.id);
          if (after) await after();
        } catch (err) {
          result.textContent = `Not recorded: ${err.message}`;
        }
      };
    }
  }

  // --- ring view ---------------------------------------------------------------------------

  async function showRing(ringId, seq) {
    const started = performance.now();
    showOnly("ring-view");
    $("#ring-title").textContent = `Ring ${ringId}`;
    const ring = await api(`/v1/console/rings/${encodeURIComponent(ringId)}`);
    if (seq !== routeSeq) return;
    window.consoleTimings["ring:api"] = performance.now() - started; // the rest is the browser's
    $("#ring-badges").replaceChildren(badge(`score ${fmtScore(ring.score)}`, "score"), badge(ring.status),
      badge(ring.typology.replace(/_/g, " ")), badge(`${ring.size} members`));
    $("#ring-why").textContent = ring.why;
    const lineage = [];
    if (ring.parents.length) lineage.push(`grew out of ${ring.parents.join(", ")}`);
    if (ring.successors.length) lineage.push(`went on as ${ring.successors.join(", ")}`);
    lineage.push(`first seen ${fmtTime(ring.first_seen)}, last seen ${fmtTime(ring.last_seen)}, model ${ring.model_version}`);
    $("#ring-lineage").textContent = "Lineage: " + lineage.join("; ");
    $("#ring-members tbody").replaceChildren(...ring.members.map((m) => el("tr", {},
      el("td", {}, el("a", { href: `#/user/${encodeURIComponent(m.id)}`, text: m.id })),
      el("td", { className: "num", text: fmtScore(m.score) }), el("td", {}, m.band ? badge(m.band, m.band) : ""))));
    $("#ring-timeline").replaceChildren(...ring.timeline.map((e) =>
      el("li", { className: e.kind }, el("time", { text: fmtTime(e.at) }), " ", e.text)));
    const box = $("#ring-view .decision");
    box.querySelector("select[name=typology]").value = ring.typology === "unknown" ? "" : ring.typology;
    renderDecisions(box, ring.decisions);
    box.querySelector(".decision-result").textContent = "";
    wireDecision(box, "ring", ringId, async () => {
      const fresh = await api(`/v1/console/rings/${encodeURIComponent(ringId)}`);
      renderDecisions(box, fresh.decisions);
    });
    $("#ring-selection").textContent = "";
    const drawStart = performance.now();
    drawGraph($("#ring-graph"), ring.nodes, ring.edges, `ring:${ringId}`, (d) => {
      $("#ring-selection").textContent = describeNode(d);
    });
    window.consoleTimings["ring:graph"] = performance.now() - drawStart;
    done("ring", started);
  }

  // --- user view ---------------------------------------------------------------------------

  async function showUser(userId, seq) {
    const started = performance.now();
    showOnly("user-view");
    $("#user-title").textContent = `User ${userId}`;
    const [user, explanation] = await Promise.all([
      api(`/v1/console/users/${encodeURIComponent(userId)}`),
      api(`/v1/users/${encodeURIComponent(userId)}/explanation`).catch((err) => ({ error: err.message })),
    ]);
    if (seq !== routeSeq) return;
    $("#user-badges").replaceChildren(badge(`score ${fmtScore(user.score)}`, "score"), badge(user.band, user.band),
      badge(`model ${user.model_version}`));
    const rings = $("#user-rings");
    rings.replaceChildren(user.rings.length ? "Rings: " : "In no live ring.");
    user.rings.forEach((r, i) => {
      if (i) rings.append(", ");
      rings.append(el("a", { href: `#/ring/${encodeURIComponent(r.id)}`, text: r.id }), ` (score ${fmtScore(r.score)}, ${r.size} members)`);
    });
    if (explanation.error) {
      $("#user-basis").textContent = `No explanation: ${explanation.error}`;
      $("#user-reasons").replaceChildren();
      $("#user-contributions tbody").replaceChildren();
      $("#user-evidence").replaceChildren();
    } else {
      $("#user-basis").textContent = `Explains score ${fmtScore(explanation.score)} (${explanation.basis}).`;
      $("#user-reasons").replaceChildren(...explanation.reasons.map((r) => el("li", { text: r.text })));
      $("#user-contributions tbody").replaceChildren(...explanation.contributions.slice(0, 12).map((c) => el("tr", {},
        el("td", { text: c.feature }), el("td", { className: "num", text: c.value === null ? "—" : Number(c.value).toFixed(3) }),
        el("td", { className: `num ${c.contribution > 0 ? "up" : "down"}`, text: (c.contribution > 0 ? "+" : "") + c.contribution.toFixed(3) }))));
      $("#user-evidence").replaceChildren(...explanation.evidence.map((e) => el("li", {
        text: `${e.relationship.replace(/_/g, " ").toLowerCase()} ${e.identifier}: shared with ${e.shared_with} users, ${e.confirmed_fraud} confirmed fraud` })));
    }
    const box = $("#user-view .decision");
    renderDecisions(box, user.decisions);
    box.querySelector(".decision-result").textContent = "";
    wireDecision(box, "user", userId, async () => {
      const fresh = await api(`/v1/console/users/${encodeURIComponent(userId)}`);
      renderDecisions(box, fresh.decisions);
    });
    drawGraph($("#user-graph"), user.nodes, user.edges, `user:${userId}`, null);
    done("user", started);
  }

  // --- routing -----------------------------------------------------------------------------

  async function route() {
    const seq = ++routeSeq;
    delete document.body.dataset.ready;
    if (!sessionStorage.getItem(KEY_STORAGE)) {
      showLogin();
      return;
    }
    $("#nav").hidden = false;
    $("#logout").hidden = false;
    const hash = location.hash.replace(/^#\/?/, "");
    const [page, ...rest] = hash.split("/");
    const arg = decodeURIComponent(rest.join("/"));
    try {
      if (page === "ring" && arg) await showRing(arg, seq);
      else if (page === "user" && arg) await showUser(arg, seq);
      else if (page === "queue" && arg === "users") await showQueue("users", seq);
      else await showQueue("rings", seq);
    } catch (err) {
      if (seq === routeSeq) fail(err);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#login-form").addEventListener("submit", login);
    $("#filters").addEventListener("submit", applyFilters);
    $("#logout").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      if (window.cy) window.cy.destroy();
      window.cy = undefined;
      location.hash = "#/login";
      route();
    });
    $("#prev-page").addEventListener("click", () => {
      queueState.page = Math.max(0, queueState.page - 1);
      route();
    });
    $("#next-page").addEventListener("click", () => {
      if (queueState.cursors[queueState.page + 1]) queueState.page += 1;
      route();
    });
    window.addEventListener("hashchange", route);
    route();
  });
})();
