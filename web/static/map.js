// The document map of a job: every document a point at its 2-D UMAP position, coloured by topic, drawn with
// WebGL (plotly's scattergl). The points arrive as one binary array (float32 x[n], float32 y[n], int32 topic[n]);
// labels, hover text and the side panel are filled from JSON. Configuration comes from #map's data- attributes.
(function () {
  "use strict";
  const el = document.getElementById("map");
  if (!el || !window.Plotly) return;
  const cfg = el.dataset;

  // Tableau 10, then more of its kind, none grey (grey is for outliers): neighbouring topic ids get distinct
  // colours, and a topic keeps its colour.
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#499894",
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d37295",
  ];
  const OUTLIER_COLOUR = "#cfcfcf";
  // Colour values: -0.5 for an outlier, topic % 20 + 0.5 for a topic; the scale has a band for each, outliers first.
  const BANDS = [OUTLIER_COLOUR].concat(PALETTE);
  const COLOURSCALE = BANDS.flatMap(function (c, i) { return [[i / BANDS.length, c], [(i + 1) / BANDS.length, c]]; });
  const MAX_LABELS = 30;
  const THEMES_ABOVE = 0.5;  // theme labels while the visible x-range is more than this share of the whole map
  const HOVER_FETCH_DELAY_MS = 80;
  const DIMMED = 0.12;
  const OUTLIERS = 0, TOPICS = 1, HIGHLIGHT = 2;  // trace numbers
  const MARGIN = { l: 8, r: 8, t: 8, b: 8 };

  const state = {
    n: 0, x: null, y: null, topic: null, meta: null, topicsById: new Map(),
    traceIndex: [],  // per trace: Int32Array mapping its point number to the document index
    highlight: null,  // Int32Array of highlighted document indices, or null
    labelsKey: "",
  };
  const docs = new Map();  // document index -> Promise of its JSON (hover and click share it)

  function colourOf(topic) { return topic < 0 ? OUTLIER_COLOUR : PALETTE[topic % PALETTE.length]; }
  function labelOf(topic) {
    const t = state.topicsById.get(topic);
    return topic < 0 ? "outlier (no topic)" : (t ? t.label : "topic " + topic);
  }
  function markerSize(n) { return n > 50000 ? 2.5 : n > 10000 ? 3.5 : n > 2000 ? 5 : 7; }
  // Plotly renders a little HTML in annotation text: show labels (from users and an LLM) as plain text.
  function plain(text) { return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
  function firstWords(text, count) {
    const words = String(text).split(/\s+/).filter(Boolean);
    return words.slice(0, count).join(" ") + (words.length > count ? " …" : "");
  }
  function status(message) { document.getElementById("map-status").textContent = message; }

  function indicesWhere(predicate) {
    const out = new Int32Array(state.n);
    let k = 0;
    for (let i = 0; i < state.n; i++) if (predicate(i)) out[k++] = i;
    return out.slice(0, k);
  }

  /** Float32Array x, y and colour values of the documents ``indices`` (Int32Array). */
  function subset(indices) {
    const xs = new Float32Array(indices.length), ys = new Float32Array(indices.length);
    const cs = new Float32Array(indices.length);
    for (let i = 0; i < indices.length; i++) {
      const j = indices[i];
      xs[i] = state.x[j];
      ys[i] = state.y[j];
      cs[i] = state.topic[j] < 0 ? -0.5 : (state.topic[j] % PALETTE.length) + 0.5;
    }
    return { xs: xs, ys: ys, cs: cs };
  }

  /** The three traces (outliers, topics, highlighted) of plotly type ``type``: "scattergl" or "scatter" (SVG). */
  function traces(type) {
    const size = markerSize(state.n);
    const outliers = indicesWhere(function (i) { return state.topic[i] < 0; });
    const members = indicesWhere(function (i) { return state.topic[i] >= 0; });
    state.traceIndex = [outliers, members, new Int32Array(0)];
    const o = subset(outliers), m = subset(members);
    const common = { type: type, mode: "markers", hoverinfo: "none", showlegend: false };
    function marker(options) {
      return Object.assign({ colorscale: COLOURSCALE, cmin: -1, cmax: PALETTE.length, showscale: false }, options);
    }
    return [
      Object.assign({ name: "outliers", x: o.xs, y: o.ys,
                      marker: { color: OUTLIER_COLOUR, size: Math.max(2, size - 1), opacity: 0.7 } }, common),
      Object.assign({ name: "topics", x: m.xs, y: m.ys, marker: marker({ color: m.cs, size: size, opacity: 0.85 }) },
                    common),
      Object.assign({ name: "highlighted", x: [], y: [], marker: marker({ color: [], size: size + 2, opacity: 1 }) },
                    common),
    ];
  }

  /** Ranges that show the whole map with one unit as long across as up (UMAP's axes are alike). Plotly's own
   *  scaleanchor does this too, but makes every zoom and pan step several times slower. */
  function wholeMap() {
    const b = state.meta.bounds, pad = 0.03;
    const width = Math.max(1, el.clientWidth - MARGIN.l - MARGIN.r);
    const height = Math.max(1, el.clientHeight - MARGIN.t - MARGIN.b);
    const dx = (b.x[1] - b.x[0]) || 1, dy = (b.y[1] - b.y[0]) || 1;
    const perPixel = (1 + 2 * pad) * Math.max(dx / width, dy / height);
    const cx = (b.x[0] + b.x[1]) / 2, cy = (b.y[0] + b.y[1]) / 2;
    return {
      x: [cx - perPixel * width / 2, cx + perPixel * width / 2],
      y: [cy - perPixel * height / 2, cy + perPixel * height / 2],
    };
  }

  /** The labels for the visible ranges: themes when zoomed out (if the job has any), else topics; largest first. */
  function annotations(xRange, yRange) {
    const b = state.meta.bounds;
    const zoomedOut = Math.abs(xRange[1] - xRange[0]) > THEMES_ABOVE * (b.x[1] - b.x[0]);
    const useThemes = zoomedOut && state.meta.themes.length > 0;
    const lowX = Math.min(xRange[0], xRange[1]), highX = Math.max(xRange[0], xRange[1]);
    const lowY = Math.min(yRange[0], yRange[1]), highY = Math.max(yRange[0], yRange[1]);
    const shown = (useThemes ? state.meta.themes : state.meta.topics)
      .filter(function (t) { return t.x !== null && t.x >= lowX && t.x <= highX && t.y >= lowY && t.y <= highY; })
      .sort(function (a, b) { return b.size - a.size; })
      .slice(0, MAX_LABELS);
    return {
      key: (useThemes ? "themes:" : "topics:") + shown.map(function (t) { return useThemes ? t.theme : t.topic; }),
      annotations: shown.map(function (t) {
        return {
          x: t.x, y: t.y, text: plain(t.label), showarrow: false, bgcolor: "rgba(255,255,255,0.78)", borderpad: 2,
          font: { size: useThemes ? 14 : 11, color: useThemes ? "#1d232a" : "#333" },
        };
      }),
    };
  }

  let labelsPending = false;
  function updateLabels() {
    if (labelsPending) return;
    labelsPending = true;
    requestAnimationFrame(function () {
      labelsPending = false;
      const layout = el._fullLayout;
      const next = annotations(layout.xaxis.range, layout.yaxis.range);
      if (next.key === state.labelsKey) return;
      state.labelsKey = next.key;
      Plotly.relayout(el, { annotations: next.annotations });
    });
  }

  function documentOf(index) {
    if (!docs.has(index)) {
      if (docs.size > 5000) docs.delete(docs.keys().next().value);
      docs.set(index, fetch(cfg.documentUrl + index).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      }));
    }
    return docs.get(index);
  }

  // Hover: the label at once (known here), the title or first words when the document arrives.
  const tooltip = document.getElementById("map-tooltip");
  let hovered = null, hoverTimer = null, mouse = { x: 0, y: 0 };
  el.addEventListener("mousemove", function (ev) { mouse = { x: ev.clientX, y: ev.clientY }; placeTooltip(); });
  function placeTooltip() {
    if (tooltip.hidden) return;
    const left = Math.min(mouse.x + 14, window.innerWidth - tooltip.offsetWidth - 8);
    const top = Math.min(mouse.y + 14, window.innerHeight - tooltip.offsetHeight - 8);
    tooltip.style.left = Math.max(0, left) + "px";
    tooltip.style.top = Math.max(0, top) + "px";
  }
  function showTooltip(index) {
    hovered = index;
    const topic = state.topic[index];
    document.getElementById("map-tooltip-label").textContent = labelOf(topic);
    document.getElementById("map-tooltip-swatch").style.background = colourOf(topic);
    const title = document.getElementById("map-tooltip-title");
    title.textContent = "…";
    title.dataset.index = "";
    tooltip.hidden = false;
    placeTooltip();
    clearTimeout(hoverTimer);
    hoverTimer = setTimeout(function () {
      documentOf(index).then(function (doc) {
        if (hovered !== index) return;
        title.textContent = doc.title || firstWords(doc.text, 24);
        title.dataset.index = String(index);
        placeTooltip();
      }, function () { if (hovered === index) title.textContent = "(the document could not be loaded)"; });
    }, HOVER_FETCH_DELAY_MS);
  }
  function hideTooltip() { hovered = null; clearTimeout(hoverTimer); tooltip.hidden = true; }

  function openPanel(index) {
    const panel = document.getElementById("map-panel");
    const topic = state.topic[index];
    const link = document.getElementById("map-panel-topic");
    document.getElementById("map-panel-title").textContent = "Document " + index;
    document.getElementById("map-panel-text").textContent = "…";
    link.textContent = labelOf(topic);
    if (topic >= 0) link.href = cfg.topicUrl + topic; else link.removeAttribute("href");
    panel.dataset.index = String(index);
    panel.hidden = false;
    documentOf(index).then(function (doc) {
      if (panel.dataset.index !== String(index)) return;
      document.getElementById("map-panel-title").textContent = doc.title || "Document " + index;
      document.getElementById("map-panel-text").textContent = doc.text;
    }, function () { document.getElementById("map-panel-text").textContent = "(the document could not be loaded)"; });
  }

  function documentAt(ev) {
    const p = ev.points && ev.points[0];
    if (!p) return null;
    const index = state.traceIndex[p.curveNumber][p.pointIndex];
    return index === undefined ? null : index;
  }

  /** Highlights the documents ``indices`` (Int32Array; null: none) and dims every other point. */
  function highlight(indices) {
    state.highlight = indices;
    const showOutliers = document.getElementById("map-outliers").checked;
    const shown = indices && !showOutliers ? indices.filter(function (i) { return state.topic[i] >= 0; }) : indices;
    const picked = shown || new Int32Array(0);
    const s = subset(picked);
    state.traceIndex[HIGHLIGHT] = picked;
    Plotly.restyle(el, { x: [s.xs], y: [s.ys], "marker.color": [s.cs] }, [HIGHLIGHT]);
    Plotly.restyle(el, { "marker.opacity": indices ? [DIMMED, DIMMED] : [0.7, 0.85] }, [OUTLIERS, TOPICS]);
    el.dataset.highlighted = String(picked.length);
  }

  function fillTopicFilter() {
    const select = document.getElementById("map-topic");
    state.meta.topics.slice().sort(function (a, b) { return b.size - a.size; }).forEach(function (t) {
      const option = document.createElement("option");
      option.value = String(t.topic);
      option.textContent = t.label + " (" + t.size + ")";
      select.append(option);
    });
    select.addEventListener("change", function () {
      document.getElementById("map-query").value = "";
      if (select.value === "") { highlight(null); status(""); return; }
      const topic = Number(select.value);
      const members = indicesWhere(function (i) { return state.topic[i] === topic; });
      highlight(members);
      status(members.length + " documents in " + labelOf(topic));
    });
  }

  function wireSearch() {
    document.getElementById("map-search").addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const q = document.getElementById("map-query").value.trim();
      document.getElementById("map-topic").value = "";
      if (!q) { highlight(null); status(""); return; }
      status("searching…");
      let answer = null;
      try {
        const url = cfg.searchUrl + "?q=" + encodeURIComponent(q);
        const response = await fetch(url, { headers: { Accept: "application/json" } });
        if (response.ok) answer = await response.json();
      } catch (err) {
        answer = null;
      }
      if (!answer || !Array.isArray(answer.indices)) { highlight(null); status("search is unavailable"); return; }
      const indices = Int32Array.from(answer.indices.filter(function (i) { return i >= 0 && i < state.n; }));
      highlight(indices);
      const total = answer.total === undefined ? indices.length : answer.total;
      status(total + " documents match" + (indices.length < total ? " (" + indices.length + " shown)" : ""));
    });
  }

  function wireControls() {
    document.getElementById("map-outliers").addEventListener("change", function (ev) {
      Plotly.restyle(el, { visible: ev.target.checked }, [OUTLIERS]);
      highlight(state.highlight);
    });
    document.getElementById("map-reset").addEventListener("click", function () {
      const view = wholeMap();
      Plotly.relayout(el, { "xaxis.range": view.x, "yaxis.range": view.y });
    });
    document.getElementById("map-panel-close").addEventListener("click", function () {
      document.getElementById("map-panel").hidden = true;
    });
    el.on("plotly_hover", function (ev) { const i = documentAt(ev); if (i !== null) showTooltip(i); });
    el.on("plotly_unhover", hideTooltip);
    el.on("plotly_click", function (ev) { const i = documentAt(ev); if (i !== null) openPanel(i); });
    el.on("plotly_relayout", function (change) {
      if (Object.keys(change).every(function (k) { return k.startsWith("annotations"); })) return;
      updateLabels();
    });
    fillTopicFilter();
    wireSearch();
  }

  function plot(type) {
    const first = annotations(state.meta.bounds.x, state.meta.bounds.y);
    state.labelsKey = first.key;
    const view = wholeMap();
    const axis = { showgrid: false, zeroline: false, showticklabels: false, showline: false, ticks: "" };
    const layout = {
      margin: MARGIN, dragmode: "pan", hovermode: "closest", showlegend: false,
      xaxis: Object.assign({ range: view.x }, axis), yaxis: Object.assign({ range: view.y }, axis),
      plot_bgcolor: "#fff", paper_bgcolor: "#fff", annotations: first.annotations,
    };
    const config = {
      scrollZoom: true, displaylogo: false, responsive: true, doubleClick: "reset",
      plotGlPixelRatio: Math.min(2, window.devicePixelRatio || 1),  // plotly draws at 2x by default, 4x the pixels
      modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"],
    };
    el.replaceChildren();
    return Plotly.newPlot(el, traces(type), layout, config);
  }

  async function load() {
    const metaResponse = await fetch(cfg.metaUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!metaResponse.ok) throw new Error("HTTP " + metaResponse.status);
    const meta = await metaResponse.json();
    const pointsResponse = await fetch(meta.points);
    if (!pointsResponse.ok) throw new Error("HTTP " + pointsResponse.status);
    const buffer = await pointsResponse.arrayBuffer();
    if (buffer.byteLength !== 12 * meta.n) {
      throw new Error("the points are " + buffer.byteLength + " bytes, not 12 × " + meta.n);
    }
    state.meta = meta;
    state.n = meta.n;
    state.x = new Float32Array(buffer, 0, meta.n);
    state.y = new Float32Array(buffer, 4 * meta.n, meta.n);
    state.topic = new Int32Array(buffer, 8 * meta.n, meta.n);
    meta.topics.forEach(function (t) { state.topicsById.set(t.topic, t); });

    let type = cfg.trace === "scatter" ? "scatter" : "scattergl";
    await plot(type);
    if (type === "scattergl" && el.querySelector(".no-webgl")) {
      // No WebGL here (an old browser, a blocklisted GPU, WebGL switched off): SVG draws the same map, slowly.
      Plotly.purge(el);
      type = "scatter";
      await plot(type);
      status("WebGL is unavailable in this browser: the map is drawn without it and moves slowly");
    }
    el.dataset.renderer = type === "scattergl" ? "webgl" : "svg";
    wireControls();
    updateLabels();  // the view is wider than the bounds in one direction
    el.dataset.points = String(meta.n);
    el.dataset.readyMs = String(Math.round(performance.now()));
    el.dataset.ready = "1";
  }

  load().catch(function (err) {
    const message = document.createElement("p");
    message.className = "error";
    message.textContent = "The map could not be loaded (" + err.message + ").";
    el.replaceChildren(message);
  });
})();
