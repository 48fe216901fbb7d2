// Warden's console. Talks to the admin API on this origin with the session cookie; every state
// change carries the session's CSRF token. Untrusted text (arguments, reasons, names) is only
// ever written with textContent: nothing from the server is parsed as HTML.
"use strict";

const state = { csrf: null, name: null, operate: false, upstreams: [], timer: null };
// The pages an approver (warden:approve, or a tenant's principal) may see.
const APPROVER_PAGES = ["approvals"];
const $ = (id) => document.getElementById(id);

// An element with attributes and children (strings become text nodes).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// Invisible, formatting and direction-changing characters (every default-ignorable code point
// and format character: zero-width, bidi controls, tag characters used to smuggle ASCII,
// variation selectors, fillers), shown as ⟦U+XXXX⟧ marks.
const HIDDEN = /[\p{Default_Ignorable_Code_Point}\p{Cf}]/gu;
function visible(text) {
  const out = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(HIDDEN)) {
    out.append(text.slice(last, m.index));
    const code = m[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
    out.append(el("span", { class: "mark", title: "hidden character" }, `⟦U+${code}⟧`));
    last = m.index + m[0].length;
  }
  out.append(text.slice(last));
  return out;
}

function when(secs) {
  return secs ? new Date(secs * 1000).toLocaleString() : "";
}

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  // The cookie alone is worth nothing: every request carries the session's CSRF token.
  if (state.csrf) headers["x-warden-csrf"] = state.csrf;
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await r.json(); } catch (_) { /* empty body */ }
  if (r.status === 401 && path !== "/console/sign-in") { showSignIn(); throw new Error("signed out"); }
  if (!r.ok) throw new Error(data.error || `${r.status}`);
  return data;
}

function report(err) {
  $("error").textContent = err ? String(err.message || err) : "";
}

// The CSRF token is kept for this tab only, from sign-in (the server never hands it to a
// request that does not already carry it).
const CSRF_KEY = "warden-csrf";

// Why a sign-in through the authorization server came back without a session (fixed codes:
// nothing from the URL is shown as text).
const SIGN_IN_ERRORS = {
  denied: "The login failed, or you declined, at the authorization server.",
  refused: "The authorization server did not grant the sign-in.",
  scope: "That account may not use the console (it needs warden:admin or warden:approve).",
  expired: "That sign-in took too long or was already used; try again.",
  browser: "That sign-in was started in another browser; start it again here.",
  issuer: "The answer did not come from the expected authorization server.",
  busy: "Too many sign-ins; wait a little.",
  host: "Open the console at the admin listener's own address to sign in this way.",
  unavailable: "Sign-in through the authorization server is not available now.",
};

const NONCE_KEY = "warden-oauth-nonce";

function signInError(code) {
  return code && Object.hasOwn(SIGN_IN_ERRORS, code) ? SIGN_IN_ERRORS[code] : "The sign-in failed.";
}

// Start a sign-in through the authorization server: a nonce for this tab, the flow from the
// server, then the browser to the authorization page.
async function startOAuth(scope) {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const nonce = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  sessionStorage.setItem(NONCE_KEY, nonce);
  const r = await api("POST", "/console/oauth/start", { scope, nonce });
  location.assign(r.to);
}

async function offerOAuth() {
  try {
    const o = await api("GET", "/console/oauth");
    $("oauth").hidden = !o.available;
    $("oauth-issuer").textContent = o.issuer || "";
    $("oauth-admin").hidden = !o.scopes.includes("warden:admin");
    $("oauth-approve").hidden = !o.scopes.includes("warden:approve");
  } catch (_) { $("oauth").hidden = true; }
}

function showSignIn() {
  offerOAuth();
  state.csrf = null;
  sessionStorage.removeItem(CSRF_KEY);
  clearInterval(state.timer);
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== "page-sign-in";
}

async function signedIn(session) {
  state.csrf = session.csrf;
  sessionStorage.setItem(CSRF_KEY, session.csrf);
  state.name = session.name;
  state.operate = session.may_operate;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  for (const a of document.querySelectorAll("nav a")) {
    a.hidden = !state.operate && !APPROVER_PAGES.includes(a.id.replace("nav-", ""));
  }
  $("who").replaceChildren("Signed in as ", visible(session.name),
    session.tenant ? el("span", {}, " (tenant ", visible(session.tenant), ")") : "");
  clearInterval(state.timer);
  state.timer = setInterval(() => refresh().catch(report), 2000);
  await route();
}

async function route() {
  if (!state.csrf) { showSignIn(); return; }
  const page = (location.hash || "#overview").slice(1);
  const known = state.operate ? ["overview", "kill-switches", "approvals", "tools", "audit", "config"] : APPROVER_PAGES;
  const name = known.includes(page) ? page : known[0];
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== `page-${name}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === `nav-${name}`);
  await refresh();
  if (name === "audit" && state.operate) await searchAudit();
  if (name === "tools" && state.operate) await loadInventory();
  if (name === "audit" && state.operate) await verifyChain(false);
  if (name === "config" && state.operate) await loadConfig();
}

// The audit search's query string, from the form.
function auditQuery(extra) {
  const q = new URLSearchParams();
  for (const f of ["subject", "server", "tool", "decision", "status", "kind", "since"]) {
    const v = $(`audit-${f}`).value.trim();
    if (v) q.set(f, v);
  }
  for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
  return q;
}

// The matching records as JSON lines (what "Export JSONL" downloads).
async function exportAudit() {
  const r = await fetch(`/admin/audit?${auditQuery({ format: "jsonl", limit: "10000" })}`,
    { headers: { "x-warden-csrf": state.csrf }, credentials: "same-origin" });
  if (!r.ok) throw new Error(`export: ${r.status}`);
  return r.text();
}

async function searchAudit() {
  const r = await api("GET", `/admin/audit?${auditQuery()}`);

  $("audit-summary").textContent =
    `${r.matched} record(s) matched; the newest ${r.records.length} shown` + (r.truncated ? " (search cut short: narrow it)" : "");
  $("audit-record").hidden = true;
  $("audit").tBodies[0].replaceChildren(...r.records.map((e) =>
    el("tr", { class: "record", onclick: () => { $("audit-record").hidden = false; $("audit-record").replaceChildren(visible(JSON.stringify(e, null, 2))); } },
      el("td", {}, visible(e.ts || "")), el("td", {}, visible(e.kind || "")), el("td", {}, visible(e.subject || "")),
      el("td", {}, visible(e.server || "")), el("td", {}, visible(e.name || "")), el("td", {}, visible(e.decision || "")),
      el("td", {}, visible(e.status || "")), el("td", {}, visible(e.detail || "")))));
}

async function refresh() {
  if (!state.csrf) return;
  if (!state.operate) {
    const approvals = await api("GET", "/admin/approvals?state=pending");
    $("pending-count").textContent = approvals.approvals.length ? String(approvals.approvals.length) : "";
    renderApprovals(approvals.approvals);
    report(null);
    return;
  }
  const [ups, kills, approvals, pins] = await Promise.all([
    api("GET", "/admin/upstreams"),
    api("GET", "/admin/kill-switches"),
    api("GET", "/admin/approvals?state=pending"),
    api("GET", "/admin/pins"),
  ]);
  $("changes-count").textContent = pins.pending.length ? String(pins.pending.length) : "";
  renderChanges(pins.pending);
  state.upstreams = ups.upstreams;
  const pending = approvals.approvals;
  $("pending-count").textContent = pending.length ? String(pending.length) : "";
  renderOverview(ups, kills.kill_switches, pending);
  if (!$("page-overview").hidden) renderTimeline(await api("GET", "/admin/timeline"));
  renderKills(kills.kill_switches);
  renderApprovals(pending);
  report(null);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// A line chart of `series` ([{cls, values}], one value per slot, null for none) in `id`'s
// 360 × 120 box: the scale's top at the left, the hour's ends below.
function lineChart(id, series, unit) {
  const box = $(id);
  const W = 360, H = 100, top = 12;
  const all = series.flatMap((s) => s.values).filter((v) => v !== null);
  const max = Math.max(1e-9, ...all);
  const n = Math.max(1, ...series.map((s) => s.values.length)) - 1;
  const x = (i) => (i / Math.max(1, n)) * W;
  const y = (v) => top + H - (v / max) * (H - 4);
  const parts = [svg("line", { x1: 0, y1: top + H, x2: W, y2: top + H, class: "axis" })];
  for (const s of series) {
    let d = "";
    s.values.forEach((v, i) => { if (v !== null) d += `${d && s.values[i - 1] !== null ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`; });
    parts.push(svg("path", { d: d || "M0,0", class: `series ${s.cls}` }));
  }
  const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2));
  parts.push(svg("text", { x: 2, y: 10, class: "label" }, all.length ? `${fmt(max)} ${unit}` : "no data"));
  parts.push(svg("text", { x: 2, y: 120, class: "label" }, "−60 min"), svg("text", { x: 340, y: 120, class: "label" }, "now"));
  box.replaceChildren(...parts);
}

function reasonTable(id, points, member) {
  const totals = {};
  for (const p of points) for (const [k, v] of Object.entries(p[member])) totals[k] = (totals[k] || 0) + v;
  const rows = Object.entries(totals).sort((a, b) => b[1] - a[1]);
  $(id).tBodies[0].replaceChildren(...(rows.length ? rows.map(([k, v]) => el("tr", {}, el("td", {}, visible(k)), el("td", {}, String(v))))
    : [el("tr", {}, el("td", {}, "none"), el("td", {}, ""))]));
}

function renderTimeline(t) {
  const p = t.points;
  const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
  lineChart("chart-calls", [{ cls: "calls", values: p.map((x) => x.calls_per_sec) }], "/s");
  lineChart("chart-latency", [{ cls: "p50", values: p.map((x) => x.p50_ms) }, { cls: "p99", values: p.map((x) => x.p99_ms) }], "ms");
  lineChart("chart-refusals", [{ cls: "denials", values: p.map((x) => sum(x.denials)) }, { cls: "errors", values: p.map((x) => sum(x.errors)) }], "");
  reasonTable("denial-reasons", p, "denials");
  reasonTable("error-reasons", p, "errors");
}

function renderOverview(ups, kills, pending) {
  $("generation").textContent = `Config generation ${ups.generation}` +
    (ups.sessions === null || ups.sessions === undefined ? "" : `; ${ups.sessions} session(s) open on this Warden`);
  const body = $("upstreams").tBodies[0];
  body.replaceChildren(...ups.upstreams.map((u) => {
    const off = kills.filter((k) => k.server === u.name).map((k) => k.tool || "all tools");
    return el("tr", { "data-upstream": u.name },
      el("td", {}, visible(u.name)), el("td", {}, u.transport),
      el("td", { class: "layers" }, u.sandbox_layers ? visible(u.sandbox_layers) : u.sandboxed ? "not started yet" : "none"),
      el("td", { class: u.up ? "up" : "down" }, u.up ? "up" : "not connected"),
      el("td", {}, String(u.restarts)), el("td", {}, visible(off.join(", "))));
  }));
  $("summary").textContent =
    `${kills.length} switch(es) off, ${pending.length} approval(s) waiting.`;
}

function renderKills(kills) {
  const select = $("kill-server");
  const chosen = select.value;
  select.replaceChildren(...state.upstreams.map((u) => el("option", { value: u.name }, visible(u.name))));
  if (chosen) select.value = chosen;
  $("kills").tBodies[0].replaceChildren(...kills.map((k) =>
    el("tr", { "data-kill": `${k.server}/${k.tool || ""}` },
      el("td", {}, visible(k.server)), el("td", {}, k.tool ? visible(k.tool) : "(all tools)"),
      el("td", {}, visible(k.reason)), el("td", {}, visible(k.by)), el("td", {}, when(k.at)),
      el("td", {}, el("button", { type: "button", class: "plain", onclick: () => revive(k) }, "Switch on")))));
}

async function revive(k) {
  const q = new URLSearchParams({ server: k.server });
  if (k.tool) q.set("tool", k.tool);
  try { await api("DELETE", `/admin/kill-switches?${q}`); await refresh(); } catch (e) { report(e); }
}

function renderApprovals(pending) {
  const list = $("approvals");
  // Keep a note being typed: rebuild only when the set of approvals changed.
  const ids = pending.map((a) => a.id).join(",");
  if (list.dataset.ids === ids) return;
  list.dataset.ids = ids;
  if (!pending.length) { list.replaceChildren(el("p", {}, "Nothing is waiting.")); return; }
  list.replaceChildren(...pending.map((a) => {
    const note = el("input", { maxlength: "500", placeholder: "note (optional)", class: "note" });
    const decide = (verdict) => async () => {
      try {
        await api("POST", `/admin/approvals/${encodeURIComponent(a.id)}/${verdict}`, note.value ? { note: note.value } : {});
        delete list.dataset.ids;
        await refresh();
      } catch (e) { report(e); }
    };
    return el("div", { class: "card", "data-approval": a.id },
      el("div", {}, el("strong", {}, visible(a.server), " / ", visible(a.tool)), " asked by ", visible(a.subject),
        a.tenant ? el("span", {}, " (tenant ", visible(a.tenant), ")") : "", ` at ${when(a.created)}`),
      el("div", {}, visible(a.summary || "")),
      el("pre", {}, visible(JSON.stringify(a.arguments, null, 2))),
      el("div", { class: "digest" }, `digest ${a.digest}; expires ${when(a.expires)}`),
      el("div", {}, note, " ",
        el("button", { type: "button", class: "approve", onclick: decide("approve") }, "Approve"), " ",
        el("button", { type: "button", class: "danger deny", onclick: decide("deny") }, "Deny")));
  }));
}

// Lines of `a` and `b` that are not in their longest common subsequence (bounded: past 2,000
// lines each, every line counts as changed).
function changedLines(a, b) {
  const n = a.length, m = b.length;
  if (n > 2000 || m > 2000) return [new Set(a.keys()), new Set(b.keys())];
  const L = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const da = new Set(a.keys()), db = new Set(b.keys());
  for (let i = 0, j = 0; i < n && j < m;) {
    if (a[i] === b[j]) { da.delete(i); db.delete(j); i++; j++; } else if (L[i + 1][j] >= L[i][j + 1]) i++; else j++;
  }
  return [da, db];
}

function side(title, lines, changed, cls, excerpts) {
  return el("div", { class: "side" }, el("div", { class: "hint" }, title),
    el("pre", {}, ...lines.map((l, i) => el("span", { class: changed.has(i) ? `line ${cls}` : "line" }, highlighted(l, excerpts || []), "\n"))));
}

// What the scan found, each with the text it matched marked.
function findingList(findings) {
  return el("ul", { class: "findings" }, ...findings.map((f) =>
    el("li", {}, `${f.rule} in ${f.place}`, f.excerpt ? el("span", {}, ": ", el("mark", { class: "finding" }, visible(f.excerpt))) : "")));
}

function renderChanges(pending) {
  const list = $("changes");
  const key = pending.map((c) => `${c.server}/${c.kind}/${c.name}/${c.seen.digest}`).join(",");
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  if (!pending.length) { list.replaceChildren(el("p", {}, "No definition changed.")); return; }
  list.replaceChildren(...pending.map((c) => {
    const before = JSON.stringify(c.pinned.definition, null, 2).split("\n");
    const after = JSON.stringify(c.seen.definition, null, 2).split("\n");
    const [da, db] = changedLines(before, after);
    const approve = async () => {
      try {
        await api("POST", "/admin/pins/approve", { server: c.server, kind: c.kind, name: c.name, digest: c.seen.digest });
        delete list.dataset.key;
        await refresh();
        await loadInventory();
      } catch (e) { report(e); }
    };
    const reason = el("input", { maxlength: "400", placeholder: "why refused (optional)", class: "note" });
    const refuse = async () => {
      try {
        const body = { server: c.server, kind: c.kind, name: c.name, digest: c.seen.digest };
        if (reason.value.trim()) body.reason = reason.value.trim();
        await api("POST", "/admin/pins/refuse", body);
        delete list.dataset.key;
        await refresh();
        await loadInventory();
      } catch (e) { report(e); }
    };
    return el("div", { class: "card", "data-change": `${c.server}/${c.name}` },
      el("div", {}, el("strong", {}, visible(c.server), " / ", visible(c.name)), ` (${c.kind}) changed since it was pinned`),
      el("div", { class: "diff" }, side(`pinned ${c.pinned.digest}`, before, da, "del"),
        side(`now ${c.seen.digest}`, after, db, "add", (c.findings || []).map((f) => f.excerpt).filter(Boolean))),
      (c.findings || []).length ? el("div", { class: "down" }, "The poisoning scan finds in the new definition:", findingList(c.findings))
        : el("div", { class: "hint" }, "The poisoning scan finds nothing in the new definition."),
      el("div", {}, el("button", { type: "button", class: "approve-change", onclick: approve }, "Approve the new definition"), " ",
        reason, " ", el("button", { type: "button", class: "danger refuse-change", onclick: refuse }, "Refuse")));
  }));
}

// `text` with every occurrence of the findings' excerpts marked (as they appear in the JSON
// shown: escaped as JSON escapes them), the rest through visible().
function highlighted(text, excerpts) {
  const spans = [];
  for (const e of excerpts) {
    const needle = JSON.stringify(e).slice(1, -1);
    if (!needle) continue;
    for (let at = text.indexOf(needle); at >= 0 && spans.length < 200; at = text.indexOf(needle, at + needle.length)) {
      spans.push([at, at + needle.length]);
    }
  }
  spans.sort((a, b) => a[0] - b[0]);
  // Overlapping matches are marked as one.
  const merged = [];
  for (const [a, b] of spans) {
    const top = merged[merged.length - 1];
    if (top && a <= top[1]) top[1] = Math.max(top[1], b); else merged.push([a, b]);
  }
  const out = document.createDocumentFragment();
  let last = 0;
  for (const [a, b] of merged) {
    out.append(visible(text.slice(last, a)), el("mark", { class: "finding" }, visible(text.slice(a, b))));
    last = b;
  }
  out.append(visible(text.slice(last)));
  return out;
}

function ruleText(r) {
  const who = [r.scopes.length ? `scopes ${r.scopes.join(" ")}` : "", r.roles.length ? `roles ${r.roles.join("|")}` : "",
    r.tenants.length ? `tenants ${r.tenants.join("|")}` : ""].filter(Boolean).join(", ");
  return `${r.effect} ${r.id}` + (who ? ` (${who})` : "") + (r.conditional ? " if its condition holds" : "") +
    (r.read_only_only ? " read-only only" : "") + (r.approval ? `, held for ${r.approval} approval` : "");
}

const PIN_STATES = {
  pinned: "pinned",
  changed: "changed since pinned (withheld), pinned",
  unpinned: "not pinned (no client was shown it), digest",
};

function showDefinition(d) {
  const box = $("definition");
  box.hidden = false;
  const json = JSON.stringify(d.definition, null, 2);
  box.replaceChildren(
    el("div", {}, el("strong", {}, visible(d.server), " / ", visible(d.name)), ` (${d.kind}), ${PIN_STATES[d.state] || d.state} ${d.digest}`),
    d.upstream_digest ? el("div", { class: "down" }, `the upstream now lists another definition (${d.upstream_digest}); clients will not be shown it until it is approved`) : "",
    d.switched_off ? el("div", { class: "down" }, "switched off by ", visible(d.switched_off.by), ": ", visible(d.switched_off.reason)) : "",
    el("div", {}, d.rules && d.rules.length ? `Rules: ${d.rules.map(ruleText).join("; ")}` : "No rule names it: nobody may use it."),
    d.findings.length ? findingList(d.findings) : "",
    d.pending_findings && d.pending_findings.length ? el("div", { class: "down" }, "In its changed definition (withheld):", findingList(d.pending_findings)) : "",
    d.definition_omitted ? el("div", { class: "hint" }, "The definition is too large to list here: read it with warden pin diff.") : "",
    d.definition_omitted ? "" : el("pre", {}, highlighted(json, d.findings.map((f) => f.excerpt).filter(Boolean))));
}

function renderInventory() {
  const inv = state.inventory;
  if (!inv) return;
  const f = $("inventory-filter").value.trim().toLowerCase();
  const rows = inv.definitions.filter((d) => !f || [d.server, d.kind, d.name, ...(d.classes || []), ...(d.rules || []).map((r) => r.id)]
    .some((x) => String(x).toLowerCase().includes(f)));
  $("inventory-summary").textContent = `${inv.definitions.length} definition(s) pinned (pinning: ${inv.pinning})` +
    (inv.truncated ? "; more are not shown" : "") + (inv.pinning === "off" ? ": with pinning off, Warden keeps no definitions to list" : "");
  $("look-alikes").replaceChildren(...(inv.look_alikes.length ? [el("p", { class: "error" }, "Look-alike tool names across upstreams (shadowing?):"),
    el("ul", {}, ...inv.look_alikes.map((l) => el("li", {}, visible(l))))] : []));
  $("inventory").tBodies[0].replaceChildren(...rows.map((d) =>
    el("tr", { class: "record", "data-definition": `${d.server}/${d.kind}/${d.name}`, onclick: () => showDefinition(d) },
      el("td", {}, visible(d.server)), el("td", {}, d.kind), el("td", {}, visible(d.name)),
      el("td", {}, d.classes ? (d.classes.join(", ") || "none") + (d.classified_by ? ` (${d.classified_by})` : "") : ""),
      el("td", {}, d.rules ? (d.rules.map((r) => `${r.effect} ${r.id}`).join(", ") || "none") : ""),
      el("td", { class: d.state === "changed" ? "down" : "" }, d.state === "changed" ? "changed: withheld" : d.state,
        d.switched_off ? el("div", { class: "down" }, "switched off") : ""),
      el("td", { class: d.findings.length || (d.pending_findings || []).length ? "down" : "" },
        d.findings.length ? d.findings.map((x) => x.rule).join(", ") : "clean",
        (d.pending_findings || []).length ? el("div", {}, `changed: ${d.pending_findings.map((x) => x.rule).join(", ")}`) : ""))));
}

// The trail's hash chains and signed checkpoints, as `warden audit verify` checks them.
async function verifyChain(fresh) {
  const v = await api("GET", `/admin/audit/verify${fresh ? "?fresh=1" : ""}`);
  const status = $("chain-status");
  status.className = v.ok === true ? "up" : v.ok === false ? "down" : "";
  status.textContent = v.ok === true ? `The trail verifies: every record's hash, each chain's order and every signed checkpoint (checked ${when(v.verified_at)}).`
    : v.ok === false ? `The trail does NOT verify (checked ${when(v.verified_at)}).`
    : v.running ? "Verification is still running; look again shortly." : (v.reason || "Not verified here.");
  const items = [];
  for (const c of v.chains || []) {
    items.push(el("li", {}, `chain ${c.name}: ${c.records} record(s) through seq ${c.seq}; ${c.checkpoints} signed checkpoint(s), signed through seq ${c.signed_through}` +
      (c.last_checkpoint_at ? `; last checkpoint ${when(c.last_checkpoint_at)}` : "")));
  }
  for (const p of v.problems || []) items.push(el("li", { class: "down" }, visible(p)));
  for (const n of v.notes || []) items.push(el("li", { class: "hint" }, visible(n)));
  $("chain-details").replaceChildren(...items);
}

async function loadConfig() {
  const c = await api("GET", "/admin/config");
  const check = c.check || { lines: [] };
  $("config-summary").textContent = `Config generation ${c.generation}; checked ${when(check.checked_at)}` +
    (check.ok === false ? " — the check FAILED" : "");
  $("check-lines").replaceChildren(...check.lines.map((l) => el("li", { class: `check-${l.level}` }, `${l.level}: `, visible(l.text))));
  $("config-json").replaceChildren(visible(JSON.stringify(c.config, null, 2)));
}

async function loadInventory() {
  state.inventory = await api("GET", "/admin/tools");
  renderInventory();
}

document.addEventListener("DOMContentLoaded", async () => {
  $("inventory-filter").addEventListener("input", renderInventory);
  $("oauth-admin").addEventListener("click", () => startOAuth("warden:admin").catch((e) => report(signInError(e.message))));
  $("oauth-approve").addEventListener("click", () => startOAuth("warden:approve").catch((e) => report(signInError(e.message))));
  $("chain-verify").addEventListener("click", () => verifyChain(true).catch(report));
  $("sign-in").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { token: $("token").value };
    if ($("name").value.trim()) body.name = $("name").value.trim();
    try {
      const s = await api("POST", "/console/sign-in", body);
      $("token").value = "";
      await signedIn(s);
    } catch (e) { report(e); }
  });
  $("sign-out").addEventListener("click", async () => {
    try { await api("POST", "/console/sign-out"); } catch (_) { /* signed out either way */ }
    showSignIn();
  });
  $("kill").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { server: $("kill-server").value, reason: $("kill-reason").value, cancel_in_flight: $("kill-cancel").checked };
    if ($("kill-tool").value.trim()) body.tool = $("kill-tool").value.trim();
    try {
      await api("POST", "/admin/kill-switches", body);
      $("kill-reason").value = "";
      $("kill-tool").value = "";
      await refresh();
    } catch (e) { report(e); }
  });
  $("audit-export").addEventListener("click", async (ev) => {
    ev.preventDefault();
    try {
      const blob = new Blob([await exportAudit()], { type: "application/x-ndjson" });
      const a = el("a", { href: URL.createObjectURL(blob), download: "warden-audit.jsonl" });
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) { report(e); }
  });
  $("audit-search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    searchAudit().catch(report);
  });
  window.addEventListener("hashchange", () => route().catch(report));
  // Back from the authorization server: the session's CSRF token, or why there is none.
  // The token is taken only with the nonce this tab made for its flow: a link or a page
  // elsewhere cannot plant a session of its own here.
  const back = new URLSearchParams(location.hash.slice(1));
  if (back.has("csrf") || back.has("sign-in-error")) {
    history.replaceState(null, "", "/console#overview");
    const nonce = sessionStorage.getItem(NONCE_KEY);
    sessionStorage.removeItem(NONCE_KEY);
    if (back.has("csrf") && nonce && back.get("n") === nonce) sessionStorage.setItem(CSRF_KEY, back.get("csrf"));
    else {
      const code = back.get("sign-in-error");
      showSignIn();
      report(signInError(code));
      return;
    }
  }
  state.csrf = sessionStorage.getItem(CSRF_KEY);
  if (!state.csrf) { showSignIn(); return; }
  try {
    await signedIn(await api("GET", "/console/session"));
  } catch (_) {
    showSignIn();
  }
});
