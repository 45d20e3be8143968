// The streammlp dashboard: takes the server's updates (Server-Sent Events) and draws them.
// Each update carries only what changed (see streammlp/dashboard/board.py): new curve points
// (or all of them, with "reset"), markers, the weights' heatmaps and the latest figures.
"use strict";

// Column order of a curve point, as board.COLUMNS; then, with a race, [ew_accuracy, ew_loss] per member.
const COL = {x: 0, accuracy: 1, rolling_accuracy: 2, ew_accuracy: 3, loss: 4, rolling_loss: 5,
             ew_loss: 6, samples_per_s: 7, rejected_total: 8, ts: 9, members: 10};
const SILENT_MS = 12000;  // no update (the server sends one every 5 s at least): the server is gone
const MODELS_REFRESH_MS = 5000;
const LINES = {cumulative: "#1f77b4", rolling: "#e67e22", ew: "#2e8b57", rate: "#6c5ce7"};
const MEMBER_COLORS = ["#1f77b4", "#e67e22", "#2e8b57", "#c0392b", "#8e44ad", "#7f8c8d",
                       "#d4a017", "#17becf", "#bc5090", "#58508d"];

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("streammlp-token") || "",
  model: new URLSearchParams(location.search).get("model") || "",
  order: "active", source: null, lastMessage: 0, rows: [], markers: [], figures: null,
  charts: {}, raceMembers: 0, drawPending: false, modelsTimer: null, keyed: false, updates: 0,
};

const count = (n) => n == null ? "–" : Math.round(n).toLocaleString("en-US");
const percent = (v) => v == null ? "–" : (100 * v).toFixed(1) + " %";
const decimal = (v) => v == null ? "–" : v.toPrecision(4);
const short = (n) => n == null ? "" : Math.abs(n) >= 1e6 ? (n / 1e6).toFixed(n % 1e6 ? 1 : 0) + "M"
  : Math.abs(n) >= 1e3 ? (n / 1e3).toFixed(n % 1e3 ? 1 : 0) + "k" : String(n);

function api(path, params = {}) {
  const url = new URL(path, location.href);
  for (const [k, v] of Object.entries(params)) if (v !== "" && v != null) url.searchParams.set(k, v);
  if (state.token) url.searchParams.set("token", state.token);
  return url;
}

// -- connection ---------------------------------------------------------------------------------

async function start() {
  let reply;
  try {
    reply = await fetch(api("/api/check"));
  } catch (e) {
    setStatus("unreachable", "the dashboard server does not answer; reload to retry");
    return;
  }
  if (reply.status === 401) {
    $("token-form").hidden = false;
    $("token-error").textContent = state.token ? "wrong token" : "";
    return;
  }
  const info = await reply.json();
  $("endpoint").textContent = info.publish;
  $("token-form").hidden = true;
  connect();
}

function connect() {
  if (state.source) state.source.close();
  state.rows = []; state.markers = []; state.figures = null;
  $("viewing").textContent = state.model ? `model ${state.model}` : "service totals";
  document.querySelectorAll("#models tbody tr").forEach(
    (tr) => tr.classList.toggle("selected", tr.dataset.model === state.model));
  state.source = new EventSource(api("/api/stream", {model: state.model}));
  state.source.onmessage = (e) => take(JSON.parse(e.data));
  state.source.onerror = () => setStatus("unreachable",
    "the dashboard server does not answer; retrying");  // EventSource retries by itself
}

setInterval(() => {
  if (state.lastMessage && Date.now() - state.lastMessage > SILENT_MS)
    setStatus("unreachable", "no update from the dashboard server");
}, 2000);

function setStatus(name, detail, since) {
  const el = $("status");
  el.dataset.state = name;
  const at = since ? new Date(since * 1000).toLocaleTimeString() : "";
  el.textContent = name === "live" ? "live"
    : name === "gone" ? `service gone since ${at}: waiting for it`
    : name === "unreachable" ? "dashboard server unreachable" : "connecting…";
  el.title = detail || "";
}

// -- one update ---------------------------------------------------------------------------------

function take(msg) {
  state.lastMessage = Date.now();
  state.updates++;
  setStatus(msg.status.state, msg.status.detail, msg.status.since);
  if (msg.keyed && !state.keyed) {
    state.keyed = true;
    $("picker").hidden = false;
    loadModels();
  }
  const board = msg.board;
  if (board.points.reset) state.rows = [];
  for (const row of board.points.rows) state.rows.push(row);
  if (board.markers) {
    state.markers = board.markers;
    document.body.dataset.restarts = board.markers.filter((m) => m.kind === "restart").length;
    document.body.dataset.drifts = board.markers.filter((m) => m.kind === "drift").length;
  }
  if (board.figures) showFigures(board.figures);
  if ("weights" in board) drawHeatmaps(board.weights);
  if (!state.drawPending) {
    state.drawPending = true;
    requestAnimationFrame(() => { state.drawPending = false; drawCharts(); });
  }
}

function showFigures(f) {
  state.figures = f;
  $("samples").textContent = count(f.samples);
  $("samples").dataset.value = f.samples ?? "";
  $("rate").textContent = count(f.samples_per_s);
  const rolling = f.rolling_accuracy != null;  // a keyed service's models have exp. weighted ones
  $("accuracy-label").textContent = rolling ? "accuracy (rolling)" : "accuracy (exp. weighted)";
  $("loss-label").textContent = rolling ? "loss (rolling)" : "loss (exp. weighted)";
  $("accuracy").textContent = percent(rolling ? f.rolling_accuracy : f.ew_accuracy);
  $("loss").textContent = decimal(rolling ? f.rolling_loss : f.ew_loss);
  $("rejected-total").textContent = count(f.rejected_total ?? f.rejected);
  $("run").textContent = f.run ? String(f.run).slice(0, 8) : "–";
  if (f.models != null) $("models-total").textContent = `${count(f.models)} in the service`;
  const reasons = Object.entries(f.rejected_by_reason || {}).sort((a, b) => b[1] - a[1]);
  $("rejected").tBodies[0].innerHTML = reasons.length
    ? reasons.map(([r, n]) => `<tr><td>${esc(r)}</td><td>${count(n)}</td></tr>`).join("")
    : `<tr><td colspan="2" class="muted">none</td></tr>`;
  $("rejections").innerHTML = (f.rejections || []).map((r) =>
    `<li>${esc(r.reason)}${r.producer ? " from " + esc(r.producer) : ""}: ${esc(r.error || "")}</li>`
  ).join("");
  drawConfusion(f.confusion);
  showRace(f.race);
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                 '"': "&quot;", "'": "&#39;"}[c]));
}

// -- curves -------------------------------------------------------------------------------------

// Vertical dashed lines where the concept drifted (purple) or the service restarted (red).
const markerPlugin = {hooks: {draw: [(u) => {
  const ctx = u.ctx, dpr = devicePixelRatio || 1;
  ctx.save();
  ctx.font = `${11 * dpr}px system-ui, sans-serif`;
  ctx.setLineDash([5 * dpr, 4 * dpr]);
  ctx.lineWidth = 1.5 * dpr;
  for (const m of state.markers) {
    const x = u.valToPos(m.x, "x", true);
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
    ctx.strokeStyle = ctx.fillStyle = m.kind === "restart" ? "#c0392b" : "#8e44ad";
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.fillText(m.label, x + 4 * dpr, u.bbox.top + 12 * dpr);
  }
  ctx.restore();
}]}};

function makeChart(id, series, yRange, yFormat) {
  const el = $(id);
  return new uPlot({
    width: Math.max(300, el.clientWidth), height: 230, plugins: [markerPlugin],
    scales: {x: {time: false}, y: yRange ? {range: yRange} : {}},
    axes: [{values: (u, vals) => vals.map(short), label: "samples", labelSize: 20},
           {values: (u, vals) => vals.map(yFormat), size: 56}],
    series: [{label: "samples", value: (u, v) => count(v)},
             ...series.map(([label, stroke, width]) => ({label, stroke, width: width || 1.6,
                                                          value: (u, v) => yFormat(v), spanGaps: true}))],
    legend: {live: false},
  }, [[], ...series.map(() => [])], el);
}

function chartsNeeded() {
  if (!state.charts.accuracy) {
    const pct = (v) => v == null ? "–" : Math.round(100 * v) + " %";
    const num = (v) => v == null ? "–" : +v.toPrecision(3);
    state.charts.accuracy = makeChart("chart-accuracy", [["cumulative", LINES.cumulative],
      ["rolling", LINES.rolling, 2], ["exp. weighted", LINES.ew]], [0, 1], pct);
    state.charts.loss = makeChart("chart-loss", [["cumulative", LINES.cumulative],
      ["rolling", LINES.rolling, 2], ["exp. weighted", LINES.ew]], null, num);
    state.charts.rate = makeChart("chart-rate", [["samples/s", LINES.rate, 2]], null, short);
  }
}

function column(rows, i) { return rows.map((r) => r[i]); }

// A series the service does not send (e.g. exp. weighted accuracy) is greyed out in the legend.
function setData(chart, data) {
  data.forEach((values, i) => {
    const has = values.some((v) => v != null);
    if (i && chart.series[i].show !== has) chart.setSeries(i, {show: has});
  });
  chart.setData(data);
}

function drawCharts() {
  chartsNeeded();
  let rows = state.rows;
  const f = state.figures;  // the newest figures as a live point, between kept points
  if (f && (!rows.length || f.x >= rows[rows.length - 1][COL.x])) {
    const same = rows.length && f.x === rows[rows.length - 1][COL.x];
    rows = (same ? rows.slice(0, -1) : rows).concat([[f.x, f.accuracy, f.rolling_accuracy, f.ew_accuracy, f.loss, f.rolling_loss,
                         f.ew_loss, f.samples_per_s, f.rejected_total, f.ts, f.members || []]]);
  }
  const x = column(rows, COL.x);
  setData(state.charts.accuracy, [x, column(rows, COL.accuracy), column(rows, COL.rolling_accuracy),
                                  column(rows, COL.ew_accuracy)]);
  setData(state.charts.loss, [x, column(rows, COL.loss), column(rows, COL.rolling_loss),
                              column(rows, COL.ew_loss)]);
  setData(state.charts.rate, [x, column(rows, COL.samples_per_s)]);
  drawRaceChart(rows, x);
}

// -- weights and confusion as heatmaps ----------------------------------------------------------

function diverging(t) {  // -1 blue, 0 white, +1 red
  const [r, g, b] = t >= 0 ? [178, 24, 43] : [33, 102, 172];
  const a = Math.min(1, Math.abs(t));
  return `rgb(${Math.round(255 + (r - 255) * a)},${Math.round(255 + (g - 255) * a)},${Math.round(255 + (b - 255) * a)})`;
}

function paint(canvas, cells, colour, size) {
  const rows = cells.length, cols = rows ? cells[0].length : 0;
  canvas.width = cols * size; canvas.height = rows * size;
  const ctx = canvas.getContext("2d");
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      ctx.fillStyle = colour(cells[i][j]);
      ctx.fillRect(j * size, i * size, size, size);
    }
  return ctx;
}

function drawHeatmaps(w) {
  const box = $("heatmaps"), label = $("weights-version");
  if (!w) {
    box.innerHTML = "";
    label.textContent = "no weights yet";
    label.dataset.value = "";
    return;
  }
  label.textContent = `version ${count(w.version)}` + (w.member != null ? `, race leader: member ${w.member}` : "");
  label.dataset.value = w.version;
  if (box.children.length !== w.layers.length) {
    box.innerHTML = w.layers.map(() => `<figure><canvas class="heat"></canvas><figcaption></figcaption></figure>`).join("");
  }
  w.layers.forEach((layer, i) => {
    const fig = box.children[i], rows = layer.cells.length, cols = layer.cells[0].length;
    const size = Math.max(2, Math.min(24, Math.floor(Math.min(600 / cols, 360 / rows))));
    const m = layer.absmax || 1;
    paint(fig.querySelector("canvas"), layer.cells, (v) => diverging(v / m), size);
    fig.querySelector("figcaption").textContent =
      `layer ${i + 1}: ${layer.shape[0]} → ${layer.shape[1]} units, |w| ≤ ${layer.absmax.toPrecision(3)}`;
  });
}

function drawConfusion(confusion) {
  const box = $("confusion");
  if (!confusion || !confusion.length) { box.innerHTML = `<p class="muted">none</p>`; return; }
  let canvas = box.querySelector("canvas");
  if (!canvas) { box.innerHTML = `<canvas class="heat"></canvas>`; canvas = box.querySelector("canvas"); }
  const n = confusion.length, size = Math.max(16, Math.min(56, Math.floor(220 / n)));
  const shares = confusion.map((row) => { const s = row.reduce((a, b) => a + b, 0) || 1; return row.map((c) => c / s); });
  const ctx = paint(canvas, shares, (v) => `rgb(${Math.round(255 - 222 * v)},${Math.round(255 - 153 * v)},${Math.round(255 - 83 * v)})`, size);
  if (size >= 28) {  // the counts, where they fit
    ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    confusion.forEach((row, i) => row.forEach((c, j) => {
      ctx.fillStyle = shares[i][j] > 0.55 ? "#fff" : "#1d2330";
      ctx.fillText(short(c), (j + 0.5) * size, (i + 0.5) * size);
    }));
  }
}

// -- the race -----------------------------------------------------------------------------------

function showRace(race) {
  $("race").hidden = !race;
  if (!race) return;
  $("race-leader").textContent = `leader: member ${race.leader}, by ${race.by} over a window of ${count(race.window)}`;
  $("race-members").tBodies[0].innerHTML = race.members.map((m) =>
    `<tr class="${m.member === race.leader ? "leader" : ""}"><td>${m.member}</td><td>${esc((m.layers || []).join("-"))}</td>` +
    `<td>${m.lr}</td><td>${percent(m.ew_accuracy)}</td><td>${decimal(m.ew_loss)}</td>` +
    `<td>${percent(m.accuracy)}</td><td>${decimal(m.loss)}</td></tr>`).join("");
}

function drawRaceChart(rows, x) {
  const members = rows.length ? (rows[rows.length - 1][COL.members] || []).length : 0;
  if (!members) return;
  if (members !== state.raceMembers) {  // one line per member: made afresh when their number changes
    if (state.charts.race) state.charts.race.destroy();
    const labels = (state.figures?.race?.members || []).map((m) => `${m.member}: ${(m.layers || []).join("-")} lr ${m.lr}`);
    state.charts.race = makeChart("chart-race", Array.from({length: members}, (_, k) =>
      [labels[k] || `member ${k}`, MEMBER_COLORS[k % MEMBER_COLORS.length]]), [0, 1],
      (v) => v == null ? "–" : Math.round(100 * v) + " %");
    state.raceMembers = members;
  }
  const series = Array.from({length: members}, (_, k) =>
    rows.map((r) => (r[COL.members] && r[COL.members][k]) ? r[COL.members][k][0] : null));
  state.charts.race.setData([x, ...series]);
}

// -- the model picker (a keyed service) ---------------------------------------------------------

async function loadModels() {
  clearTimeout(state.modelsTimer);
  state.modelsTimer = setTimeout(loadModels, MODELS_REFRESH_MS);
  let page;
  try {
    const reply = await fetch(api("/api/models", {order: state.order, search: $("search").value.trim()}));
    page = await reply.json();
    if (!reply.ok) { $("models-note").textContent = page.error; return; }
  } catch (e) {
    $("models-note").textContent = "the list of models is not available now";
    return;
  }
  $("models").tBodies[0].innerHTML = page.models.map((m) =>
    `<tr data-model="${esc(m.model)}" class="${m.model === state.model ? "selected" : ""}">` +
    `<td>${esc(m.model)}</td><td>${count(m.samples)}</td><td>${percent(m.accuracy)}</td>` +
    `<td>${percent(m.ew_accuracy)}</td><td>${decimal(m.ew_loss)}</td></tr>`).join("");
  $("models-note").textContent = `${page.models.length} of ${count(page.total)}` +
    ($("search").value.trim() ? " matching" : "");
}

function selectModel(key) {
  state.model = key;
  const url = new URL(location.href);
  if (key) url.searchParams.set("model", key); else url.searchParams.delete("model");
  history.replaceState(null, "", url);
  connect();
}

$("models").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-model]");
  if (tr) selectModel(tr.dataset.model);
});
$("show-service").addEventListener("click", () => selectModel(""));
document.querySelectorAll("button.order").forEach((b) => b.addEventListener("click", () => {
  state.order = b.dataset.order;
  document.querySelectorAll("button.order").forEach((o) => o.classList.toggle("selected", o === b));
  loadModels();
}));
let searchTimer = null;
$("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(loadModels, 300); });

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value;
  sessionStorage.setItem("streammlp-token", state.token);
  start();
});

window.addEventListener("resize", () => {
  for (const chart of Object.values(state.charts))
    chart.setSize({width: Math.max(300, chart.root.parentElement.clientWidth), height: 230});
});

start();
