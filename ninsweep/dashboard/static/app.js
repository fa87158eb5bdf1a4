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

  function renderParcoords(v) {
    const pc = v.parcoords;
    const div = document.getElementById("parcoords");
    const note = document.getElementById("parcoords-note");
    if (!show(div, "parcoords-note", pc.n > 0 && pc.dimensions.length > 0,
              "Nothing to draw yet: needs finished trials and a grid key with more than one level.")) return;
    note.textContent = `One line per finished trial (${pc.n}): its grid keys and its ${pc.objective.label}. Drag along an axis to select.`;
    const dims = pc.dimensions.map((d) => ({ label: d.label, values: d.values, tickvals: d.tickvals, ticktext: d.ticktext }));
    dims.push({ label: pc.objective.label, values: pc.objective.values });
    const trace = { type: "parcoords", dimensions: dims,
      line: { color: pc.objective.values, colorscale: "Viridis", showscale: true, colorbar: { title: { text: "objective" } } } };
    Plotly.react(div, [trace], { margin: { l: 70, r: 70, t: 50, b: 30 }, height: 380, uirevision: "pc" }, plotConfig);
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

  function hexToRgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
  }

  function renderCurves(c) {
    const div = document.getElementById("curves");
    const logBox = document.getElementById("logy");
    if (!logTouched) logBox.checked = !!c.log;
    if (!show(div, "curves-note", c.configs.length > 0, "No epoch reported yet.")) return;
    const traces = [];
    c.configs.forEach((cfg, i) => {
      const color = COLORS[i % COLORS.length];
      const dash = DASHES[Math.floor(i / COLORS.length) % DASHES.length];
      const group = `g${i}`;
      if (cfg.band) {
        traces.push({ type: "scatter", mode: "lines", x: cfg.epoch, y: cfg.hi, line: { width: 0 }, hoverinfo: "skip",
          showlegend: false, legendgroup: group, connectgaps: false });
        traces.push({ type: "scatter", mode: "lines", x: cfg.epoch, y: cfg.lo, line: { width: 0 }, fill: "tonexty",
          fillcolor: hexToRgba(color, 0.18), hoverinfo: "skip", showlegend: false, legendgroup: group, connectgaps: false });
      }
      traces.push({ type: "scatter", mode: "lines", name: `${cfg.config} (n=${cfg.n}${cfg.n >= 2 ? "" : ", no band"})`,
        x: cfg.epoch, y: cfg.mean, line: { color: color, width: 2, dash: dash }, legendgroup: group,
        hovertemplate: `${cfg.config}<br>epoch %{x}: %{y:.4g}<extra></extra>` });
      cfg.thin.forEach((t) => traces.push({ type: "scatter", mode: "lines", x: t.epoch, y: t.value, showlegend: false,
        legendgroup: group, line: { color: color, width: 1, dash: dash }, opacity: 0.6, hoverinfo: "skip" }));
    });
    const layout = {
      margin: { l: 60, r: 20, t: 20, b: 50 }, height: 480, xaxis: { title: { text: "epoch" } },
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
      const response = await fetch(`${config.api}/curves/${encodeURIComponent(metric)}`, { cache: "no-store" });
      if (!response.ok) throw new Error(`curves: HTTP ${response.status}`);
      c = await response.json();
      curvesVersion = version;
    }
    document.getElementById("curves").dataset.metric = metric;
    renderCurves(c);
  }

  function render(v) {
    view = v;
    renderHeader(v);
    renderEffects(v);
    renderConfigs(v);
    renderTrials(v);
    renderParcoords(v);
    renderMetricSelect(v);
  }

  function stamp(text) {
    document.getElementById("live-state").textContent = text;
  }

  async function poll() {
    try {
      const response = await fetch(`${config.api}/view?since=${version}`, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      if (!data.unchanged) {
        version = data.version;
        render(data);
        await loadCurves(true);
        document.body.dataset.version = String(version);
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
  document.getElementById("logy").addEventListener("change", () => {
    logTouched = true;
    loadCurves(true);
  });

  if (staticData) {
    version = staticData.view.version;
    render(staticData.view);
    loadCurves(true);
    stamp(`report generated ${staticData.generated}: a snapshot, not live`);
    document.body.dataset.version = String(version);
    document.body.dataset.ready = "1";
  } else {
    poll();
  }
})();
