// edgegen release dashboard. No framework, no build step, no external asset.
//
// The admin token lives in this tab's sessionStorage and travels only as an
// `Authorization: Bearer` header on fetch() calls to the admin API; it is never put in a
// URL. Every value from the API is inserted as text (textContent), never as HTML.
"use strict";

const TOKEN_KEY = "edgegen-admin-token";
const PAGE = 50;
const POLL_MS = 1000;
const SVG_NS = "http://www.w3.org/2000/svg";

let poll = null; // the live timeline's timer, cleared on every navigation

// ---- DOM helpers -------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function show(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes);
}

function time(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
}

function status(text) {
  return h("span", { class: `status-${text}` }, text);
}

function shortHash(hash) {
  return h("code", { title: hash }, hash.slice(0, 15) + "…");
}

// ---- API -----------------------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new Unauthorized("not logged in");
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  const body = await response.json().catch(() => null);
  if (response.status === 401 || response.status === 403) {
    throw new Unauthorized(body?.error?.message || "the admin token was refused");
  }
  if (!response.ok) throw new Error(body?.error?.message || `${path}: HTTP ${response.status}`);
  return body;
}

// ---- login ---------------------------------------------------------------------------------

function loggedIn(yes, message) {
  document.getElementById("login").hidden = yes;
  document.getElementById("nav").hidden = !yes;
  document.getElementById("login-error").textContent = message || "";
  if (!yes) show();
}

async function login(event) {
  event.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  try {
    await api("/v1/releases?limit=1");
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    loggedIn(false, e.message);
    return;
  }
  loggedIn(true);
  if (location.hash && location.hash !== "#") route();
  else location.hash = "#/releases"; // hashchange draws it
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  stopPolling();
  loggedIn(false);
}

// ---- routing -------------------------------------------------------------------------------

function stopPolling() {
  if (poll) clearTimeout(poll);
  poll = null;
}

async function route() {
  stopPolling();
  if (!sessionStorage.getItem(TOKEN_KEY)) return loggedIn(false);
  loggedIn(true);
  const [path, query] = (location.hash.slice(1) || "/releases").split("?");
  const params = new URLSearchParams(query || "");
  const page = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
  try {
    if (path === "/tenants") await tenants(page, params.get("q") || "");
    else if (path === "/rollbacks") await rollbacks();
    else if (path === "/reports") await reports(page);
    else if (path.startsWith("/release/")) await release(decodeURIComponent(path.slice("/release/".length)));
    else await releases(page);
    // When the view was drawn, in ms since the page's navigation started (read by the
    // browser test's load-time check).
    document.body.dataset.view = path;
    document.body.dataset.renderedAt = String(Math.round(performance.now()));
  } catch (e) {
    if (e instanceof Unauthorized) return logout(), loggedIn(false, e.message);
    show(h("p", { class: "error", role: "alert" }, e.message));
  }
}

function pager(base, page, total, extra) {
  const pages = Math.max(1, Math.ceil(total / PAGE));
  const link = (p, label) => h("a", { href: `#${base}?page=${p}${extra || ""}` }, label);
  return h(
    "div",
    { class: "pager" },
    page > 0 ? link(page - 1, "← newer") : null,
    h("span", {}, `page ${page + 1} of ${pages} (${total})`),
    page + 1 < pages ? link(page + 1, "older →") : null,
  );
}

// ---- pages ---------------------------------------------------------------------------------

async function tenants(page, q) {
  const all = await api("/v1/tenants");
  const shown = q ? all.filter((t) => t.id.includes(q) || t.hosts.some((x) => x.includes(q))) : all;
  const rows = shown.slice(page * PAGE, (page + 1) * PAGE).map((t) =>
    h("tr", {}, h("td", {}, h("code", {}, t.id)), h("td", {}, t.generation), h("td", {}, t.schema_version),
      h("td", {}, shortHash(t.contract_hash)), h("td", {}, t.hosts.join(", "))),
  );
  const search = h("input", { type: "search", placeholder: "filter by id or host", value: q });
  search.addEventListener("change", () => (location.hash = `#/tenants?q=${encodeURIComponent(search.value)}`));
  show(
    h("h2", {}, "Tenants"),
    search,
    pager("/tenants", page, shown.length, q ? `&q=${encodeURIComponent(q)}` : ""),
    h("table", { id: "tenants" },
      h("thead", {}, h("tr", {}, ["tenant", "generation", "schema", "contract", "hosts"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)),
  );
}

function releaseRow(r) {
  const gens = r.tenants.length === 1
    ? `${r.tenants[0].from_generation} → ${r.tenants[0].to_generation}`
    : `${r.tenants.length} tenants`;
  return h("tr", {},
    h("td", {}, h("a", { href: `#/release/${encodeURIComponent(r.id)}` }, r.id)),
    h("td", {}, r.kind),
    h("td", {}, status(r.status)),
    h("td", {}, time(r.committed_at)),
    h("td", {}, gens),
    h("td", {}, r.execution_log.task));
}

async function releases(page) {
  const body = await api(`/v1/releases?offset=${page * PAGE}&limit=${PAGE}`);
  show(
    h("h2", {}, "Releases"),
    pager("/releases", page, body.total),
    h("table", { id: "releases" },
      h("thead", {}, h("tr", {}, ["release", "kind", "status", "committed", "tenants", "task"].map((c) => h("th", {}, c)))),
      h("tbody", {}, body.releases.map(releaseRow))),
  );
}

async function rollbacks() {
  // Rollbacks are releases of their own: page through all of them (newest first).
  const found = [];
  for (let offset = 0; ; offset += 200) {
    const body = await api(`/v1/releases?offset=${offset}&limit=200`);
    found.push(...body.releases.filter((r) => r.kind === "rollback"));
    if (offset + 200 >= body.total) break;
  }
  show(
    h("h2", {}, "Rollbacks and automatic rollbacks"),
    h("p", {}, "A rollback moves the tenants to new generations carrying the previous schema and contract; its task says why (an automatic rollback names the report or the missed convergence deadline that triggered it)."),
    h("table", { id: "rollbacks" },
      h("thead", {}, h("tr", {}, ["release", "kind", "status", "committed", "tenants", "reason"].map((c) => h("th", {}, c)))),
      h("tbody", {}, found.map(releaseRow))),
  );
}

async function reports(page) {
  const body = await api(`/v1/reports?offset=${page * PAGE}&limit=${PAGE}`);
  const rows = body.reports.map(({ id, received_at, report: r }) => h("tr", {},
    h("td", {}, id),
    h("td", {}, time(received_at)),
    h("td", {}, r.pop),
    h("td", {}, h("code", {}, r.tenant)),
    h("td", {}, r.kind),
    h("td", {}, r.generation),
    h("td", {}, `${r.expected_schema} / `, shortHash(r.expected_contract)),
    h("td", {}, `${r.observed_schema ?? "—"} / ${r.observed_contract ?? "—"}`),
    h("td", {}, r.path ?? "—")));
  show(
    h("h2", {}, "Edge reports"),
    h("p", {}, "Contract mismatches and deserialization failures the PoPs reported. Under the auto-rollback policy enough of them roll the tenant's release back: see Rollbacks."),
    pager("/reports", page, body.total),
    h("table", { id: "reports" },
      h("thead", {}, h("tr", {}, ["id", "received", "PoP", "tenant", "kind", "generation", "expected", "observed", "path"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)),
  );
}

async function release(id) {
  const r = await api(`/v1/releases/${encodeURIComponent(id)}`);
  const conv = await api(`/v1/releases/${encodeURIComponent(id)}/convergence`);
  const rollback = r.rolled_back_by ? await api(`/v1/releases/${encodeURIComponent(r.rolled_back_by)}`) : null;
  const facts = h("div", { class: "facts" },
    h("span", {}, "status"), h("span", { id: "release-status" }, status(r.status)),
    h("span", {}, "kind"), h("span", {}, r.kind),
    h("span", {}, "committed"), h("span", {}, time(r.committed_at)),
    h("span", {}, "converged"), h("span", {}, time(r.converged_at)),
    h("span", {}, "acknowledged"), h("span", { id: "acked" }, `${conv.acked} of ${conv.total} live PoPs`),
    h("span", {}, "latency"), h("span", {}, `p50 ${conv.p50_ms ?? "—"} ms, p99 ${conv.p99_ms ?? "—"} ms, max ${conv.max_ms ?? "—"} ms`),
    h("span", {}, "leases"), h("span", { id: "leases" },
      `${conv.leases.confirmed.length} confirmed, ${conv.leases.expired.length} provably expired, ${conv.leases.unconfirmed.length} unconfirmed`),
    r.rollback_of ? [h("span", {}, "rolls back"), h("a", { href: `#/release/${r.rollback_of}` }, r.rollback_of)] : null,
    r.rolled_back_by ? [h("span", {}, "rolled back by"), h("a", { href: `#/release/${r.rolled_back_by}` }, r.rolled_back_by)] : null,
  );
  const changes = h("table", { id: "changes" },
    h("thead", {}, h("tr", {}, ["tenant", "generation", "schema", "contract"].map((c) => h("th", {}, c)))),
    h("tbody", {}, r.tenants.map((c) => h("tr", {},
      h("td", {}, h("code", {}, c.tenant)),
      h("td", {}, `${c.from_generation} → ${c.to_generation}`),
      h("td", {}, `${c.from_schema_version} → ${c.to_schema_version}`),
      h("td", {}, shortHash(c.from_contract_hash), " → ", shortHash(c.to_contract_hash))))));
  const log = h("table", { id: "log" },
    h("thead", {}, h("tr", {}, ["phase", "step", "status", "ms", "detail"].map((c) => h("th", {}, c)))),
    h("tbody", {}, r.execution_log.steps.map((st) => h("tr", {},
      h("td", {}, st.phase), h("td", {}, st.step), h("td", {}, status(st.status)),
      h("td", {}, st.duration_ms.toFixed(1)), h("td", {}, st.detail)))));
  // PoPs that have not confirmed: until when each may still serve the old generation.
  const pending = [...conv.leases.unconfirmed.map((p) => [p, "unconfirmed"]), ...conv.leases.expired.map((p) => [p, "expired"])];
  const leases = pending.length === 0 ? null : h("table", { id: "lease-groups" },
    h("thead", {}, h("tr", {}, ["PoP", "group", "tenants unconfirmed", "old generation servable until"].map((c) => h("th", {}, c)))),
    h("tbody", {}, pending.map(([p, group]) => h("tr", {},
      h("td", {}, h("code", {}, p.pop)), h("td", {}, group), h("td", {}, String(p.tenants_unconfirmed)),
      h("td", {}, group === "expired" ? `${time(p.old_until)} (past)` : `${time(p.old_until)} (${p.remaining_ms} ms left)`)))));
  show(
    h("h2", {}, `Release ${r.id}`),
    h("div", { class: "card" }, facts),
    ...(leases ? [h("div", { class: "card" }, h("h3", {}, "PoPs that have not confirmed"), leases)] : []),
    h("div", { class: "card" }, h("h3", {}, "Convergence timeline"), timeline(r, conv, rollback)),
    h("div", { class: "card" }, h("h3", {}, "Tenants"), changes),
    h("div", { class: "card" }, h("h3", {}, `Execution log ${r.execution_log.execution_id}`), log),
  );
  // Live while the release is open: poll until it converged or was rolled back.
  if (r.status === "committed") {
    poll = setTimeout(() => {
      if (location.hash === `#/release/${encodeURIComponent(id)}`) route();
    }, POLL_MS);
  }
}

// ---- the convergence timeline --------------------------------------------------------------

// PoPs (rows) × milliseconds since commit (x): one dot per PoP at its acknowledgement, the
// manifest max-age bound as a dashed line, rollbacks and CDN purges as labelled markers.
function timeline(r, conv, rollback) {
  const pops = conv.pops;
  const rollbackAt = rollback ? Math.max(0, rollback.committed_at - r.committed_at) : null;
  const purges = r.execution_log.steps.filter((st) => st.phase === "edge_node_invalidation" && st.step.includes("purge") && st.status !== "skipped");
  const latest = Math.max(conv.bound_ms, conv.max_staleness_ms, ...pops.map((p) => p.latency_ms ?? 0), rollbackAt ?? 0);
  const span = Math.max(100, latest * 1.15);
  const left = 110, right = 20, top = 34, row = 26, bottom = 34;
  const width = 900, height = top + Math.max(1, pops.length) * row + bottom;
  const x = (ms) => left + (ms / span) * (width - left - right);
  // A marker's label sits right of its line, or left of it near the right edge.
  const label = (at, y, text) => (x(at) > width * 0.7
    ? s("text", { x: x(at) - 4, y, "text-anchor": "end" }, text)
    : s("text", { x: x(at) + 4, y }, text));
  const svg = s("svg", { id: "timeline", viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
    "aria-label": `convergence of ${r.id}: ${conv.acked} of ${conv.total} PoPs acknowledged` });
  const axisY = top + Math.max(1, pops.length) * row;
  // time axis with ~6 ticks
  const step = niceStep(span / 6);
  for (let t = 0; t <= span; t += step) {
    svg.append(s("line", { class: "grid", x1: x(t), x2: x(t), y1: top - 6, y2: axisY }));
    svg.append(s("text", { x: x(t), y: axisY + 16, "text-anchor": "middle" }, `${t} ms`));
  }
  svg.append(s("line", { class: "axis", x1: left, x2: width - right, y1: axisY, y2: axisY }));
  svg.append(s("text", { x: width - right, y: axisY + 30, "text-anchor": "end" }, "time since commit"));
  // the max-age bound
  svg.append(s("g", { class: "bound-marker" },
    s("line", { class: "bound", x1: x(conv.bound_ms), x2: x(conv.bound_ms), y1: top - 18, y2: axisY }),
    label(conv.bound_ms, top - 20, `max-age bound ${conv.bound_ms} ms`)));
  for (const p of purges) {
    svg.append(s("g", { class: "purge-marker" },
      s("line", { x1: x(p.duration_ms), x2: x(p.duration_ms), y1: top - 6, y2: axisY }),
      label(p.duration_ms, axisY - 4, `purge (${p.status})`)));
  }
  if (rollbackAt !== null) {
    svg.append(s("g", { class: "rollback-marker" },
      s("line", { x1: x(rollbackAt), x2: x(rollbackAt), y1: top - 18, y2: axisY }),
      label(rollbackAt, top - 20, `rollback ${rollback.id}`)));
  }
  pops.forEach((p, i) => {
    const y = top + i * row + row / 2;
    const g = s("g", { class: "pop-row", "data-pop": p.pop });
    g.append(s("text", { x: left - 8, y: y + 4, "text-anchor": "end" }, `${p.pop} (${p.tenants_acked}/${p.tenants_total})`));
    g.append(s("line", { class: "grid", x1: left, x2: width - right, y1: y, y2: y }));
    if (p.latency_ms !== null && p.latency_ms !== undefined) {
      g.append(s("circle", { class: "ack", cx: x(p.latency_ms), cy: y, r: 6 },
        s("title", {}, `${p.pop} acknowledged after ${p.latency_ms} ms`)));
    } else {
      g.append(s("circle", { class: "pending", cx: width - right - 6, cy: y, r: 5 },
        s("title", {}, `${p.pop}: ${p.tenants_acked} of ${p.tenants_total} tenants acknowledged`)));
    }
    svg.append(g);
  });
  if (pops.length === 0) svg.append(s("text", { x: left, y: top + row / 2 }, "no live PoP has been seen yet"));
  return svg;
}

function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

// ---- start ---------------------------------------------------------------------------------

document.getElementById("login").addEventListener("submit", login);
document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", route);
route();
