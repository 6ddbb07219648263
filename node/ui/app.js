// The Pharos UI: plain ES modules, no build step. Pages are routed by the URL's hash
// (#/explore?q=...&from=now-1h&to=now), so every view is a link that can be shared.
import uPlot from "/ui/vendor/uPlot.esm.js";

const main = document.getElementById("main");
const PALETTE = ["#1f6feb", "#d92d20", "#079455", "#dc6803", "#7a5af8", "#0e9384", "#c11574", "#4e5ba6",
  "#b54708", "#475467"];
const RANGES = ["5m", "15m", "1h", "6h", "24h", "7d", "30d"];
const EXAMPLES = [
  "SELECT mean(usage_user) FROM cpu WHERE $timeFilter GROUP BY time($interval), host",
  "SELECT count(value) FROM \"ALERTS\" WHERE $timeFilter GROUP BY time($interval), alertname",
  "SHOW MEASUREMENTS",
  "SHOW SERIES CARDINALITY",
];
let stop = () => {}; // ends the current page's timers and charts
let generation = 0; // bumped at every page change: an answer for an older page is dropped

// ---- helpers ----

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const token = () => localStorage.getItem("pharos.token") || "";

/** GET a JSON endpoint of this node (with the token, when one is set); errors carry the server's message. */
async function api(path) {
  const headers = token() ? { Authorization: "Bearer " + token() } : {};
  const r = await fetch(path, { headers });
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  if (!r.ok) {
    const msg = (body && (body.error || body.message)) || text || r.statusText;
    throw new Error(r.status === 401 || r.status === 403 ? `${msg} (set an API token with the Token button)` : msg);
  }
  return body;
}

const DUR = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 };
/** "5m" -> 300000 (ms); null when it is not a duration. */
function parseDur(s) {
  const m = /^(\d+)(ms|s|m|h|d|w)$/.exec(String(s).trim());
  return m ? Number(m[1]) * DUR[m[2]] : null;
}
/** A time of the range: "now", "now-1h" or milliseconds since the epoch. */
function parseTime(s, now) {
  if (s === undefined || s === null || s === "" || s === "now") return now;
  const rel = /^now-(.+)$/.exec(s);
  if (rel) return now - (parseDur(rel[1]) ?? 3600e3);
  const n = Number(s);
  return Number.isFinite(n) ? n : now;
}
/** A GROUP BY time interval giving about 300 points over the range, on a round step. */
function autoInterval(ms) {
  const steps = [1e3, 5e3, 10e3, 30e3, 6e4, 3e5, 6e5, 18e5, 36e5, 108e5, 216e5, 864e5, 6048e5];
  const want = ms / 300;
  const step = steps.find((s) => s >= want) ?? steps[steps.length - 1];
  return step % 864e5 === 0 ? `${step / 864e5}d` : step % 36e5 === 0 ? `${step / 36e5}h`
    : step % 6e4 === 0 ? `${step / 6e4}m` : `${step / 1e3}s`;
}
const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");
const localInput = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 6e4).toISOString().slice(0, 19);

function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [page, qs] = h.split("?");
  return { page: page || "explore", params: new URLSearchParams(qs || "") };
}

function table(headers, rows) {
  return `<table><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${
    rows.map((r) => `<tr>${r.map((c) => (typeof c === "object" && c !== null ? `<td class="${c.cls || ""}">${c.html}</td>` : `<td>${esc(c)}</td>`)).join("")}</tr>`).join("")
  }</tbody></table>`;
}
const labels = (l) => ({ html: Object.entries(l || {}).map(([k, v]) => `<code>${esc(k)}=${esc(v)}</code>`).join(" "), cls: "labels" });
const state = (s) => ({ html: esc(s), cls: `state-${esc(s)}` });

// ---- Explore ----

function explore(params) {
  const q = params.get("q") ?? EXAMPLES[0];
  const from = params.get("from") ?? "now-1h";
  const to = params.get("to") ?? "now";
  const refresh = params.get("refresh") ?? "off";
  const view = params.get("view") ?? "chart";
  const history = JSON.parse(localStorage.getItem("pharos.history") || "[]");
  const relative = /^now-(.+)$/.exec(from)?.[1];
  main.innerHTML = `
    <textarea id="q" spellcheck="false" aria-label="query">${esc(q)}</textarea>
    <div class="bar">
      <label>Range <select id="range">${RANGES.map((r) => `<option ${r === relative ? "selected" : ""}>${r}</option>`).join("")}
        <option value="" ${relative && to === "now" ? "" : "selected"}>absolute</option></select></label>
      <input id="from" type="datetime-local" step="1"> – <input id="to" type="datetime-local" step="1">
      <label>Refresh <select id="refresh">${["off", "5s", "10s", "30s", "1m", "5m"].map((r) => `<option ${r === refresh ? "selected" : ""}>${r}</option>`).join("")}</select></label>
      <label>View <select id="view"><option ${view === "chart" ? "selected" : ""}>chart</option><option ${view === "table" ? "selected" : ""}>table</option></select></label>
      <button class="primary" id="run">Run</button>
      <button id="csv">CSV</button>
      <select id="recent"><option value="">Recent and example queries…</option>
        ${[...history, ...EXAMPLES.filter((e) => !history.includes(e))].map((h) => `<option>${esc(h)}</option>`).join("")}</select>
    </div>
    <div id="status" class="muted"></div>
    <pre class="error" id="error" hidden></pre>
    <div id="out"></div>`;
  const $ = (id) => document.getElementById(id);
  let last = null;
  let charts = [];
  let timer = null;
  const now = Date.now();
  $("from").value = localInput(parseTime(from, now));
  $("to").value = localInput(parseTime(to, now));

  const go = (changes) => {
    const p = new URLSearchParams({ q: $("q").value, from, to, refresh: $("refresh").value, view: $("view").value, ...changes });
    location.hash = "#/explore?" + p.toString();
  };
  $("run").onclick = () => go({});
  $("q").onkeydown = (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) go({}); };
  $("range").onchange = () => { if ($("range").value) go({ from: "now-" + $("range").value, to: "now" }); };
  const absolute = () => go({ from: String(new Date($("from").value).getTime()), to: String(new Date($("to").value).getTime()) });
  $("from").onchange = absolute;
  $("to").onchange = absolute;
  $("refresh").onchange = () => go({});
  $("view").onchange = () => go({});
  $("recent").onchange = () => { if ($("recent").value) { $("q").value = $("recent").value; go({}); } };
  $("csv").onclick = () => {
    if (!last) return;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([toCsv(last)], { type: "text/csv" }));
    a.download = "pharos-query.csv";
    a.click();
  };

  const mine = generation;
  async function run() {
    const t = Date.now();
    const f = parseTime(from, t);
    const e = parseTime(to, t);
    const interval = autoInterval(Math.max(e - f, 1000));
    const text = q.replaceAll("$timeFilter", `time >= ${Math.floor(f)}ms AND time <= ${Math.ceil(e)}ms`).replaceAll("$interval", interval);
    $("status").textContent = "Running…";
    $("error").hidden = true;
    try {
      const body = await api("/query?" + new URLSearchParams({ q: text, db: "pharos", epoch: "ms" }));
      if (mine !== generation) return;
      last = body.results || [];
      const errors = last.filter((r) => r.error).map((r) => `statement ${r.statement_id}: ${r.error}`);
      if (errors.length) showError(errors.join("\n"));
      const n = last.reduce((a, r) => a + (r.series || []).length, 0);
      $("status").textContent = `${n} series, ${iso(f)} to ${iso(e)}${q.includes("$interval") ? `, interval ${interval}` : ""}, ${Date.now() - t} ms`;
      render(last);
    } catch (err) {
      if (mine !== generation) return;
      showError(err.message);
      $("status").textContent = "";
      $("out").innerHTML = "";
    }
  }

  function showError(msg) {
    $("error").hidden = false;
    $("error").textContent = msg;
    // "line 2, char 7" / "line 2, column 7": put the cursor there.
    const m = /line (\d+),? (?:char|col(?:umn)?) (\d+)/.exec(msg);
    if (m) {
      const lines = $("q").value.split("\n");
      const pos = lines.slice(0, Number(m[1]) - 1).reduce((a, l) => a + l.length + 1, 0) + Number(m[2]) - 1;
      $("q").setSelectionRange(pos, pos + 1);
    }
  }

  function render(results) {
    charts.forEach((c) => c.destroy());
    charts = [];
    const out = $("out");
    out.innerHTML = "";
    for (const r of results) {
      const series = r.series || [];
      if (!series.length) continue;
      const timed = series.every((s) => s.columns[0] === "time") && series.some((s) => s.values.length > 1);
      if ($("view").value === "chart" && timed) {
        const div = document.createElement("div");
        div.className = "chart";
        out.appendChild(div);
        charts.push(chart(div, series));
      } else {
        for (const s of series) {
          const head = document.createElement("h4");
          head.textContent = s.name + (s.tags ? " " + Object.entries(s.tags).map(([k, v]) => `${k}=${v}`).join(",") : "");
          out.appendChild(head);
          const box = document.createElement("div");
          box.innerHTML = table(s.columns, s.values.map((row) => row.map((v, i) => (s.columns[i] === "time" && typeof v === "number" ? iso(v) : v === null ? "" : v))));
          out.appendChild(box);
        }
      }
    }
    if (!out.children.length) out.innerHTML = `<p class="muted">No data in this range.</p>`;
  }

  function chart(div, series) {
    const xs = [...new Set(series.flatMap((s) => s.values.map((v) => v[0])))].sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    const lines = [];
    const data = [xs.map((x) => x / 1000)];
    for (const s of series) {
      const tags = s.tags ? " " + Object.entries(s.tags).map(([k, v]) => `${k}=${v}`).join(",") : "";
      for (let c = 1; c < s.columns.length; c++) {
        const ys = new Array(xs.length).fill(null);
        for (const row of s.values) if (typeof row[c] === "number") ys[at.get(row[0])] = row[c];
        lines.push({ label: `${s.name}.${s.columns[c]}${tags}`, stroke: PALETTE[lines.length % PALETTE.length], width: 1.5, spanGaps: false });
        data.push(ys);
      }
    }
    const opts = {
      width: Math.max(main.clientWidth - 8, 300),
      height: 320,
      series: [{}, ...lines],
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 5) return;
          const a = u.posToVal(u.select.left, "x");
          const b = u.posToVal(u.select.left + u.select.width, "x");
          go({ from: String(Math.round(a * 1000)), to: String(Math.round(b * 1000)) });
        }],
      },
    };
    return new uPlot(opts, data, div);
  }

  if (!history.includes(q)) localStorage.setItem("pharos.history", JSON.stringify([q, ...history].slice(0, 20)));
  run();
  const every = parseDur(refresh);
  if (every) timer = setInterval(run, every);
  stop = () => { clearInterval(timer); charts.forEach((c) => c.destroy()); };
}

function toCsv(results) {
  const cell = (v) => (/[",\n]/.test(String(v ?? "")) ? `"${String(v).replaceAll('"', '""')}"` : String(v ?? ""));
  const lines = [];
  for (const r of results) {
    for (const s of r.series || []) {
      lines.push(["name", "tags", ...s.columns].map(cell).join(","));
      const tags = Object.entries(s.tags || {}).map(([k, v]) => `${k}=${v}`).join(";");
      for (const row of s.values) lines.push([s.name, tags, ...row.map((v, i) => (s.columns[i] === "time" && typeof v === "number" ? iso(v) : v))].map(cell).join(","));
    }
  }
  return lines.join("\n") + "\n";
}

// ---- Alerts, silences, targets, cluster ----

async function alerts() {
  const body = await api("/api/alerts");
  const list = body.alerts || [];
  const graph = (a) => "#/explore?" + new URLSearchParams({
    q: `SELECT count(value) FROM "ALERTS" WHERE alertname = '${String(a.rule).replaceAll("'", "\\'")}' AND $timeFilter GROUP BY time($interval), alertstate`,
    from: "now-6h", to: "now",
  });
  main.innerHTML = `<h3>Alerts</h3>${list.length ? table(["state", "alert", "group", "labels", "value", "active since", ""],
    list.map((a) => [state(a.state), a.rule, a.group, labels(a.labels), { html: esc(a.value), cls: "num" }, a.activeSince || "",
      { html: `<a href="${graph(a)}">graph</a>` }])) : `<p class="muted">No alerts.</p>`}`;
}

async function silences() {
  const body = await api("/api/silences");
  const list = body.silences || [];
  main.innerHTML = `<h3>Silences</h3><p class="muted">Create and expire with <code>pharosctl silence add|expire</code>.</p>${
    list.length ? table(["state", "matchers", "starts", "ends", "by", "comment", "id"],
      list.map((s) => [state(s.state), (s.matchers || []).join(", "), s.startsAt, s.endsAt, s.createdBy, s.comment, s.id]))
      : `<p class="muted">No silences.</p>`}`;
}

async function targets() {
  const body = await api("/api/v1/targets");
  const list = body?.data?.activeTargets || body?.targets || [];
  main.innerHTML = `<h3>Scrape targets</h3>${list.length ? table(["health", "job", "url", "labels", "last scrape", "duration", "samples", "last error", "node"],
    list.map((t) => [state(t.health), t.scrapePool, t.scrapeUrl, labels(t.labels), t.lastScrape || "", { html: esc(t.lastScrapeDuration), cls: "num" },
      { html: esc(t.lastSamples), cls: "num" }, t.lastError || "", t.owner]))
    : `<p class="muted">No scrape targets (pharosctl scrape apply).</p>`}`;
}

async function cluster() {
  // /health answers 503 while a shard has no leader: its body still says which.
  const r = await fetch("/health");
  const health = await r.json();
  let top = null;
  try { top = (await api("/api/v1/status/tsdb?topN=10")).data; } catch { /* no read token */ }
  const shards = health.shards || [];
  main.innerHTML = `<h3>Cluster</h3>
    <p>Status <span class="state-${esc(health.status)}">${esc(health.status)}</span>, answered by node ${esc(health.node)}${
      health.disk?.writes_refused ? ` — <span class="state-fail">this node refuses writes: its disk is full</span>` : ""}</p>
    ${table(["shard", "leader", "term", "applied", "lag per replica", "error"], shards.map((s) => [s.shard, s.leader ?? "none", s.term ?? "", s.applied ?? "",
      Object.entries(s.lag || {}).map(([n, l]) => `node ${n}: ${l}`).join(", "), s.error || ""]))}
    ${top ? `<h3>Series</h3><p>${esc(top.headStats?.numSeries)} series${top.createdSince ? `; created since ${esc(top.createdSince)}` : ""}</p>
      ${table(["measurement", "series"], (top.seriesCountByMetricName || []).map((m) => [m.name, { html: esc(m.value), cls: "num" }]))}` : ""}`;
}

// ---- shell ----

const PAGES = { explore, alerts, silences, targets, cluster };

async function show() {
  stop();
  stop = () => {};
  generation += 1;
  const { page, params } = route();
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  const f = PAGES[page] || explore;
  document.title = `Pharos · ${page}`;
  try {
    await f(params);
  } catch (err) {
    main.innerHTML = `<pre class="error">${esc(err.message)}</pre>`;
  }
}

document.getElementById("token").onclick = () => {
  const t = prompt("API token (empty to clear); kept in this browser's local storage", token());
  if (t !== null) {
    if (t) localStorage.setItem("pharos.token", t); else localStorage.removeItem("pharos.token");
    show();
  }
};
window.addEventListener("hashchange", show);
show();
