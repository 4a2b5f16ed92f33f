// streamml dashboard: polls the JSON API and draws with the bundled uPlot.
(function () {
  "use strict";
  const PALETTE = ["#5aa9ff", "#3ecf8e", "#f5b642", "#ff6b6b", "#b58cff", "#4dd6d6", "#ff8fd0", "#c0d060"];
  const state = { charts: {}, series: null, overview: null, dlq: [], polls: 0, errors: 0 };
  window.streamml = state;

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  const fmt = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v)) ? "–" :
    Math.abs(v) >= 1e6 ? (v / 1e6).toFixed(1) + "M" : Math.abs(v) >= 1e4 ? (v / 1e3).toFixed(1) + "k" :
    Number(v).toFixed(Number.isInteger(v) ? 0 : d);
  const time = (ms) => ms ? new Date(ms).toLocaleTimeString() : "–";

  function axisStyle() {
    return { stroke: "#8b97ad", grid: { stroke: "#202a40", width: 1 }, ticks: { stroke: "#263049", width: 1 } };
  }

  // A chart is (re)built when its set of series changes, otherwise just fed new data.
  function draw(id, names, x, ys, opts = {}) {
    const el = $(id);
    const key = names.join("|");
    const points = x.length;
    el.dataset.points = String(points);
    el.dataset.series = key;
    if (!points || ys.every((y) => y.every((v) => v === null || v === undefined))) {
      if (!state.charts[id]) el.innerHTML = '<div class="empty">waiting for data…</div>';
      return;
    }
    const data = [x, ...ys];
    let c = state.charts[id];
    if (c && c._key === key) { c.setData(data); showLast(c); return; }
    if (c) c.destroy();
    el.innerHTML = "";
    const series = [{}].concat(names.map((n, i) => ({
      label: n, stroke: (opts.colors || PALETTE)[i % PALETTE.length], width: opts.widths ? opts.widths[i] : 2,
      dash: opts.dashes ? opts.dashes[i] : undefined, spanGaps: true,
      points: { show: points < 40, size: 4 },
      value: (u, v) => v == null ? "–" : fmt(v, opts.digits ?? 1),
    })));
    c = new uPlot({
      width: Math.max(300, el.clientWidth - 4), height: opts.height || 220, series,
      scales: { x: { time: true }, y: opts.yrange ? { range: opts.yrange } : { auto: true } },
      axes: [Object.assign(axisStyle(), { space: 70 }), Object.assign(axisStyle(), { size: 56, values: (u, vals) => vals.map((v) => fmt(v, opts.digits ?? 1)) })],
      legend: { live: true }, cursor: { drag: { x: true, y: false } },
    }, data, el);
    c._key = key;
    state.charts[id] = c;
    showLast(c);
  }

  // With the cursor away from a chart, its legend shows the newest values.
  function showLast(c) {
    if (c.cursor.left == null || c.cursor.left < 0) c.setLegend({ idx: c.data[0].length - 1 });
  }

  function charts(s) {
    const x = s.ts;
    const comps = Object.keys(s.components).filter((c) => !c.startsWith("monitor."));
    draw("chart-rate", ["total", ...comps], x, [s.rate, ...comps.map((c) => s.components[c])],
      { widths: [3].concat(comps.map(() => 1.5)), dashes: [undefined].concat(comps.map(() => [4, 3])) });
    // the headline: ingest -> prediction, the latency the pipeline controls
    draw("chart-latency", ["p50", "p95", "p99"], x, [s.p50, s.p95, s.p99], { colors: ["#3ecf8e", "#f5b642", "#ff6b6b"] });
    // event time -> prediction: also counts how late the events reached ingest, so it is its own figure
    const ev = s.event_lag || {};
    draw("chart-event-lag", ["lag p50", "lag p95", "lag p99"], x, [ev.p50 || [], ev.p95 || [], ev.p99 || []],
      { colors: ["#4dd6d6", "#b58cff", "#ff8fd0"], digits: 0 });
    draw("chart-lag", ["lag"], x, [s.lag], { colors: ["#b58cff"], digits: 0 });
    const feats = Object.keys(s.drift);
    const thr = x.map(() => 0.2);
    draw("chart-drift", [...feats, "threshold"], x, [...feats.map((f) => s.drift[f]), thr],
      { colors: PALETTE.slice(0, feats.length).concat(["#ff6b6b"]), dashes: feats.map(() => undefined).concat([[6, 4]]),
        widths: feats.map(() => 2).concat([1]), digits: 2 });
    draw("chart-quality", ["recall", "precision", "ROC AUC"], x, [s.quality.recall, s.quality.precision, s.quality.auc],
      { colors: ["#5aa9ff", "#3ecf8e", "#f5b642"], digits: 3, yrange: [0, 1.02] });
  }

  function last(arr) { for (let i = arr.length - 1; i >= 0; i--) if (arr[i] !== null && arr[i] !== undefined) return arr[i]; return null; }

  function kpis(s, o) {
    if (s) {
      $("kpi-rate").textContent = fmt(last(s.rate), 0);
      $("kpi-p95").textContent = fmt(last(s.p95), 1);
      $("kpi-event-lag").textContent = fmt(last((s.event_lag || {}).p95 || []), 0);
      const feats = Object.keys(s.drift);
      const cur = feats.map((f) => [f, last(s.drift[f])]).filter((p) => p[1] !== null).sort((a, b) => b[1] - a[1]);
      const el = $("kpi-psi");
      if (cur.length) {
        el.textContent = cur[0][1].toFixed(2);
        el.className = "value " + (cur[0][1] > 0.2 ? "bad" : cur[0][1] > 0.1 ? "warn" : "good");
        $("kpi-psi-unit").textContent = cur[0][0] + " · threshold 0.2";
      }
      const r = last(s.quality.recall), p = last(s.quality.precision);
      if (r !== null) $("kpi-quality").textContent = r.toFixed(2) + " / " + (p ?? 0).toFixed(2);
    }
    if (o) {
      $("kpi-lag").textContent = fmt(o.lag_total, 0);
      const prod = [];
      for (const [name, versions] of Object.entries(o.models || {})) {
        const v = versions.find((d) => (d.serving || []).includes("production")) || versions.find((d) => d.stage === "production");
        if (v) prod.push(name + " @ v" + v.version);
      }
      $("kpi-model").textContent = prod.length ? prod[0] : "none";
      $("kpi-model-unit").textContent = prod.length > 1 ? "+" + (prod.length - 1) + " more" : "model @ version";
      const mon = (o.monitors || [])[0];
      if (mon && mon.quality && mon.quality.n) $("kpi-quality-unit").textContent = mon.quality.n + " labelled predictions";
    }
  }

  function rows(id, list, render, empty) {
    const tb = $(id).querySelector("tbody");
    tb.innerHTML = list.length ? list.map(render).join("") :
      '<tr><td class="muted" colspan="8">' + esc(empty) + "</td></tr>";
  }

  function tables(o) {
    $("ns").textContent = o.namespace;
    rows("components", o.components, (c) => `<tr><td><code>${esc(c.component)}</code></td><td class="num">${fmt(c.records, 0)}</td>
      <td class="num">${fmt(c.rate, 1)}</td><td class="num">${fmt(c.p50)}</td><td class="num">${fmt(c.p95)}</td>
      <td class="num">${fmt(c.p99)}</td><td class="num">${fmt(c.errors, 0)}</td><td class="num">${fmt(c.dlq, 0)}</td></tr>`,
      "no component has reported yet");
    const models = [];
    for (const versions of Object.values(o.models || {})) models.push(...versions);
    rows("models", models, (d) => {
      const metric = d.decision && d.decision.metric ? d.decision.metric : Object.keys(d.metrics || {})[0];
      const score = metric && d.metrics ? d.metrics[metric] : null;
      const dec = d.decision && d.decision.promoted !== undefined ?
        (d.decision.promoted ? "promoted" : "kept champion") +
        (d.decision.production != null ? ` (${fmt(d.decision.candidate, 3)} vs ${fmt(d.decision.production, 3)})` : "") : "–";
      const ranges = (d.training || []).map((r) => `${esc(r.topic)}[${r.partition}] ${r.start}…${r.end}`).join("<br>");
      const stage = (d.serving && d.serving.length ? d.serving[0] : d.stage) || "";
      return `<tr><td><b>${esc(d.name)}</b></td><td>v${esc(d.version)}</td><td><span class="pill ${esc(stage)}">${esc(stage)}</span></td>
        <td>${metric ? esc(metric) + " " + fmt(score, 3) : "–"}</td><td>${esc(dec)}<div class="muted">${esc((d.decision || {}).reason || "")}</div></td>
        <td><code>${ranges || "–"}</code>${d.train_rows ? `<div class="muted">${fmt(d.train_rows, 0)} rows</div>` : ""}</td>
        <td>${time(d.created_at)}</td></tr>`;
    }, "no model published yet");
    rows("control", o.control || [], (c) => `<tr><td>${time(c.at)}</td>
      <td><span class="pill ${c.command === "retrain" ? "retrain" : "alert"}">${esc(c.command || c.type || "?")}</span></td>
      <td>${esc(c.model)}</td><td class="reason">${esc(c.reason)}</td></tr>`, "no alerts");
    rows("lag", (o.lag || []).slice(0, 30), (r) => `<tr><td><code>${esc(r.group)}</code></td><td><code>${esc(r.topic)}</code></td>
      <td class="num">${r.partition}</td><td class="num">${fmt(r.committed, 0)}</td><td class="num">${fmt(r.lag, 0)}</td></tr>`,
      "no committed consumer offsets");
  }

  function dlq(list) {
    rows("dlq", list.slice(0, 25), (d) => `<tr><td>${time(d.ts)}</td><td><code>${esc(d.component)}</code></td>
      <td class="reason" title="${esc(d.value)}">${esc(d.reason)}</td><td class="muted">${esc(d.source)}</td></tr>`, "no dead letters");
  }

  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store" });
    if (!r.ok) throw new Error(url + " " + r.status);
    return r.json();
  }

  async function tick() {
    try {
      const [s, o] = await Promise.all([getJSON("/api/series"), getJSON("/api/overview")]);
      state.series = s; state.overview = o; state.polls++;
      charts(s); kpis(s, o); tables(o);
      if (state.polls % 3 === 1) { state.dlq = await getJSON("/api/dlq"); dlq(state.dlq); }
      $("live").className = "dot ok";
      $("updated").textContent = "live · " + s.ts.length + " points · updated " + new Date().toLocaleTimeString();
    } catch (e) {
      state.errors++;
      $("live").className = "dot err";
      $("updated").textContent = "cannot reach the dashboard API (" + e.message + ")";
    }
  }

  window.addEventListener("resize", () => {
    for (const [id, c] of Object.entries(state.charts)) c.setSize({ width: Math.max(300, $(id).clientWidth - 4), height: c.height });
  });
  tick();
  setInterval(tick, 2000);
})();
