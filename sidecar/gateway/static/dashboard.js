// The gateway's dashboard: fetches /dashboard/data for the chosen range and draws it with uPlot.
// Each chart container records the sum of what it plots (data-sum) so a test can check it.
"use strict";

const COLORS = ["#4a7bd0", "#d0734a", "#4ab38a", "#a04ad0", "#d0b84a", "#4ac1d0", "#d04a7b"];
const charts = {};
let range = "24h";

function fmt(n, digits) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits });
}

function sumOf(result) {
  let total = 0;
  for (const s of result.series) for (const [, v] of s.points) total += v || 0;
  return total;
}

function label(result, s) {
  if (!result.group_by) return "all";
  return s.key === undefined || s.key === null ? "host" : s.key;  // no client key: the host's own requests
}

function draw(id, result, digits) {
  const el = document.getElementById(id);
  if (charts[id]) { charts[id].destroy(); delete charts[id]; }
  el.textContent = "";
  el.dataset.sum = String(Math.round(sumOf(result) * 1e6) / 1e6);
  el.dataset.series = result.series.map((s) => label(result, s)).join(",");
  const xs = result.series.length ? result.series[0].points.map(([t]) => t) : [];
  const data = [xs, ...result.series.map((s) => s.points.map(([, v]) => v))];
  const series = [{}, ...result.series.map((s, i) => ({
    label: label(result, s),
    stroke: COLORS[i % COLORS.length],
    fill: result.series.length === 1 ? "rgba(74,123,208,0.15)" : undefined,
    width: 2,
    value: (u, v) => fmt(v, digits),
  }))];
  const width = Math.max(el.clientWidth, 300);
  charts[id] = new uPlot({ width, height: 220, series, scales: { x: { time: true } },
                           axes: [{}, { size: 70, values: (u, ticks) => ticks.map((v) => fmt(v, digits)) }] },
                         data, el);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  return tr;
}

async function load() {
  document.body.dataset.ready = "0";
  const res = await fetch("/dashboard/data?range=" + encodeURIComponent(range), { credentials: "same-origin" });
  if (!res.ok) { document.body.dataset.error = String(res.status); return; }
  const d = await res.json();
  document.getElementById("total-requests").textContent = fmt(d.totals.requests);
  document.getElementById("total-tokens").textContent = fmt(d.totals.tokens);
  document.getElementById("total-cost").textContent = fmt(d.totals.cost_usd, 6);
  document.getElementById("success-rate").textContent =
    d.totals.success_rate === null ? "–" : fmt(d.totals.success_rate * 100, 1) + " %";
  draw("chart-requests", d.requests);
  draw("chart-tokens-client", d.tokens_by_client);
  draw("chart-cost-provider", d.cost_by_provider, 6);
  draw("chart-requests-provider", d.requests_by_provider);
  const providers = document.querySelector("#providers tbody");
  providers.textContent = "";
  for (const p of d.providers) {
    providers.appendChild(row([[p.id], [p.circuit, p.circuit === "closed" ? "" : "bad"], [fmt(p.requests)],
      [p.success_rate === null ? "–" : fmt(p.success_rate * 100, 1) + " %"]]));
  }
  const recent = document.querySelector("#recent tbody");
  recent.textContent = "";
  for (const r of d.recent) {
    recent.appendChild(row([[r.ts.replace("T", " ").replace("Z", "")], [r.client || ""], [r.model || ""],
      [String(r.status), r.status >= 400 ? "bad" : ""], [fmt(r.total_tokens)], [fmt(r.cost_usd, 6)],
      [fmt(r.latency_ms, 1) + " ms"]]));
  }
  document.body.dataset.ready = "1";
}

for (const b of document.querySelectorAll("#ranges button")) {
  b.addEventListener("click", () => {
    range = b.dataset.range;
    for (const o of document.querySelectorAll("#ranges button")) o.classList.toggle("active", o === b);
    load();
  });
}
load();
setInterval(load, 30000);
