// The cost dashboard: polls figures.json and draws it with Chart.js (vendored, no network).
// Each chart's canvas also holds its figures as a table: what screen readers read, and what the tests check.
"use strict";

const PALETTE = ["#12b76a", "#f79009", "#2e90fa", "#9e77ed", "#ee46bc", "#667085", "#15b79e", "#ef6820"];
const OUTCOME_COLOURS = {completed: "#12b76a", failed: "#d92d20", cancelled: "#98a2b3"};
const charts = {};
let refreshes = 0;

function chosenDays() {
  const days = new URLSearchParams(location.search).get("days");
  return /^\d+$/.test(days || "") ? Number(days) : 7;
}

function usd(value, digits) {
  return "$" + Number(value || 0).toFixed(digits === undefined ? 4 : digits);
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 120 ? value.toFixed(1) + " s" : (value / 60).toFixed(1) + " min";
}

function clock(at) {
  return new Date(at * 1000).toLocaleString([], {month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"});
}

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function sum(values) {
  return values.reduce((total, value) => total + (value || 0), 0);
}

function barDatasets(series, colours) {
  return Object.keys(series).sort().map((name, i) => ({
    label: name, data: series[name], stack: "spend",
    backgroundColor: (colours && colours[name]) || PALETTE[i % PALETTE.length],
  }));
}

function capLine(label, value, length, colour, dashed) {
  return {type: "line", label: label, data: new Array(length).fill(value), stack: label, borderColor: colour,
          borderDash: dashed ? [6, 4] : [], borderWidth: 2, pointRadius: 0, fill: false};
}

// One table inside the canvas: the chart's own numbers, one row per day.
function fallbackTable(canvas, axis, datasets, format) {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  ["day"].concat(datasets.map((d) => d.label)).forEach((label) => {
    const cell = document.createElement("th");
    cell.textContent = label;
    head.appendChild(cell);
  });
  const body = table.createTBody();
  axis.forEach((day, i) => {
    const row = body.insertRow();
    row.insertCell().textContent = day;
    datasets.forEach((d) => { row.insertCell().textContent = format(d.data[i]); });
  });
  canvas.replaceChildren(table);
}

function draw(id, type, axis, datasets, format, stacked) {
  const canvas = document.getElementById(id);
  fallbackTable(canvas, axis, datasets, format);
  canvas.setAttribute("aria-label", canvas.closest("figure").querySelector("figcaption").textContent);
  canvas.setAttribute("role", "img");
  if (charts[id]) {   // live refresh: new numbers, same chart, no animation
    charts[id].data.labels = axis;
    charts[id].data.datasets = datasets;
    charts[id].update("none");
    return;
  }
  charts[id] = new Chart(canvas, {
    type: type, data: {labels: axis, datasets: datasets},
    options: {animation: false, responsive: true, maintainAspectRatio: false, interaction: {mode: "index"},
              plugins: {legend: {position: "bottom", labels: {boxWidth: 12}},
                        tooltip: {callbacks: {label: (c) => c.dataset.label + ": " + format(c.raw)}}},
              scales: {x: {stacked: stacked}, y: {stacked: stacked, beginAtZero: true,
                                                  ticks: {callback: (v) => format(v)}}}},
  });
}

function barWidth(id, spent, cap, warnAt) {
  const bar = document.getElementById(id);
  const share = cap > 0 ? spent / cap : (spent > 0 ? 1 : 0);
  bar.style.width = Math.min(100, share * 100).toFixed(1) + "%";
  bar.className = share >= 1 ? "over" : (warnAt.some((w) => share >= w) ? "warn" : "");
}

function render(figures) {
  const axis = figures.axis, budget = figures.budget, warnAt = budget.warn_at || [];
  const money = (v) => usd(v), count = (v) => String(v || 0);

  text("card-today", usd(budget.spent_today_usd) + " of " + usd(budget.daily_cap_usd, 2));
  text("card-month", usd(budget.spent_month_usd) + " of " + usd(budget.monthly_cap_usd, 2));
  barWidth("bar-today", budget.spent_today_usd, budget.daily_cap_usd, warnAt);
  barWidth("bar-month", budget.spent_month_usd, budget.monthly_cap_usd, warnAt);
  text("card-calls", sum(figures.calls.free) + " free · " + sum(figures.calls.paid) + " paid");
  text("card-moments", String(figures.escalations.count));
  const outcomes = figures.tasks_by_outcome;
  text("card-tasks", Object.keys(outcomes).map((o) => sum(outcomes[o]) + " " + o).join(" · "));
  const medians = figures.latency.total_p50_s.filter((v) => v !== null);
  text("card-latency", medians.length ? seconds(medians[medians.length - 1]) + " (latest day)" : "–");

  const tiers = barDatasets(figures.spend_by_tier);
  tiers.push(capLine("daily cap", budget.daily_cap_usd, axis.length, "#d92d20", false));
  warnAt.forEach((share) => tiers.push(capLine("warn at " + Math.round(share * 100) + "%",
                                               share * budget.daily_cap_usd, axis.length, "#f79009", true)));
  draw("chart-tier", "bar", axis, tiers, money, true);

  const month = [{type: "line", label: "paid, month to date", data: budget.month_cumulative_usd, stack: "spent",
                  borderColor: "#f79009", backgroundColor: "rgba(247,144,9,.15)", fill: true, pointRadius: 2},
                 capLine("monthly cap", budget.monthly_cap_usd, budget.month_axis.length, "#d92d20", false)];
  warnAt.forEach((share) => month.push(capLine("warn at " + Math.round(share * 100) + "%",
                                               share * budget.monthly_cap_usd, budget.month_axis.length, "#f79009", true)));
  draw("chart-month", "line", budget.month_axis, month, money, false);

  draw("chart-executor", "bar", axis, barDatasets(figures.spend_by_executor), money, true);
  draw("chart-calls", "bar", axis, barDatasets(figures.calls, {free: "#12b76a", paid: "#f79009"}), count, true);
  draw("chart-moments", "bar", axis, barDatasets(figures.escalations.per_day, {asked: "#2e90fa", fallback: "#f79009"}),
       count, true);
  draw("chart-tasks", "bar", axis, barDatasets(outcomes, OUTCOME_COLOURS), count, true);
  const latency = figures.latency;
  draw("chart-latency", "line", axis, [
    {label: "p50 created → completed", data: latency.total_p50_s, borderColor: "#2e90fa", spanGaps: true},
    {label: "p95 created → completed", data: latency.total_p95_s, borderColor: "#2e90fa", borderDash: [6, 4], spanGaps: true},
    {label: "p50 last run", data: latency.run_p50_s, borderColor: "#12b76a", spanGaps: true},
    {label: "p95 last run", data: latency.run_p95_s, borderColor: "#12b76a", borderDash: [6, 4], spanGaps: true},
  ], seconds, false);

  const rows = document.querySelector("#moments tbody");
  rows.replaceChildren(...figures.escalations.latest.map((m) => {
    const row = document.createElement("tr");
    [clock(m.at), m.task_id ? "#" + m.task_id : "–", m.where, m.reason].forEach((value) => {
      row.insertCell().textContent = value;
    });
    return row;
  }));
  const warnings = document.getElementById("warnings");
  warnings.replaceChildren(...(figures.warnings.length ? figures.warnings : [{at: null, text: "none"}]).map((w) => {
    const item = document.createElement("li");
    item.textContent = (w.at ? clock(w.at) + " " : "") + w.text;
    return item;
  }));
}

async function refresh() {
  const days = chosenDays();
  let wait = 5;
  try {
    const answer = await fetch("/dashboard/figures.json?days=" + days, {credentials: "same-origin", cache: "no-store"});
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error || answer.status);
    render(body);
    wait = body.refresh_s;
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    text("updated", "updated " + new Date().toLocaleTimeString() + " · every " + wait + " s");
    document.getElementById("updated").className = "";
  } catch (error) {
    text("updated", "could not read the figures: " + error.message);
    document.getElementById("updated").className = "error";
  }
  setTimeout(refresh, wait * 1000);
}

document.querySelectorAll("#periods a").forEach((link) => {
  link.classList.toggle("chosen", Number(link.dataset.days) === chosenDays());
});
refresh();
