// Polls the experiment role every 2 s: the table from /api/experiments, each experiment's
// curves from /api/curves (the metrics store). uPlot draws; each chart's element carries the
// number of points it shows (data-points), which the browser test reads.
"use strict";

const CURVES = [
  ["charts/episodic_return", "training return", "#1565c0"],
  ["charts/eval_return", "evaluation return", "#2e7d32"],
  ["losses/td_loss", "TD loss", "#6a1b9a"],
];
const charts = {};     // experiment id -> {metric: uPlot}
const lastSteps = {};  // experiment id -> [env steps, time] of the previous poll, for the rate

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
}

function fmt(x, digits = 1) {
  return x === null || x === undefined ? "-" : Number(x).toFixed(digits);
}

function rate(s) {
  const now = Date.now() / 1000, before = lastSteps[s.experimentId];
  lastSteps[s.experimentId] = [s.envSteps, now];
  return before && now > before[1] ? (s.envSteps - before[0]) / (now - before[1]) : null;
}

function showTable(statuses) {
  const body = document.getElementById("experiments");
  body.replaceChildren();
  for (const s of statuses) {
    const row = body.insertRow();
    row.id = "row-" + s.experimentId;
    cell(row, s.experimentId);
    cell(row, s.phase, "text phase-" + s.phase);
    cell(row, s.message, "text");
    cell(row, s.envId, "text");
    cell(row, (s.environmentReplicas || []).length);
    cell(row, s.envSteps);
    cell(row, fmt(rate(s), 0));
    cell(row, s.episodes);
    cell(row, fmt(s.meanReturn));
    cell(row, fmt(s.evalReturn));
    cell(row, fmt(s.resultReturn));
    cell(row, s.policyVersion);
  }
}

function chartFor(experimentId, metric, label, color) {
  charts[experimentId] = charts[experimentId] || {};
  if (charts[experimentId][metric]) return charts[experimentId][metric];
  let section = document.getElementById("curves-" + experimentId);
  if (!section) {
    section = document.createElement("div");
    section.id = "curves-" + experimentId;
    section.className = "experiment";
    section.innerHTML = "<h2></h2><div class='charts'></div>";
    section.querySelector("h2").textContent = experimentId;
    document.getElementById("curves").appendChild(section);
  }
  const holder = document.createElement("div");
  holder.className = "curve";
  holder.dataset.experiment = experimentId;
  holder.dataset.metric = metric;
  holder.dataset.points = "0";
  section.querySelector(".charts").appendChild(holder);
  const opts = {
    title: label, width: 420, height: 240,
    scales: { x: { time: false } },
    axes: [{ label: "env steps" }, {}],
    series: [{}, { label: label, stroke: color, width: 1.5 }],
  };
  const chart = new uPlot(opts, [[], []], holder);
  chart.holder = holder;
  charts[experimentId][metric] = chart;
  return chart;
}

async function showCurves(experimentId) {
  const reply = await fetch("api/curves?experiment=" + encodeURIComponent(experimentId));
  if (!reply.ok) throw new Error("curves: " + (await reply.text()));
  const curves = await reply.json();
  for (const [metric, label, color] of CURVES) {
    const points = (curves[metric] || []).slice().sort((a, b) => a[0] - b[0]);
    const chart = chartFor(experimentId, metric, label, color);
    chart.setData([points.map(p => p[0]), points.map(p => p[1])]);
    chart.holder.dataset.points = String(points.length);
  }
}

async function poll() {
  const error = document.getElementById("error");
  try {
    const reply = await fetch("api/experiments");
    if (!reply.ok) throw new Error("experiments: " + (await reply.text()));
    const statuses = await reply.json();
    showTable(statuses);
    await Promise.all(statuses.map(s => showCurves(s.experimentId)));
    error.textContent = "";
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (err) {
    error.textContent = String(err);
  }
  setTimeout(poll, 2000);
}

poll();
