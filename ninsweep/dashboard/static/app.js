// ninsweep's experiment page: draws the views the server (or the HTML report) hands it.
// Every number and every word comes from ninsweep's analysis (ninsweep/dashboard/views.py);
// this script lays them out, draws them with plotly.js and, live, polls for what is new.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("ninsweep-config").textContent);
  const embedded = document.getElementById("ninsweep-data");
  const staticData = embedded ? JSON.parse(embedded.textContent) : null;
  const plotConfig = { displaylogo: false, responsive: true };
  let view = null;
  let version = -1;
  let metric = null;
  let logTouched = false;
  let curvesVersion = -1;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  const NUMERIC = /^[-+−]?[0-9.,]+(%|s)?$|^<0\.001$|^-$/;

  function fillTable(id, head, rows, decorate) {
    const table = document.getElementById(id);
    table.replaceChildren();
    const thead = el("thead");
    const tr = el("tr");
    head.forEach((h) => tr.appendChild(el("th", {}, h)));
    thead.appendChild(tr);
    const tbody = el("tbody");
    rows.forEach((row) => {
      const r = el("tr");
      row.cells.forEach((cell, i) => {
        const td = el("td", { "data-col": head[i] }, cell);
        if (NUMERIC.test(String(cell))) td.classList.add("num");
        r.appendChild(td);
      });
      if (decorate) decorate(r, row);
      tbody.appendChild(r);
    });
    table.append(thead, tbody);
  }

  // A plot, or in its place a note saying why there is none yet.
  function show(div, noteId, drawable, why) {
    const note = document.getElementById(noteId);
    if (!drawable) {
      Plotly.purge(div);
      div.style.display = "none";
      note.textContent = why;
      return false;
    }
    div.style.display = "";
    if (note.dataset.keep === undefined) note.textContent = "";
    return true;
  }

  function renderHeader(v) {
    const e = v.experiment;
    document.getElementById("exp-name").textContent = e.name;
    const facts = [`${e.n_trials} trials`, `objective: ${e.objective.mode} ${e.objective.metric}`];
    if (e.space) facts.unshift(`space ${e.space}`);
    if (e.created) facts.push(`created ${e.created}`);
    facts.push(`${e.epochs_left} trial-epochs left`);
    document.getElementById("facts").textContent = facts.join(" · ");
    const counts = document.getElementById("counts");
    counts.replaceChildren();
    e.counts.forEach((c) => {
      const span = el("span", { class: `count status-${c.status}`, "data-status": c.status }, `${c.n} ${c.status}`);
      counts.appendChild(span);
    });
    document.getElementById("convention").textContent = v.error_convention;
  }

  function renderTrials(v) {
    fillTable("trials-table", v.trials.head, v.trials.rows, (tr, row) => {
      tr.dataset.trial = row.cells[0];
      tr.dataset.status = row.status;
      const status = tr.querySelector('td[data-col="status"]');
      if (status) status.classList.add(`status-${row.status}`);
      if (row.error) {
        const td = tr.lastChild;
        td.appendChild(el("div", { class: "error-line" }, row.error));
      }
    });
  }

  function renderConfigs(v) {
    fillTable("configs-table", v.configs.head, v.configs.rows, (tr, row) => {
      tr.dataset.config = row.values.config;
      if (row.best) tr.classList.add("best");
    });
  }

  function renderEffects(v) {
    const eff = v.effects;
    document.getElementById("design").textContent = eff.design;
    fillTable("effects-table", eff.head, eff.rows);
    const rows = eff.rows.filter((r) => (r.kind === "main" || r.kind === "interaction") && r.effect !== null);
    const forest = document.getElementById("forest");
    if (!show(forest, "forest-note", rows.length > 0,
              "No factor effects yet: they need finished trials at two levels of a factor.")) return;
    const traces = [];
    const groups = [
      ["main effect, 95% CI", (r) => r.kind === "main" && r.lo !== null, "#1f77b4", "circle"],
      ["interaction, 95% CI", (r) => r.kind === "interaction" && r.lo !== null, "#8e44ad", "diamond"],
      ["no interval (one seed per cell)", (r) => r.lo === null, "#555", "circle-open"],
    ];
    groups.forEach(([name, pick, color, symbol]) => {
      const sel = rows.filter(pick);
      if (!sel.length) return;
      traces.push({
        type: "scatter", mode: "markers", name: name, x: sel.map((r) => r.effect), y: sel.map((r) => r.label),
        marker: { color: color, size: 9, symbol: symbol },
        error_x: { type: "data", symmetric: false, array: sel.map((r) => (r.hi === null ? 0 : r.hi - r.effect)),
          arrayminus: sel.map((r) => (r.lo === null ? 0 : r.effect - r.lo)), color: color, thickness: 2, width: 5 },
        hovertemplate: "%{y}<br>effect %{x:+.2f}<extra></extra>",
      });
    });
    const layout = {
      margin: { l: 260, r: 20, t: 20, b: 50 }, height: Math.max(260, 34 * rows.length + 110),
      xaxis: { title: { text: eff.axis }, zeroline: true, zerolinewidth: 2, zerolinecolor: "#444" },
      yaxis: { autorange: "reversed", type: "category", categoryorder: "array", categoryarray: rows.map((r) => r.label) },
      legend: { orientation: "h", y: -0.25 }, uirevision: "forest",
    };
    Plotly.react(forest, traces, layout, plotConfig);
  }

  // Parallel coordinates. Drawn as SVG lines by default (one scatter trace per colour band:
  // fast everywhere, no WebGL needed); "brushing" switches to plotly's parcoords trace
  // (WebGL: select ranges on the axes).
  let brushing = false;
  const VIRIDIS = ["#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725"];

  function renderParcoords(v) {
    const pc = v.parcoords;
    const div = document.getElementById("parcoords");
    const note = document.getElementById("parcoords-note");
    if (!show(div, "parcoords-note", pc.n > 0 && pc.dimensions.length > 0,
              "Nothing to draw yet: needs finished trials and a grid key with more than one level.")) return;
    note.textContent = `One line per finished trial (${pc.n}): its grid keys and its ${pc.objective.label}, ` +
      `coloured by the objective. ${brushing ? "Drag along an axis to select." : "Tick 'brushing' to select ranges (WebGL)."}`;
    if (brushing) {
      const dims = pc.dimensions.map((d) => ({ label: d.label, values: d.values, tickvals: d.tickvals, ticktext: d.ticktext }));
      dims.push({ label: pc.objective.label, values: pc.objective.values });
      const trace = { type: "parcoords", dimensions: dims,
        line: { color: pc.objective.values, colorscale: "Viridis", showscale: true, colorbar: { title: { text: "objective" } } } };
      Plotly.react(div, [trace], { margin: { l: 70, r: 70, t: 50, b: 30 }, height: 380 }, plotConfig);
      return;
    }
    const y = pc.objective.values;
    const finite = y.filter((x) => x !== null);
    const lo = Math.min(...finite), hi = Math.max(...finite);
    const span = hi > lo ? hi - lo : 1;
    const nd = pc.dimensions.length;
    // Each axis spans [0, 1]; a level sits at its index, spread a little per trial so that
    // the lines through it show how many there are.
    const pos = pc.dimensions.map((d) => {
      const k = Math.max(1, d.tickvals.length - 1);
      return d.values.map((code, i) => (code + (((i * 7919) % 101) / 100 - 0.5) * 0.12) / k);
    });
    const bands = VIRIDIS.map(() => ({ x: [], y: [] }));
    y.forEach((value, i) => {
      if (value === null) return;
      const t = (value - lo) / span;
      const band = bands[Math.min(VIRIDIS.length - 1, Math.floor(t * VIRIDIS.length))];
      for (let j = 0; j < nd; j++) { band.x.push(j); band.y.push(pos[j][i]); }
      band.x.push(nd, null); band.y.push(t, null);
    });
    const traces = bands.map((b, i) => ({
      type: "scatter", mode: "lines", x: b.x, y: b.y, hoverinfo: "skip", line: { color: VIRIDIS[i], width: 1 },
      opacity: 0.55, name: `${(lo + span * i / VIRIDIS.length).toPrecision(4)} – ${(lo + span * (i + 1) / VIRIDIS.length).toPrecision(4)}`,
      showlegend: b.x.length > 0,
    })).filter((t) => t.x.length);
    const annotations = [];
    pc.dimensions.forEach((d, j) => {
      const k = Math.max(1, d.tickvals.length - 1);
      d.ticktext.forEach((text, i) => annotations.push({ x: j, y: i / k, text: text, showarrow: false, xanchor: "right",
        xshift: -4, font: { size: 11 }, bgcolor: "rgba(255,255,255,0.8)" }));
    });
    for (let i = 0; i <= 4; i++) {
      annotations.push({ x: nd, y: i / 4, text: (lo + span * i / 4).toPrecision(4), showarrow: false, xanchor: "left",
        xshift: 4, font: { size: 11 }, bgcolor: "rgba(255,255,255,0.8)" });
    }
    const labels = pc.dimensions.map((d) => d.label).concat([pc.objective.label]);
    const shapes = labels.map((_, j) => ({ type: "line", x0: j, x1: j, y0: -0.05, y1: 1.05, line: { color: "#555", width: 1.5 } }));
    Plotly.react(div, traces, {
      margin: { l: 40, r: 60, t: 20, b: 60 }, height: 380, annotations: annotations, shapes: shapes,
      xaxis: { tickvals: labels.map((_, j) => j), ticktext: labels, range: [-0.4, nd + 0.5], showgrid: false, zeroline: false },
      yaxis: { visible: false, range: [-0.08, 1.08] }, legend: { title: { text: "objective" }, font: { size: 11 } },
    }, plotConfig);
  }

  function renderMetricSelect(v) {
    const select = document.getElementById("metric");
    const names = v.curve_metrics.map((m) => m.metric);
    if (select.options.length === names.length && Array.from(select.options).every((o, i) => o.value === names[i])) return;
    select.replaceChildren();
    v.curve_metrics.forEach((m) => select.appendChild(el("option", { value: m.metric }, m.label)));
    if (!metric || !names.includes(metric)) metric = names[0] || null;
    if (metric) select.value = metric;
  }

  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const DASHES = ["solid", "dash", "dot", "dashdot"];
  const SHOWN_CURVES = 10;

  function hexToRgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
  }

  // Which configurations the curves show: the best few until the user picks others.
  let chosen = new Set();
  let picked = false;
  let lastCurves = null;

  function renderPicker(c) {
    const box = document.getElementById("curves-picker");
    const names = c.configs.map((cfg) => cfg.config);
    if (!picked) chosen = new Set(names.slice(0, SHOWN_CURVES));
    const note = document.getElementById("curves-note");
    if (names.length <= SHOWN_CURVES) {
      box.replaceChildren();
      box.style.display = "none";
      return;
    }
    note.dataset.keep = "1";
    note.textContent = `${chosen.size} of ${names.length} configurations drawn (the ${SHOWN_CURVES} best by ` +
      "the objective until you choose others in the list).";
    if (box.dataset.names === names.join("\n")) {
      box.querySelectorAll("input").forEach((input) => { input.checked = chosen.has(input.value); });
      return;
    }
    box.dataset.names = names.join("\n");
    box.style.display = "";
    box.replaceChildren(el("div", { class: "picker-head" }, "configurations drawn"));
    names.forEach((name) => {
      const label = el("label");
      const input = el("input", { type: "checkbox", value: name });
      input.checked = chosen.has(name);
      input.addEventListener("change", () => {
        picked = true;
        if (input.checked) chosen.add(name); else chosen.delete(name);
        if (lastCurves) timed("curves", () => renderCurves(lastCurves));
      });
      label.append(input, document.createTextNode(" " + name));
      box.appendChild(label);
    });
  }

  function renderCurves(c) {
    lastCurves = c;
    const div = document.getElementById("curves");
    const logBox = document.getElementById("logy");
    if (!logTouched) logBox.checked = !!c.log;
    if (!show(div, "curves-note", c.configs.length > 0, "No epoch reported yet.")) return;
    const traces = [];
    renderPicker(c);
    c.configs.forEach((cfg, i) => {
      // Only the chosen configurations are drawn (the best SHOWN_CURVES by default; the list
      // beside the plot adds others): 80 curves are unreadable, and plotly's cost grows with
      // every trace, drawn or not.
      if (!chosen.has(cfg.config)) return;
      const visible = true;
      const color = COLORS[i % COLORS.length];
      const dash = DASHES[Math.floor(i / COLORS.length) % DASHES.length];
      const group = `g${i}`;
      if (cfg.band) {
        // One closed polygon per band: up along the upper bound, back along the lower one.
        const xs = [], ys = [];
        cfg.epoch.forEach((e, k) => { if (cfg.hi[k] !== null) { xs.push(e); ys.push(cfg.hi[k]); } });
        for (let k = cfg.epoch.length - 1; k >= 0; k--) if (cfg.lo[k] !== null) { xs.push(cfg.epoch[k]); ys.push(cfg.lo[k]); }
        traces.push({ type: "scatter", mode: "lines", x: xs, y: ys, fill: "toself", line: { width: 0 }, visible: visible,
          fillcolor: hexToRgba(color, 0.18), hoverinfo: "skip", showlegend: false, legendgroup: group });
      }
      traces.push({ type: "scatter", mode: "lines", name: `${cfg.config} (n=${cfg.n}${cfg.n >= 2 ? "" : ", no band"})`,
        x: cfg.epoch, y: cfg.mean, line: { color: color, width: 2, dash: dash }, legendgroup: group, visible: visible,
        hovertemplate: `${cfg.config}<br>epoch %{x}: %{y:.4g}<extra></extra>` });
      cfg.thin.forEach((t) => traces.push({ type: "scatter", mode: "lines", x: t.epoch, y: t.value, showlegend: false, visible: visible,
        legendgroup: group, line: { color: color, width: 1, dash: dash }, opacity: 0.6, hoverinfo: "skip" }));
    });
    const lastEpoch = Math.max(1, ...c.configs.map((cfg) => cfg.epoch[cfg.epoch.length - 1] || 1));
    const layout = {
      margin: { l: 60, r: 20, t: 20, b: 50 }, height: 480,
      xaxis: { title: { text: "epoch" }, dtick: Math.max(1, Math.ceil(lastEpoch / 10)) },
      yaxis: { title: { text: c.label }, type: logBox.checked ? "log" : "linear" },
      legend: { font: { size: 11 } }, uirevision: `curves-${c.metric}-${logBox.checked}`,
    };
    Plotly.react(div, traces, layout, plotConfig);
  }

  async function loadCurves(force) {
    if (!metric) return;
    let c;
    if (staticData) {
      c = staticData.curves[metric];
    } else {
      if (!force && curvesVersion === version && document.getElementById("curves").dataset.metric === metric) return;
      const t = performance.now();
      const response = await fetch(`${config.api}/curves/${encodeURIComponent(metric)}`, { cache: "no-store" });
      if (!response.ok) throw new Error(`curves: HTTP ${response.status}`);
      c = await response.json();
      timings.fetch_curves = (timings.fetch_curves || 0) + performance.now() - t;
      curvesVersion = version;
    }
    document.getElementById("curves").dataset.metric = metric;
    timed("curves", () => renderCurves(c));
  }

  // How long each view took to draw, for bench/bench_dashboard.py (window.ninsweepTimings).
  const timings = (window.ninsweepTimings = { script_at: performance.now() });
  function timed(name, fn) {
    const t = performance.now();
    const out = fn();
    timings[name] = (timings[name] || 0) + performance.now() - t;
    return out;
  }

  // The views at the top first; the trials table and the parallel coordinates (below the
  // fold, the costliest with many trials) once the browser is idle, so that the page answers
  // input as soon as the top is drawn. body[data-complete] says every view is drawn.
  let deferred = null;
  function render(v) {
    view = v;
    timed("header", () => renderHeader(v));
    timed("effects", () => renderEffects(v));
    timed("configs", () => renderConfigs(v));
    timed("select", () => renderMetricSelect(v));
  }

  // Called once the curves are drawn too.
  function drawTheRest() {
    if (deferred !== null) return;
    const later = window.requestIdleCallback || ((fn) => setTimeout(fn, 30));
    deferred = later(() => {
      deferred = null;
      timed("trials", () => renderTrials(view));
      timed("parcoords", () => renderParcoords(view));
      document.body.dataset.complete = String(view.version);
      if (timings.complete_at === undefined) timings.complete_at = performance.now();
    }, { timeout: 1500 });
  }

  function stamp(text) {
    document.getElementById("live-state").textContent = text;
  }

  async function poll() {
    try {
      const t = performance.now();
      const response = await fetch(`${config.api}/view?since=${version}`, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      timings.fetch_view = (timings.fetch_view || 0) + performance.now() - t;
      if (!data.unchanged) {
        version = data.version;
        render(data);
        await loadCurves(true);
        document.body.dataset.version = String(version);
        if (timings.top_drawn_at === undefined) timings.top_drawn_at = performance.now();
        drawTheRest();
      }
      stamp(`live: read ${new Date().toLocaleTimeString()} (version ${version}); updates every ${config.poll_ms / 1000} s`);
    } catch (err) {
      stamp(`live: the server did not answer (${err.message}); retrying`);
    }
    document.body.dataset.ready = "1";
    setTimeout(poll, config.poll_ms);
  }

  document.getElementById("metric").addEventListener("change", (ev) => {
    metric = ev.target.value;
    loadCurves(true);
  });
  document.getElementById("brushing").addEventListener("change", (ev) => {
    brushing = ev.target.checked;
    Plotly.purge(document.getElementById("parcoords"));
    if (view) renderParcoords(view);
  });
  document.getElementById("logy").addEventListener("change", () => {
    logTouched = true;
    loadCurves(true);
  });

  if (staticData) {
    version = staticData.view.version;
    render(staticData.view);
    loadCurves(true);
    drawTheRest();
    stamp(`report generated ${staticData.generated}: a snapshot, not live`);
    document.body.dataset.version = String(version);
    document.body.dataset.ready = "1";
  } else {
    poll();
  }
})();
