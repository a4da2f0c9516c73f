// The admin status page. Everything is inline so the page works offline and from any
// member. The script polls /v1/status of this node once a second, then the /v1/status of
// every member it lists (cross-origin: the API answers with Access-Control-Allow-Origin: *),
// and renders the members as the leader sees them (match index, last contact) together with
// what each member says about itself (role, term, commit and applied index). The member list
// is this node's current configuration: voters and learners, a learner with its catch-up
// progress (its match index against the leader's commit index), and a banner while a
// membership change is not yet committed.
#include "net/http/status_page.h"

namespace net {

namespace {

constexpr std::string_view page = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>raftkv status</title>
<style>
:root { --bg:#f6f7f9; --card:#fff; --ink:#1d2430; --muted:#6b7480; --line:#dde1e7;
        --leader:#fff4d6; --leader-edge:#e0a800; --ok:#1a7f37; --warn:#b35900; --bad:#c62828;
        --writes:#2f6fde; --commit:#8e44ad; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       background:var(--bg); color:var(--ink); }
header { display:flex; flex-wrap:wrap; gap:.5rem 1.5rem; align-items:baseline;
         padding:.8rem 1rem; background:#1d2430; color:#fff; }
header h1 { font-size:1.15rem; margin:0; }
header .sub { color:#c4cad3; font-size:.9rem; }
main { padding:1rem; max-width:1100px; margin:0 auto; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(150px, 1fr)); gap:.75rem;
         margin-bottom:1rem; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:.6rem .8rem; }
.card .label { color:var(--muted); font-size:.8rem; text-transform:uppercase; letter-spacing:.04em; }
.card .value { font-size:1.35rem; font-weight:600; font-variant-numeric:tabular-nums; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px;
          padding:.8rem; margin-bottom:1rem; }
section h2 { font-size:1rem; margin:0 0 .6rem; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:.4rem .5rem; border-bottom:1px solid var(--line); }
th { color:var(--muted); font-weight:600; font-size:.8rem; text-transform:uppercase; }
tr.leader td { background:var(--leader); }
tr.leader td:first-child { box-shadow:inset 4px 0 0 var(--leader-edge); }
.badge { display:inline-block; padding:0 .45rem; border-radius:999px; font-size:.8rem;
         border:1px solid var(--line); }
.badge.leader { background:var(--leader-edge); color:#fff; border-color:var(--leader-edge); }
.health.healthy { color:var(--ok); } .health.lagging { color:var(--warn); }
.health.down { color:var(--bad); font-weight:600; }
a { color:var(--writes); }
#error { color:var(--bad); min-height:1.2em; }
#change { background:var(--leader); border:1px solid var(--leader-edge); border-radius:8px;
          padding:.4rem .8rem; margin-bottom:1rem; }
.badge.learner { border-style:dashed; color:var(--muted); }
.chart-wrap { position:relative; width:100%; height:220px; }
canvas { width:100%; height:100%; display:block; }
.legend { display:flex; gap:1rem; font-size:.85rem; color:var(--muted); margin-top:.4rem; }
.legend span::before { content:""; display:inline-block; width:.8em; height:.8em;
                       margin-right:.3em; border-radius:2px; vertical-align:-1px; }
.legend .w::before { background:var(--writes); } .legend .c::before { background:var(--commit); }
/* Narrow screens: each member becomes a small card of label/value lines. */
@media (max-width: 640px) {
  table, thead, tbody, tr, td { display:block; width:100%; }
  thead { display:none; }
  tr { border:1px solid var(--line); border-radius:8px; margin-bottom:.6rem; overflow:hidden; }
  td { display:flex; justify-content:space-between; gap:1rem; border-bottom:1px solid var(--line); }
  td:last-child { border-bottom:none; }
  td::before { content:attr(data-label); color:var(--muted); font-size:.8rem; }
  .chart-wrap { height:180px; }
}
</style>
</head>
<body>
<header>
  <h1>raftkv</h1>
  <span class="sub" id="self">connecting&hellip;</span>
  <span class="sub" id="updated"></span>
</header>
<main>
  <div id="error" role="status"></div>
  <div id="change" role="status" hidden></div>
  <div class="cards">
    <div class="card"><div class="label">Leader</div><div class="value" id="leader">&ndash;</div></div>
    <div class="card"><div class="label">Term</div><div class="value" id="term">&ndash;</div></div>
    <div class="card"><div class="label">Commit index</div><div class="value" id="commit">&ndash;</div></div>
    <div class="card"><div class="label">Writes / s</div><div class="value" id="wps">&ndash;</div></div>
    <div class="card"><div class="label">Items</div><div class="value" id="items">&ndash;</div></div>
    <div class="card"><div class="label">Memory (RSS)</div><div class="value" id="rss">&ndash;</div></div>
  </div>
  <section>
    <h2>Members</h2>
    <table id="members">
      <thead><tr><th>Node</th><th>Role</th><th>Member</th><th>Term</th><th>Commit</th><th>Applied</th>
        <th>Lag</th><th>Last contact</th><th>Snapshot</th><th>Health</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Last minutes</h2>
    <div class="chart-wrap"><canvas id="chart"></canvas></div>
    <div class="legend"><span class="w">writes / s (committed entries)</span><span class="c">commit index</span></div>
  </section>
</main>
<script>
"use strict";
const POLL_MS = 1000, HISTORY_MS = 5 * 60 * 1000, FETCH_TIMEOUT_MS = 1500;
const history = [];  // {t, commit, wps}
let last = null;     // previous {t, commit} for the rate

const $ = (id) => document.getElementById(id);

async function fetchStatus(base) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const r = await fetch(base + "/v1/status", {cache: "no-store", signal: ctl.signal});
    if (!r.ok) throw new Error("HTTP " + r.status);
    return await r.json();
  } finally {
    clearTimeout(timer);
  }
}

// The members' doors speak what this one speaks: HTTPS when the page came over HTTPS (a
// plain http:// fetch from an https:// page is blocked as mixed content anyway).
function baseOf(member) { return member.http ? location.protocol + "//" + member.http : null; }

function cell(row, label, content, cls) {
  const td = document.createElement("td");
  td.dataset.label = label;
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fmtContact(ms) {
  if (ms === undefined || ms === null || ms < 0) return "\u2013";
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s";
}

function render(self, views) {
  // The leader's own status carries match/next index and last contact of every member.
  const leaderId = self.leader_id;
  const leaderView = views.find((v) => v && v.id === leaderId && v.role === "leader") ||
                     (self.role === "leader" ? self : null);
  const members = self.members && self.members.length ? self.members
                : [{id: self.id, http: "", voter: true}];
  const tbody = $("members").querySelector("tbody");
  tbody.replaceChildren();
  let maxCommit = self.commit_index;
  members.forEach((m, i) => {
    const st = m.id === self.id ? self : views[i];
    const lm = leaderView ? leaderView.members.find((x) => x.id === m.id) : null;
    const row = document.createElement("tr");
    row.className = "member";
    row.dataset.id = m.id;
    const role = st ? st.role : "unreachable";
    row.dataset.role = role;
    if (st && st.role === "leader") row.classList.add("leader");
    const base = baseOf(m);
    const name = document.createElement(base ? "a" : "span");
    name.textContent = "node " + m.id + (m.id === self.id ? " (this)" : "");
    if (base) { name.href = base + "/"; }
    cell(row, "Node", name);
    const badge = document.createElement("span");
    badge.className = "badge" + (role === "leader" ? " leader" : "");
    badge.textContent = role;
    cell(row, "Role", badge);
    // Voter or learner; a learner's catch-up as the leader sees it (promotable once caught up).
    const voter = m.voter !== false;
    row.dataset.member = voter ? "voter" : "learner";
    let memberText = "voter";
    if (!voter) {
      memberText = "learner";
      if (lm && lm.caught_up) memberText += " \u00b7 caught up";
      else if (lm && leaderView) {
        const goal = leaderView.commit_index;
        const pct = goal ? Math.min(100, Math.floor(100 * lm.match_index / goal)) : 100;
        memberText += " \u00b7 " + lm.match_index + " / " + goal + " (" + pct + "%)";
      }
    }
    const kind = document.createElement("span");
    kind.className = "badge" + (voter ? "" : " learner");
    kind.textContent = memberText;
    cell(row, "Member", kind);
    cell(row, "Term", st ? st.term : "\u2013");
    cell(row, "Commit", st ? st.commit_index : "\u2013");
    cell(row, "Applied", st ? st.applied_index : "\u2013");
    if (st) maxCommit = Math.max(maxCommit, st.commit_index);
    // Lag: entries the leader has that this member has not acknowledged (leader's view),
    // else how far its applied index trails the leader's commit index.
    let lag = null;
    if (leaderView && role !== "leader" && lm && lm.match_index !== undefined)
      lag = Math.max(0, leaderView.last_log_index - lm.match_index);
    else if (leaderView && st) lag = Math.max(0, leaderView.commit_index - st.applied_index);
    cell(row, "Lag", lag === null ? "\u2013" : lag);
    const contact = role === "leader" ? 0 : (lm ? lm.last_contact_ms : -1);
    cell(row, "Last contact", role === "leader" ? "self" : fmtContact(contact));
    // The leader's latest snapshot stream to this member: progress, or how it ended.
    const snap = lm && lm.snapshot_transfer;
    let snapText = "\u2013";
    if (snap) {
      const pct = snap.bytes_total ? Math.floor(100 * snap.bytes_acked / snap.bytes_total) : 100;
      snapText = snap.state === "sending"
          ? "sending " + (snap.bytes_acked / 1048576).toFixed(1) + " / " +
            (snap.bytes_total / 1048576).toFixed(1) + " MB (" + pct + "%)"
          : snap.state + " @" + snap.index;
      if (snap.last_error && snap.state !== "done") snapText += ": " + snap.last_error;
    }
    cell(row, "Snapshot", snapText, snap ? "snapshot " + snap.state : "");
    let health = "healthy";
    if (!st) health = "down";
    else if (!leaderId || st.leader_id !== leaderId || st.storage_error) health = "lagging";
    else if ((lag !== null && lag > 100) || (role !== "leader" && contact > 1000)) health = "lagging";
    cell(row, "Health", health, "health " + health);
    tbody.appendChild(row);
  });

  // A configuration entry not committed yet, as the leader (or else this node) knows it.
  const cfg = leaderView || self;
  $("change").hidden = !cfg.change_in_progress;
  $("change").textContent = cfg.change_in_progress
      ? "membership change in progress (configuration at index " + cfg.config_index + ")" : "";

  $("leader").textContent = leaderId ? "node " + leaderId : "none";
  $("leader").dataset.leaderId = leaderId || 0;
  $("term").textContent = (leaderView || self).term;
  $("commit").textContent = maxCommit;
  $("items").textContent = self.kv ? self.kv.items : "\u2013";
  $("rss").textContent = self.memory ? (self.memory.rss_anon_bytes / 1048576).toFixed(0) + " MB anon + " + (self.memory.rss_file_bytes / 1048576).toFixed(0) + " MB file" : "\u2013";
  $("self").textContent = "node " + self.id + " \u00b7 " + self.role + " \u00b7 v" + self.version;
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();

  const now = Date.now();
  let wps = 0;
  if (last && now > last.t) wps = Math.max(0, (maxCommit - last.commit) * 1000 / (now - last.t));
  last = {t: now, commit: maxCommit};
  $("wps").textContent = wps.toFixed(wps < 10 ? 1 : 0);
  history.push({t: now, commit: maxCommit, wps});
  while (history.length && history[0].t < now - HISTORY_MS) history.shift();
  drawChart();
}

function drawChart() {
  const canvas = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const pad = {l: 44, r: 56, t: 8, b: 20};
  const now = Date.now(), t0 = now - HISTORY_MS;
  const x = (t) => pad.l + (t - t0) / HISTORY_MS * (w - pad.l - pad.r);
  g.strokeStyle = css.getPropertyValue("--line"); g.lineWidth = 1;
  g.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
  g.fillStyle = css.getPropertyValue("--muted"); g.font = "11px system-ui, sans-serif";
  for (let m = 0; m <= 5; m++) {
    const t = now - m * 60000;
    g.fillText(m === 0 ? "now" : "-" + m + "m", x(t) - 10, h - 5);
  }
  if (history.length < 1) return;
  const series = (key, color, axisRight) => {
    let lo = Math.min(...history.map((p) => p[key])), hi = Math.max(...history.map((p) => p[key]));
    if (key === "wps") lo = 0;
    if (hi - lo < 1) hi = lo + 1;
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (h - pad.t - pad.b);
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    history.forEach((p, i) => { const px = x(p.t), py = y(p[key]); i ? g.lineTo(px, py) : g.moveTo(px, py); });
    g.stroke();
    g.fillStyle = color;
    const lx = axisRight ? w - pad.r + 4 : 2;
    g.fillText(String(Math.round(hi)), lx, pad.t + 10);
    g.fillText(String(Math.round(lo)), lx, h - pad.b);
  };
  series("wps", css.getPropertyValue("--writes").trim(), false);
  series("commit", css.getPropertyValue("--commit").trim(), true);
}

async function poll() {
  try {
    const self = await fetchStatus("");
    const members = self.members || [];
    const views = await Promise.all(members.map((m) => {
      if (m.id === self.id) return Promise.resolve(self);
      const base = baseOf(m);
      return base ? fetchStatus(base).catch(() => null) : Promise.resolve(null);
    }));
    $("error").textContent = "";
    render(self, views);
  } catch (e) {
    $("error").textContent = "cannot reach this node: " + e.message;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

window.addEventListener("resize", drawChart);
poll();
</script>
</body>
</html>
)html";

}  // namespace

std::string_view status_page_html() { return page; }

}  // namespace net
